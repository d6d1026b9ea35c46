"""``BatchJobOperator``: run any processor over a source in chunks, with checkpoints across Airflow tries."""

from __future__ import annotations

import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.config import BatchConfig, BatchPriority
from airflow_batch_provider.operators import keywords
from airflow_batch_provider.operators.conf import (  # noqa: F401 - re-exported: the names users imported
    ENGINE_SCHEMES,
    apply_log_row_values,
    base_path,
    conn_id,
    provider_setting,
    records_target,
    storage_target,
)
from airflow_batch_provider.operators.links import LINKS
from airflow_batch_provider.operators.retry_policy import BatchRetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = timedelta(seconds=30)
DEFAULT_BACKOFF = 2.0
DEFAULT_MAX_RETRY_DELAY = timedelta(minutes=10)


class BatchInputFailure(AirflowFailException):
    """Bad input (source, config, processor name): fail now, a retry cannot fix it."""


@cache
def _base_operator_params() -> frozenset[str]:
    return frozenset(inspect.signature(BaseOperator.__init__).parameters) - {"self", "kwargs"}


#: the longest path segment kept as it is (filesystems allow 255 bytes per name; a segment becomes a folder)
MAX_SEGMENT = 100


def _segment(value: Any) -> str:
    """Percent-encode one path segment one-to-one; never '.', '..' or empty.

    A segment longer than ``MAX_SEGMENT`` once encoded (a run id of 29 CJK characters is 261 bytes) becomes a
    readable prefix, ``%~`` and 20 hex digits of the value's SHA-256: deterministic, at most ``MAX_SEGMENT``, and
    never equal to a short segment (``quote()`` never emits ``%~``). Short segments are unchanged.
    """
    raw = str(value)
    text = quote(raw, safe="", errors="surrogatepass")
    if text in ("", ".", ".."):
        text = text.replace(".", "%2E") or "%"  # quote() never emits a bare "%": still one-to-one
    if len(text) > MAX_SEGMENT:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        prefix = ""
        for char in raw:
            encoded = quote(char, safe="", errors="surrogatepass")
            if len(prefix) + len(encoded) > MAX_SEGMENT - 22:
                break
            prefix += encoded
        text = f"{prefix}%~{digest}"
    return text


