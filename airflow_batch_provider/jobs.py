"""Running a job: the engine's runner inside a :class:`~airflow_batch_provider.monitoring.monitor.JobMonitor`.

``run_batch_job`` (one task) and ``run_shard`` (one shard of a sharded job) share one path: make the runner
(:func:`~airflow_batch_provider.engine.runner.build_runner`), then :func:`run_monitored` (heartbeat, resource
sampling, alert rules, SIGTERM -> cancel). The engine below knows nothing of monitoring; this module is the
layer that joins the two (``docs/architecture.md``). No Airflow imports.

``airflow_batch_provider.run_batch_job`` and ``airflow_batch_provider.engine.run_batch_job`` are this function.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import memory_sources
from airflow_batch_provider.engine.failures import RecoveryConfig
from airflow_batch_provider.engine.progress import ProgressEvent
from airflow_batch_provider.engine.runner import (
    JobResult,
    JobRunner,
    as_config,
    build_runner,
    default_base_path,
    default_records_path,
    new_job_id,
)
from airflow_batch_provider.engine.shards import ShardRunner, frozen_spec, shard_folder
from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.processors.registry import resolve_processor
from airflow_batch_provider.storage import Location

__all__ = ["run_batch_job", "run_monitored", "run_shard"]


def run_batch_job(
    source: Any,
    processor: Any,
    *,
    config: BatchConfig | Mapping[str, Any] | None = None,
    output_path: Any = None,
    progress_callbacks: Iterable[Callable[[ProgressEvent], Any]] | None = None,
    csv_options: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    cancel_event: threading.Event | None = None,
    recovery: RecoveryConfig | Mapping[str, Any] | None = None,
    epoch: int | None = None,
    records_path: Any = None,
    task_info: Mapping[str, Any] | None = None,
    alert_callbacks: Iterable[Callable[[Any], Any]] | None = None,
    alert_rules: Any = None,
    monitor: bool = True,
    input_format: str | None = None,
    success_marker: bool | Callable[[Any], bool] = True,
    **processor_kwargs: Any,
) -> JobResult:
    """Run ``processor`` over ``source`` in chunks, with checkpoints; resume if ``output_path`` holds one.

    :param source: a file, folder or glob of Parquet/CSV/JSON Lines files: a local path, an fsspec URI or an
        ``ObjectStoragePath``. A folder written by this engine is read through its committed manifest. Or an
        in-memory frame (a pandas or polars DataFrame, a pyarrow Table): stored once in the job folder as
        Parquet (``_input/``, named by a hash of its content) and run from there, so a resumed run with the same
        frame reuses the copy and its checkpoint (:mod:`airflow_batch_provider.engine.memory_sources`).
        Anything else is a ``SourceError`` naming the type.
    :param processor: a registered name, an import path ``"module:attr"``, a processor class or instance, or a
        sync/``async`` callable ``fn(batch_df, context, **processor_kwargs)``.
    :param config: a :class:`BatchConfig` (or a mapping of its fields).
    :param output_path: the job's own folder. ``None``: a new folder under ``$AIRFLOW_BATCH_PROVIDER_BASE_PATH``
        (default ``$AIRFLOW_HOME/batch_provider``).
    :param progress_callbacks: callables receiving :class:`ProgressEvent` objects.
    :param csv_options: options for CSV / JSON Lines sources (``delimiter``, ``quote_char``, ``encoding``,
        ``column_types``).
    :param job_id: the id in logs and events (default: the output folder's name).
    :param cancel_event: set it to stop the job; it checkpoints and raises ``JobCancelledError``.
    :param recovery: a :class:`~airflow_batch_provider.engine.failures.RecoveryConfig` (or mapping): what to do
        about each class of failure (see ``docs/failures.md``).
    :param epoch: this attempt's fencing epoch (the operator passes the Airflow try number). ``None``: one more
        than the highest epoch the folder has seen. An attempt that finds a higher epoch stops without writing.
    :param records_path: where failure records go (default ``{base path}/_records``); ``False`` disables them.
    :param task_info: ``dag_id``/``run_id``/``task_id``/``map_index``/``try_number`` for failure records.
    :param alert_callbacks: callables receiving each new
        :class:`~airflow_batch_provider.monitoring.alerts.Alert` (memory, CPU, throughput, failure rate, timeout).
    :param alert_rules: the alert thresholds: an ``AlertRules`` or a mapping such as
        ``{"memory_fraction": 0.8, "cpu_sustained_s": 120, "failure_rate": None}`` (``None`` switches a rule off;
        see ``docs/monitoring.md``). Default: the built-in thresholds, memory limit and timeout from ``config``.
    :param monitor: sample resources, evaluate the alert rules and keep a heartbeat under
        ``{records_path}/active`` while the job runs (what ``get_monitoring_dashboard_data()`` reads from any
        process). Off when ``records_path=False``.
    :param input_format: the frame each chunk is handed as: ``"pandas"`` (a DataFrame, the default for
        callables), ``"arrow"`` (the ``pyarrow.Table`` as read, no conversion) or ``"polars"`` (a
        ``polars.DataFrame`` from Arrow, no pandas copy). ``None``: the processor's own ``input_format`` (the
        standard processors read Arrow). A function may return rows in any of the three.
    :param success_marker: whether the committed output gets a ``_SUCCESS`` marker: a bool, or a callable given
        the final report (``DataQualityOperator`` passes its ``fail_on`` check, so a task that fails on the
        data leaves its report and quarantine but no ``_SUCCESS``). False also removes an older generation's.
    :param processor_kwargs: everything else goes to the processor, checked against its signature before the
        plan (``ProcessorParameterError``, no retry). After the plan and before any chunk, ``processor.validate``
        checks them against the source schema. A processor that fails deterministically (see
        :class:`~airflow_batch_provider.engine.failures.FailFast`) stops the job after one attempt with
        ``DeterministicProcessorError``, once the finished chunks are checkpointed.
    """
    config = as_config(config)
    proc = resolve_processor(processor, processor_kwargs, input_format=input_format)
    if output_path is None:
        job_id = job_id or new_job_id()
        output_path = os.path.join(default_base_path(), job_id)
    out = Location.of(output_path)
    source = memory_sources.stage(source, out)
    if records_path is None:
        records_path = default_records_path()
    return _run(
        JobRunner,
        source,
        proc,
        config,
        out,
        job_id or out.name,
        _options(locals()),
        success_marker=success_marker,
    )


def run_shard(
    spec: Mapping[str, Any],
    source: Any,
    processor: Any,
    /,
    *,
    output_path: Any = None,
    shard: int | None = None,
    config: BatchConfig | Mapping[str, Any] | None = None,
    csv_options: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    progress_callbacks: Iterable[Callable[[ProgressEvent], Any]] | None = None,
    cancel_event: threading.Event | None = None,
    epoch: int | None = None,
    recovery: RecoveryConfig | Mapping[str, Any] | None = None,
    records_path: Any = False,
    task_info: Mapping[str, Any] | None = None,
    alert_callbacks: Iterable[Callable[[Any], Any]] | None = None,
    alert_rules: Any = None,
    monitor: bool = True,
    **processor_kwargs: Any,
) -> JobResult:
    """Run one shard (a spec from :func:`plan_shards`) in ``{output_path}/_shards/gNNNN/sNNNN``; resume from its
    own checkpoint.

    ``output_path`` is the job folder, where the plan is. Every path the shard uses is derived from it, the latest
    plan in it and ``shard`` (the shard's own index; the operator passes the mapped task's map index; default
    the spec's); the spec must equal the one the plan froze (``BatchInputError`` otherwise). ``epoch`` fences the
    shard's folder against an older attempt of the same shard (the Airflow try number).
    ``recovery``, ``records_path`` (``False``: no failure records, no monitor), ``task_info``,
    ``alert_callbacks``, ``alert_rules`` and ``monitor`` are those of
    :func:`run_batch_job`. ``spec``, ``source`` and ``processor`` are positional only, so a processor parameter
    may bear one of their names (``feature_engineering``'s ``spec``, a saved fit).
    """
    if output_path is None:
        raise BatchInputError("run_shard needs output_path: the job folder the plan was written to")
    out = Location.of(output_path)
    source = memory_sources.stage(source, out, reuse_only=True)  # an in-memory source: the plan's stored copy
    plan, spec = frozen_spec(out, spec, shard)
    config = as_config(config).with_overrides({"batch_size": int(spec["batch_size"])})
    proc = resolve_processor(processor, processor_kwargs)
    folder, label = shard_folder(plan, spec["shard"]), job_id or f"{out.name}/shard-{spec['shard']}"
    return _run(ShardRunner, source, proc, config, folder, label, _options(locals()), spec=spec, plan=plan)


#: the keywords ``run_batch_job`` and ``run_shard`` share, handed on by name (one list, not two copies)
_RUNNER_OPTIONS = ("csv_options", "progress_callbacks", "cancel_event", "recovery", "records_path", "epoch",
                   "task_info")  # fmt: skip
_MONITOR_OPTIONS = ("monitor", "records_path", "task_info", "alert_rules", "alert_callbacks")


def _options(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: args[k] for k in {*_RUNNER_OPTIONS, *_MONITOR_OPTIONS}}


def _run(
    cls: type[JobRunner],
    source: Any,
    proc: Any,
    config: BatchConfig,
    out: Location,
    job_id: str,
    options: Mapping[str, Any],
    **extra: Any,
) -> JobResult:
    """Make the runner and run it monitored: the one path of single jobs and shards."""
    runner = build_runner(
        cls, source, proc, config, out, job_id, **{k: options[k] for k in _RUNNER_OPTIONS}, **extra
    )
    return run_monitored(runner, **{k: options[k] for k in _MONITOR_OPTIONS})


def run_monitored(
    runner: JobRunner,
    *,
    monitor: bool = True,
    records_path: Any = None,
    task_info: Mapping[str, Any] | None = None,
    alert_rules: Any = None,
    alert_callbacks: Iterable[Callable[[Any], Any]] | None = None,
) -> JobResult:
    """``runner.run()`` inside a :class:`~airflow_batch_provider.monitoring.monitor.JobMonitor` (resource
    sampling, alerts, the heartbeat the dashboard reads) unless ``monitor`` is false or ``records_path`` is
    ``False``; SIGTERM sets the runner's cancel event while it runs."""
    job_monitor = None
    if monitor and records_path is not False:
        from airflow_batch_provider.monitoring.monitor import JobMonitor

        job_monitor = JobMonitor(
            runner.job_id,
            records_path=records_path if records_path is not None else default_records_path(),
            output_uri=runner.out.uri,
            labels=task_info,
            config=runner.config,
            rules=alert_rules,
            alert_callbacks=alert_callbacks or (),
        )
        runner.callbacks.insert(0, job_monitor.on_event)
        job_monitor.start()
    result, error = None, None
    try:
        with _sigterm_sets(runner.cancel_event):
            result = runner.run()
        return result
    except BaseException as err:
        error = err
        raise
    finally:
        if job_monitor is not None:
            job_monitor.stop(result, error)


class _sigterm_sets:
    """While a job runs in the main thread, SIGTERM sets the cancel event (then calls the previous handler)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.previous: Any = None
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        if self.active:
            self.previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.event.set()
        if callable(self.previous):
            self.previous(signum, frame)

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