class BatchJobOperator(BaseOperator):
    """Run a processor over a large source in chunks; resume from the checkpoint on every retry.

    :param source: file, folder or glob of Parquet/CSV/JSON Lines, local or object storage (templated).
        Chain jobs with ``source=upstream.output["output_uri"]``. Or an in-memory frame arriving at run time (a
        pandas or polars DataFrame, a pyarrow Table): an upstream ``@task``'s return value (``source=make()``,
        through XCom), or a callable ``def make_source(context, **_)`` that Airflow's templating calls with
        ``context=`` and ``jinja_env=`` when the task starts. The first try stores the frame once in the job folder
        (``_input/``, Parquet, fingerprinted by content); retries (and a sharded job's shards) read that copy and
        do not call the callable again. Any other type fails the task without retry (``SourceError``).
    :param processor: a registered name, an import path ``"module:attr"``, a processor class, or a sync/async
        callable ``fn(batch_df, context, **processor_kwargs)``. Not templated: ``dag_run.conf`` cannot choose code.
    :param config: a :class:`~airflow_batch_provider.config.BatchConfig`.
    :param config_overrides: ``BatchConfig`` fields to override (templated; values are validated).
    :param priority: a :class:`BatchPriority`; sets ``priority_weight`` with ``weight_rule="absolute"``.
    :param output_path: the job folder (templated). Default:
        ``{[batch_provider] base_path}/{dag_id}/{run_id}/{task_id}/{map_index}/`` (ids percent-encoded).
    :param source_conn_id: Airflow connection for the source when its URI names none.
    :param output_conn_id: Airflow connection for ``output_path``; default ``[batch_provider] conn_id``.
    :param progress_callbacks: callables receiving progress events.
    :param alert_callbacks: callables receiving each new alert (memory, CPU, throughput, failure rate, timeout),
        or notifiers such as :class:`~airflow_batch_provider.notifications.alert.BatchAlertNotifier`, which are
        sent the alert with the task's context. Alerts are also logged and listed on the dashboard.
    :param alert_rules: alert thresholds: an ``AlertRules`` or a mapping such as ``{"memory_fraction": 0.8,
        "throughput_drop_ratio": None}`` (``None`` switches a rule off; ``docs/monitoring.md``). Default: the
        built-in thresholds, with the memory limit and timeout from the config.
    :param emit_metrics: send rows, chunks, chunk seconds, failures, skipped rows and peak memory to Airflow's
        metrics (``[metrics]`` StatsD/OpenTelemetry), names prefixed ``batch_provider.``.
    :param recovery: a ``RecoveryConfig`` or mapping: what the engine does about each class of failure
        (``docs/failures.md``). The try number is the job folder's fencing epoch; failure records go to
        ``{base_path}/_records``.
    :param csv_options: CSV/JSON Lines options (``delimiter``, ``quote_char``, ``encoding``, ``column_types``).
    :param allow_any_output_path: let ``output_path`` point outside ``[batch_provider] base_path`` and
        ``allowed_output_roots`` (not templated: only DAG code can set it; see ``docs/security.md``).
    :param asset: the outlet ``Asset`` the job's output is declared as, so that DAGs can be scheduled on it
        (``schedule=[Asset(uri)]``): an ``Asset``, a URI string, or False for none. Default: a URI that stays
        the same from run to run: ``output_path`` (its folder before the first Jinja expression when templated),
        else ``{[batch_provider] base_path}/{dag_id}/{task_id}`` (the job folders of the runs without the run id;
        ``docs/lineage.md``). Added to ``outlets=`` (which are kept); each successful run puts its facts
        (``output_uri``, rows, schema, quality score ...) in the event's extra, for every ``Asset`` of ``outlets``.
        Not templated: outlets are part of the parsed DAG.
    :param asset_partitions: partition key(s) of the run's output (templated; a string or a list of strings, e.g.
        ``["eu|{{ ds }}", "us|{{ ds }}"]``): each outlet ``Asset`` event is emitted once per key
        (``outlet_events[asset].add_partitions``), for DAGs scheduled with ``PartitionedAssetTimetable``. Not
        needed in a partitioned DAG run: Airflow gives the events the run's own partition key. An event with a
        partition key does not trigger DAGs with a plain ``schedule=[asset]``.
    :param input_format: the frame a callable processor is handed per chunk: ``"pandas"`` (default),
        ``"arrow"`` (a ``pyarrow.Table``) or ``"polars"`` (a ``polars.DataFrame`` from Arrow, no pandas copy).
        ``None``: the processor's own (the standard processors read Arrow). Not templated.
    :param processor_kwargs: parameters of the processor. Every other keyword argument that is not an operator
        argument is added to them. For the built-in processors (``"count"``, ``"data_quality"`` ...) the
        parameters are known from a static table, so an unknown keyword fails when the DAG is parsed, naming the
        closest match (``retires`` -> ``retries``). Callables, classes and import paths are checked against their
        signature when the task starts, before any chunk runs, and fail without retry (callables taking
        ``**kwargs`` accept any keyword). A name that is both an operator argument and a processor parameter
        reaches the processor only through ``processor_kwargs={...}``; given to the operator it is an error.

    Retries default to 3 with a 30 s delay doubling up to 10 min, so a failed try resumes by itself.
    ``retry_policy`` defaults to :class:`~airflow_batch_provider.operators.retry_policy.BatchRetryPolicy`:
    corrupt data fails at once, network faults retry with a jittered delay, the rest follow ``retries``. A
    processor that fails deterministically (a ``TypeError``/``NameError``/``AttributeError``/``ImportError``/
    ``SyntaxError`` from its own code, or the first chunks all failing the same way) fails the task once, without
    retries (``DeterministicProcessorError``; ``docs/failures.md``).
    The summary is returned as XCom with ``multiple_outputs=True``: each key (``output_uri``, ``rows_out`` ...)
    is also its own XCom, so ``upstream.output["output_uri"]`` works in downstream templates.
    """

    template_fields: Sequence[str] = ("source", "output_path", "config_overrides", "asset_partitions")
    template_fields_renderers: ClassVar[dict[str, str]] = {"config_overrides": "json"}
    ui_color = "#dbeafe"
    #: "Report", "Output", "Batch job": pages of the provider's plugin, found by the task instance's ids
    operator_extra_links = LINKS
    #: subclasses set the processor (a class or registered name) and add their own typed parameters
    processor_class: ClassVar[Any] = None
    #: whether a callable ``source`` is called when the job folder holds no stored copy (shards read the plan's)
    calls_source: ClassVar[bool] = True
    #: whether the constructor declares the output asset (a sharded job's merge declares it, not plan and shards)
    declares_asset: ClassVar[bool] = True

    def __init__(
        self,
        *,
        source: Any,
        processor: Any = None,
        config: BatchConfig | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        priority: BatchPriority | str | None = None,
        output_path: str | None = None,
        source_conn_id: str | None = None,
        output_conn_id: str | None = None,
        progress_callbacks: Sequence[Callable[[Any], Any]] | None = None,
        alert_callbacks: Sequence[Any] | None = None,
        alert_rules: Any = None,
        emit_metrics: bool = True,
        csv_options: Mapping[str, Any] | None = None,
        processor_kwargs: Mapping[str, Any] | None = None,
        recovery: Any = None,
        allow_any_output_path: bool = False,
        retries: int | None = None,
        retry_delay: timedelta | float | None = None,
        retry_exponential_backoff: float | None = None,
        max_retry_delay: timedelta | float | None = None,
        retry_policy: Any = None,
        input_format: str | None = None,
        asset: Any = None,
        asset_partitions: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = keywords.given_arguments(BatchJobOperator, locals()) | set(kwargs)
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in _base_operator_params()}
        if priority is not None:
            if "priority_weight" in kwargs:
                raise ValueError(
                    f"{kwargs.get('task_id')}: give either priority or priority_weight, not both"
                )
            kwargs["priority_weight"] = int(BatchPriority.parse(priority))
            kwargs["weight_rule"] = "absolute"
        kwargs.setdefault("multiple_outputs", True)  # so upstream.output["output_uri"] works downstream
        super().__init__(
            retries=DEFAULT_RETRIES if retries is None else retries,
            retry_delay=DEFAULT_RETRY_DELAY if retry_delay is None else retry_delay,
            retry_exponential_backoff=DEFAULT_BACKOFF
            if retry_exponential_backoff is None
            else retry_exponential_backoff,
            max_retry_delay=DEFAULT_MAX_RETRY_DELAY if max_retry_delay is None else max_retry_delay,
            retry_policy=BatchRetryPolicy() if retry_policy is None else retry_policy,
            **kwargs,
        )
        self.source = source
        self.processor = processor if processor is not None else self.processor_class
        if self.processor is None:
            raise ValueError(f"{self.task_id}: BatchJobOperator needs processor=")
        self.config = config
        self.config_overrides = config_overrides
        self.priority = priority
        self.output_path = output_path
        self.source_conn_id = source_conn_id
        self.output_conn_id = output_conn_id
        self.progress_callbacks = list(progress_callbacks or ())
        self.alert_callbacks = list(alert_callbacks or ())
        if alert_rules is not None:
            from airflow_batch_provider.monitoring import JobMonitor

            JobMonitor(self.task_id, rules=alert_rules)  # bad thresholds fail when the DAG is parsed
        self.alert_rules = alert_rules
        self.emit_metrics = emit_metrics
        self.csv_options = dict(csv_options or {})
        self.processor_kwargs = {**dict(processor_kwargs or {}), **extra}
        keywords.check_processor_keywords(self, BatchJobOperator, extra, dict(processor_kwargs or {}), given)
        self.recovery = recovery
        self.allow_any_output_path = bool(allow_any_output_path)  # DAG code only: not templated
        if input_format is not None:  # a bad value fails when the DAG is parsed
            from airflow_batch_provider.processors.frames import check_input_format

            check_input_format(input_format)
        self.input_format = input_format  # DAG code only: not templated
        self.asset = asset
        self.asset_partitions = asset_partitions
        self.output_asset: Any = None
        if self.declares_asset:
            self.declare_asset(self.task_id)
        self._cancel: threading.Event | None = None
        self._job_output: Any = None

    def declare_asset(self, key: str) -> None:
        """Resolve ``asset`` (``key`` names the job folder) and add it to ``outlets`` unless it is there already.
        Reads ``[batch_provider] base_path`` for the default: outlets are fixed when the DAG is parsed. A task
        unmapped from ``.partial().expand()`` adds nothing: only the outlets given to ``partial()`` are known to
        the scheduler."""
        from airflow_batch_provider.operators.lineage import resolve_asset

        dag_id = self.dag_id if self.has_dag() else None
        self.output_asset = resolve_asset(
            self.asset, output_path=self.output_path, dag_id=dag_id, task_key=key
        )
        from_mapped = getattr(self, "_BaseOperator__from_mapped", False)
        if self.output_asset is not None and not from_mapped and self.output_asset not in self.outlets:
            self.outlets = [*self.outlets, self.output_asset]

    # -- parameters resolved at run time ----------------------------------------------------------
    def resolve_config(self) -> BatchConfig:
        config = self.config or BatchConfig()
        if not isinstance(config, BatchConfig):
            config = BatchConfig.from_mapping(config)
        if config.batch_size is None:
            default = int(provider_setting("default_batch_size") or 0)
            if default:
                config = config.with_overrides({"batch_size": default})
        if self.config is None:
            interval = float(provider_setting("progress_interval"))
            config = config.with_overrides({"progress_interval_seconds": interval})
        return config.with_overrides(self.config_overrides)

    def job_folder(self, context: Context) -> str:
        if self.output_path:
            return self.checked_output_path()
        ti = context["ti"]
        segments = [_segment(ti.dag_id), _segment(ti.run_id), _segment(ti.task_id), _segment(ti.map_index)]
        base = base_path().rstrip("/")
        folder = "/".join([base, *segments])
        if not folder.startswith(base + "/") or len(folder.split("/")) != len(base.split("/")) + 4:
            raise BatchInputFailure(f"refusing to write outside the base path {base!r}: {folder!r}")
        return folder

    def checked_output_path(self) -> str:
        """The explicit ``output_path``, checked against the allowed output roots (``operators.roots``)."""
        from airflow_batch_provider.operators.roots import confined_output_path

        return confined_output_path(
            self.output_path, allow_any=self.allow_any_output_path, task=self.task_id, logger=self.log
        )

    def source_target(self) -> Any:
        """The source as the engine opens it, checked against ``[batch_provider] allowed_source_roots``; an
        in-memory frame (or its stored copy) as it is: it is stored in the job folder, not read from a root."""
        from airflow_batch_provider.engine import memory_sources
        from airflow_batch_provider.exceptions import SourceError
        from airflow_batch_provider.operators.roots import confined_source

        if memory_sources.is_in_memory(self.source):
            return self.source
        try:
            memory_sources.check_source(self.source, where=f"{self.task_id}: source")
        except SourceError as err:
            raise BatchInputFailure(str(err)) from err
        return storage_target(confined_source(self.source, task=self.task_id), self.source_conn_id)

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        """Airflow's rendering, except for a callable ``source`` once its frame is stored: then the stored copy
        is used and the callable is not called again (retries, shards)."""
        if parent is not self or "source" not in template_fields or not _source_callable(self.source):
            super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
            return
        others = [f for f in template_fields if f != "source"]
        super()._do_render_template_fields(parent, others, context, jinja_env, seen_oids)  # output_path first
        self.source = self._call_source(self.source, context, jinja_env)

    def _call_source(self, fn: Callable[..., Any], context: Any, jinja_env: Any) -> Any:
        from airflow_batch_provider.engine import memory_sources

        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        stored = memory_sources.stored_copy(
            storage_target(self.job_folder(context), conn_id(self.output_conn_id))
        )
        if stored is not None:
            self.log.info(
                "source: %s is not called again: the frame it returned is stored in %s (%d rows)",
                name,
                stored.uri,
                stored.rows,
            )
            return stored
        if not self.calls_source:
            return fn  # a shard: the engine looks for the plan's copy and says so when it is missing
        value = fn(context=context, jinja_env=jinja_env)
        self.log.info("source: %s returned a %s", name, type(value).__name__)
        return value

    def process_kwargs(self, context: Context) -> dict[str, Any]:
        """Parameters for the processor (subclasses add their own typed ones)."""
        return dict(self.processor_kwargs)

    def job_kwargs(self) -> dict[str, Any]:
        """Engine keywords of ``run_batch_job`` a subclass adds (``DataQualityOperator``: ``success_marker``)."""
        return {}

    # -- run -------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        """Run the job (:meth:`run_job`), then apply this operator's extras (:meth:`finish_job`).

        A sharded job's merge task is a subclass of the processor's operator that replaces only :meth:`run_job`
        (``operators.shards``), so it applies exactly the same extras as this task.
        """
        return self.finish_job(context, self.run_job(context))

    def run_job(self, context: Context) -> dict[str, Any]:
        """Run the engine over the source; the job summary with ``output_uri`` (the job folder)."""
        from airflow_batch_provider.exceptions import BatchInputError
        from airflow_batch_provider.jobs import run_batch_job

        apply_log_row_values()
        self.partition_keys()  # a bad key fails before any row is read
        folder = self.job_folder(context)
        record_job_folder(context, folder, self.log)
        reporter = _TaskReporter(context, self.log, folder)
        self._cancel = threading.Event()
        try:
            config = self.resolve_config()
            result = run_batch_job(
                self.source_target(),
                self.processor,
                config=config,
                output_path=storage_target(folder, conn_id(self.output_conn_id)),
                progress_callbacks=[reporter, *self._metrics(context, config), *self.progress_callbacks],
                alert_callbacks=[_alert_callable(cb, context) for cb in self.alert_callbacks],
                alert_rules=self.alert_rules,
                csv_options=self.csv_options,
                job_id=reporter.job_id,
                cancel_event=self._cancel,
                recovery=self.recovery,
                epoch=context["ti"].try_number,
                records_path=records_target(connection=self.output_conn_id),
                task_info={
                    "dag_id": context["ti"].dag_id,
                    "run_id": context["ti"].run_id,
                    "task_id": context["ti"].task_id,
                    "map_index": context["ti"].map_index,
                    "try_number": context["ti"].try_number,
                },
                input_format=self.input_format,
                **self.job_kwargs(),
                **self.process_kwargs(context),
            )
        except BatchInputError as err:
            raise BatchInputFailure(str(err)) from err
        summary = result.to_dict()
        summary["output_uri"] = folder
        reporter.finish(summary)
        self.log.info(
            "batch job done: %d rows in, %d rows out, %d chunks (%d resumed) in %.1fs; output %s",
            result.rows_in,
            result.rows_out,
            result.chunks_total,
            result.chunks_resumed,
            result.duration_s,
            folder,
        )
        return summary

    def record_output(self, context: Context, folder: str, summary: dict[str, Any]) -> None:
        """The run's facts in the outlet asset events' extra; kept for :meth:`get_openlineage_facets_on_complete`."""
        from airflow_batch_provider.operators.lineage import JobOutput, asset_extra, record_outlet_events

        job = JobOutput(storage_target(folder, conn_id(self.output_conn_id)), summary, source=self.source)
        self._job_output = job
        extra = asset_extra(job, context["ti"].map_index)
        keys = self.partition_keys()
        events = record_outlet_events(context, self.outlets, extra, partitions=keys)
        if events:
            self.log.info(
                "the run's facts are in the extra of %d outlet asset event(s)%s",
                events,
                f", partitions {', '.join(keys)}" if keys else "",
            )

    def partition_keys(self) -> list[str]:
        """``asset_partitions`` (rendered) as a list of keys; a key that is not a non-empty string fails the task
        without retries, naming it."""
        from airflow_batch_provider.operators.lineage import partition_keys

        try:
            return partition_keys(self.asset_partitions)
        except ValueError as err:
            raise BatchInputFailure(f"{self.task_id}: asset_partitions: {err}") from err

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (``[openlineage]`` extra): one input (the source) and one output (the asset) dataset, the
        profile as data-quality metrics and the rules as data-quality assertions (``operators.lineage``)."""
        if self._job_output is None:
            return None
        from airflow_batch_provider.operators.lineage import openlineage_facets

        asset = self.output_asset
        return openlineage_facets(self._job_output, asset.uri if asset is not None else None)

    def finish_job(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """What the task does once the job is committed, on a single task and on a sharded job's merge alike.

        Here: write ``_report.html`` (``report_html_uri``) and the run's facts in the outlet asset events
        (:meth:`record_output`). The processor operators extend it (``super()``
        first): XCom keys (``profile``), log lines, ``fail_on``. Put every such extra here, never in
        :meth:`run_job`, so that ``ShardedBatchJob`` applies it too (a test holds every operator to it).

        :param summary: :meth:`run_job`'s summary (``output_uri``, ``report`` ...); returned, possibly extended.
        """
        html = publish_html_report(context, summary["output_uri"], self.output_conn_id, self.log)
        if html:
            summary["report_html_uri"] = html
        self.record_output(context, summary["output_uri"], summary)
        return summary

    def full_report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The job's report: the summary's, or ``{output_uri}/_report.json`` when it was too large to inline."""
        report = summary.get("report")
        if report is not None:
            return dict(report)
        from airflow_batch_provider.storage import Location

        target = storage_target(summary["output_uri"], conn_id(self.output_conn_id))
        return Location.of(target).child("_report.json").read_json() or {}

    def _metrics(self, context: Context, config: BatchConfig) -> list[Callable[[Any], Any]]:
        if not self.emit_metrics:
            return []
        from airflow_batch_provider.operators.metrics import BatchMetricsCallback

        ti = context["ti"]
        return [
            BatchMetricsCallback({"dag_id": ti.dag_id, "task_id": ti.task_id}, workers=config.concurrency)
        ]

    def on_kill(self) -> None:
        """Ask the engine to stop: it writes a checkpoint, then the task exits."""
        if self._cancel is not None:
            self._cancel.set()


#: XCom key of the job folder, pushed when the task starts: the plugin's pages find the folder through it
JOB_FOLDER_XCOM = "batch_job"


def record_job_folder(context: Context, folder: str, log: Any) -> None:
    """Push ``{"output_uri": folder}`` as XCom ``batch_job`` (kept when the task fails, unlike the result)."""
    try:
        context["ti"].xcom_push(key=JOB_FOLDER_XCOM, value={"output_uri": folder})
    except Exception:  # noqa: BLE001 - the links fall back to the default folder layout
        log.warning("could not push the %s XCom", JOB_FOLDER_XCOM, exc_info=True)


def publish_html_report(context: Context, folder: str, output_conn_id: str | None, log: Any) -> str | None:
    """Write ``_report.html`` for a profiling/quality job folder, compared with the previous run of this task
    (history under ``{base_path}/_records/reports/``); never fails the task."""
    from airflow_batch_provider.reports import write_html_report
    from airflow_batch_provider.storage import Location

    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    try:
        history = Location.of(records_target(connection=output_conn_id)).child(
            "reports", _segment(ti.dag_id), _segment(ti.task_id), f"{_segment(map_index)}.json"
        )
        uri = write_html_report(
            storage_target(folder, conn_id(output_conn_id)),
            title=f"{ti.dag_id} / {ti.task_id}"
            + (f" [{map_index}]" if isinstance(map_index, int) and map_index >= 0 else ""),
            subtitle=f"run {ti.run_id} \u00b7 {folder}",
            history=history,
            run_id=str(ti.run_id),
        )
    except Exception:  # noqa: BLE001 - the JSON report is committed; the page is a view of it
        log.warning("could not write the HTML report of %s", folder, exc_info=True)
        return None
    if uri:
        log.info("HTML report: %s", uri)
    return uri


def _source_callable(source: Any) -> bool:
    """A callable ``source`` (templating calls it): not a string, path or frame, and not an ``XComArg``."""
    return callable(source) and not isinstance(source, (str, bytes)) and not hasattr(source, "resolve")


def _alert_callable(callback: Any, context: Context) -> Callable[[Any], Any]:
    """A notifier with ``alert_callback(context)`` (``BatchAlertNotifier``) is bound to the task context."""
    bind = getattr(callback, "alert_callback", None)
    return bind(context) if callable(bind) else callback


class _TaskReporter:
    """Progress events -> ``task_state_store`` (``progress`` and ``checkpoint`` keys) and the XCom ``checkpoint``.

    Writes at most once every ``MIN_INTERVAL`` seconds, except the first and the final events.
    """

    MIN_INTERVAL = 3.0
    TERMINAL = ("started", "completed", "failed")

    def __init__(self, context: Context, log: Any, folder: str) -> None:
        ti = context["ti"]
        self.ti = ti
        self.log = log
        self.folder = folder
        self.store = context.get("task_state_store")
        self.job_id = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
        self._last_progress = 0.0
        self._last_checkpoint = 0.0

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        terminal = event.event_type in self.TERMINAL
        if (
            terminal
            or event.event_type.startswith("phase_")
            or now - self._last_progress >= self.MIN_INTERVAL
        ):
            self._last_progress = now
            self._set("progress", self._progress(event))
        final_phase = (
            event.phase_index >= event.phases_total
        )  # a statistics pass's checkpoints are not the job's
        if (
            final_phase
            and event.event_type in ("checkpoint", "failed")
            and (terminal or now - self._last_checkpoint >= self.MIN_INTERVAL)
        ):
            self._last_checkpoint = now
            pointer = {
                "output_uri": self.folder,
                "generation": event.extra.get("generation"),
                "chunks_done": event.chunks_done,
                "rows_done": event.rows_processed,
                "percent": event.progress_percentage,
                "at": time.time(),
            }
            self._publish_checkpoint(pointer)

    @staticmethod
    def _progress(event: Any) -> dict[str, Any]:
        return {
            "state": event.event_type,
            "percent": event.progress_percentage,
            "rows": event.rows_processed,
            "rows_total": event.rows_total,
            "rows_per_second": event.rows_per_second,
            "eta_seconds": None if event.eta_seconds is None else round(event.eta_seconds, 1),
            "chunks_done": event.chunks_done,
            "chunks_total": event.chunks_total,
            "message": event.message[:300],
            "phase": event.phase,
            "phase_index": event.phase_index,
            "phases_total": event.phases_total,
            "phase_percentage": event.phase_percentage,
            "at": event.timestamp,
        }

    def _set(self, key: str, value: dict[str, Any]) -> None:
        if self.store is None:
            return
        clean = {k: v for k, v in value.items() if v is not None}
        try:
            self.store.set(key, clean)
        except Exception:  # noqa: BLE001
            self.log.warning("could not write task_state_store[%r]", key, exc_info=True)

    def finish(self, summary: dict[str, Any]) -> None:
        """The final pointer, in ``task_state_store`` and as the last ``checkpoint`` XCom (a sharded job's merge
        ends with the same one as a single task, whose chunk checkpoints are throttled)."""
        pointer = {
            "output_uri": self.folder,
            "generation": summary.get("generation"),
            "status": "succeeded",
            "rows_out": summary.get("rows_out"),
            "at": time.time(),
        }
        self._publish_checkpoint(pointer)

    def _publish_checkpoint(self, pointer: dict[str, Any]) -> None:
        """The pointer in ``task_state_store["checkpoint"]`` and the ``checkpoint`` XCom."""
        self._set("checkpoint", pointer)
        try:
            self.ti.xcom_push(key="checkpoint", value=pointer)
        except Exception:  # noqa: BLE001 - progress reporting must never fail the job
            self.log.warning("could not push the checkpoint XCom", exc_info=True)
