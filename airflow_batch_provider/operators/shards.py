"""Sharded batch jobs: one job fanned out over Airflow's executors as plan -> mapped shards -> merge.

``ShardedBatchJob`` is a ``TaskGroup`` holding three ordinary tasks (all ``BatchJobOperator`` subclasses):

- ``{group}.plan`` (:class:`ShardPlanOperator`): fits the processor once, freezes the file plan and splits the
  chunk plan into at most ``min(shards, [core] max_map_length)`` row ranges; returns the shard specs.
- ``{group}.shard`` (:class:`ShardOperator`, mapped over the specs): each runs the engine over its ranges with
  its own checkpoint, ``task_state_store`` progress, retries and resume.
- ``{group}.merge`` (:class:`ShardMergeOperator`): merges the shards' partial states, writes the report and
  the manifest, and returns the same summary as a single ``BatchJobOperator`` (``output_uri`` ...).

For a standard processor (``"data_quality"`` ...) the three tasks are also instances of its operator
(``DataQualityOperator`` ...; :func:`sharded_part`): they take its typed parameters (``fail_on``, ``features``
...) and its ``process_kwargs``, and the merge runs the operator's own ``execute``, with only the job itself
(``run_job``) replaced by the merge, so its extras (``finish_job``: XCom keys, ``fail_on``, log lines, the HTML
report; ``job_kwargs``: the ``_SUCCESS`` rule) are applied exactly as on a single task.

Nothing here depends on the executor: the tasks run wherever Airflow sends them, so the job folder must be
storage that every worker reaches (object storage, or a shared mount declared with
``[batch_provider] shared_storage = True``). See ``docs/shards.md``.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
import types
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from airflow.sdk import TaskGroup, conf

from airflow_batch_provider.config import BatchPriority
from airflow_batch_provider.operators import keywords
from airflow_batch_provider.operators.batch import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    BatchInputFailure,
    BatchJobOperator,
    _alert_callable,
    _base_operator_params,
    _segment,
    base_path,
    record_job_folder,
    storage_target,
)
from airflow_batch_provider.operators.conf import apply_log_row_values, records_target
from airflow_batch_provider.operators.conf import conn_id as resolve_conn_id
from airflow_batch_provider.operators.retry_policy import BatchRetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Context

#: executors that run every task on the scheduler's host: local storage is shared by construction
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})
LOCAL_SCHEMES = frozenset({"", "file", "local", "memory"})
#: the id a deployment may give each worker (e.g. in its environment) to tell workers on one host apart
WORKER_ID_ENV = "BATCH_WORKER_ID"


def executor_name(task_executor: str | None = None) -> str:
    """The class name of the executor a task runs on: its own ``executor=`` or the first of ``[core] executor``.

    ``[core] executor`` entries may be ``alias:module.Class``, ``module.Class`` or a core name.
    """
    name = task_executor or (conf.get("core", "executor", fallback="") or "LocalExecutor").split(",")[0]
    return name.strip().split(":")[-1].split(".")[-1]


def is_local_storage(target: Any) -> bool:
    """True for a plain path or a ``file://``/``local://``/``memory://`` URI (one host's storage)."""
    protocol = getattr(target, "protocol", None)
    if protocol is not None:  # an ObjectStoragePath
        return (protocol[0] if isinstance(protocol, (tuple, list)) else protocol) in LOCAL_SCHEMES
    return urlsplit(str(target)).scheme in LOCAL_SCHEMES


def shared_storage_declared() -> bool:
    """``[batch_provider] shared_storage``: the deployment says local paths are a mount every worker shares."""
    from airflow_batch_provider.operators.conf import shared_storage

    return shared_storage()


def check_shared_storage(paths: Mapping[str, Any], executor: str) -> None:
    """Fail fast when shards may run on other hosts than the local storage they need.

    :param paths: what the shards read and write, by role (``{"output_path": ..., "source": ...}``).
    :param executor: the executor's class name (:func:`executor_name`).
    :raises BatchInputFailure: a local path with a non-local executor, unless ``shared_storage`` is declared.
    """
    if executor in LOCAL_EXECUTORS or shared_storage_declared():
        return
    local = {role: str(p) for role, p in paths.items() if p is not None and is_local_storage(p)}
    if local:
        listed = ", ".join(f"{role}={p!r}" for role, p in local.items())
        raise BatchInputFailure(
            f"sharded job: {listed} is local storage, but the shards run on {executor}, whose workers may "
            "sit on other hosts: each would see only its own disk, so shards could not find the plan and the "
            "merge could not find the shards' parts. Use object storage (e.g. [batch_provider] base_path = "
            "s3://conn_id@bucket/prefix, or output_path/source on s3://), or, if this path is a mount shared "
            "by every worker, declare it with [batch_provider] shared_storage = True "
            "(AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE=True)."
        )


def sharded_job_folder(context: Context, job_key: str) -> str:
    """``{base_path}/{dag_id}/{run_id}/{job_key}/-1``: the folder of an unmapped task named ``job_key``."""
    ti = context["ti"]
    base = base_path().rstrip("/")
    folder = "/".join([base, _segment(ti.dag_id), _segment(ti.run_id), _segment(job_key), _segment(-1)])
    if not folder.startswith(base + "/") or len(folder.split("/")) != len(base.split("/")) + 4:
        raise BatchInputFailure(f"refusing to write outside the base path {base!r}: {folder!r}")
    return folder


class _ShardedJobPart(BatchJobOperator):
    """What the plan, shard and merge tasks share: one job folder for the whole sharded job.

    :param job_key: names the job folder (default: the task group's id, else the task id up to its last dot).
    """

    declares_asset = False  # the merge declares the job's output asset

    def __init__(self, *, job_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_key = job_key or (self.task_id.rsplit(".", 1)[0] if "." in self.task_id else self.task_id)

    def job_folder(self, context: Context) -> str:
        return self.checked_output_path() if self.output_path else sharded_job_folder(context, self.job_key)

    def output_target(self, folder: str) -> Any:
        return storage_target(folder, resolve_conn_id(self.output_conn_id))

    def records_target(self) -> Any:
        return records_target(connection=self.output_conn_id)


class ShardPlanOperator(_ShardedJobPart):
    """Plan a sharded job: fit once, freeze the plan, return the shard specs (at most ``[core] max_map_length``).

    :param shards: how many shards to aim for; fewer when the job has fewer chunks or the cap is lower.

    Every ``BatchJobOperator`` parameter applies. Before reading anything, it fails when the job folder or the
    source is local storage and the executor's workers may sit on other hosts (:func:`check_shared_storage`).
    """

    ui_color = "#e0e7ff"

    def __init__(self, *, shards: int = 8, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", False)  # returns a list of specs
        super().__init__(**kwargs)
        if int(shards) < 1:
            raise ValueError(f"{self.task_id}: shards must be >= 1, got {shards!r}")
        self.shards = int(shards)

    def execute(self, context: Context) -> list[dict[str, Any]]:  # type: ignore[override] # the shard specs
        from airflow_batch_provider.engine.shards import plan_shards
        from airflow_batch_provider.exceptions import BatchInputError

        apply_log_row_values()
        folder = self.job_folder(context)
        record_job_folder(context, folder, self.log)
        source = self.source_target()
        output = self.output_target(folder)
        from airflow_batch_provider.engine.memory_sources import is_in_memory

        # a frame is stored in the job folder (output_path): only a source read from elsewhere is checked
        shared = {"output_path": output, "source": None if is_in_memory(source) else source}
        check_shared_storage(shared, executor_name(self.executor))
        cap = conf.getint("core", "max_map_length", fallback=1024)
        if self.shards > cap:
            self.log.warning(
                "shards=%d is above [core] max_map_length=%d: planning %d shards instead",
                self.shards,
                cap,
                cap,
            )
        reporter = _reporter(context, self.log, folder)
        self._cancel = threading.Event()
        try:
            specs = plan_shards(
                source,
                self.processor,
                output_path=output,
                shards=self.shards,
                max_shards=cap,
                config=self.resolve_config(),
                csv_options=self.csv_options,
                job_id=reporter.job_id,
                progress_callbacks=[reporter, *self.progress_callbacks],
                cancel_event=self._cancel,
                **self.process_kwargs(context),
            )
        except BatchInputError as err:
            raise BatchInputFailure(str(err)) from err
        self.log.info(
            "planned %d shard(s) of %s rows in %s",
            len(specs),
            "/".join(str(s["rows"]) for s in specs),
            folder,
        )
        return specs


@cache
def _operator_takes(cls: type, name: str) -> bool:
    """Whether a processor operator behind a sharded part (:func:`sharded_part`) has a parameter ``name``."""
    return any(
        name in inspect.signature(klass.__dict__["__init__"]).parameters
        for klass in cls.__mro__
        if "__init__" in klass.__dict__
        and issubclass(klass, BatchJobOperator)
        and not issubclass(klass, _ShardedJobPart)
    )


class ShardOperator(_ShardedJobPart):
    """Run one shard (a spec from :class:`ShardPlanOperator`) with its own checkpoint; a retry resumes it.

    :param spec: the shard spec (mapped: ``ShardOperator.partial(...).expand(spec=plan.output)``).
    :param shard_spec: the same, under a name no processor operator uses (``ShardedBatchJob`` maps over it).
        When the processor operator behind the shard has a ``spec`` parameter of its own
        (``FeatureEngineeringOperator``'s saved fit), ``spec`` is that one and the shard spec must be ``shard_spec``.

    Returns the shard's summary: ``output_uri`` (the job folder), ``shard_uri``, ``shard``, rows and chunks,
    and where it ran: ``host`` (``socket.gethostname()``), ``pid`` (``os.getpid()``) and ``worker`` (the
    ``BATCH_WORKER_ID`` environment variable, if the deployment sets one per worker).
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "spec", "shard_spec")
    ui_color = "#c7d2fe"
    calls_source = False  # an in-memory source: the copy the plan stored

    def __init__(
        self,
        *,
        spec: Mapping[str, Any] | None = None,
        shard_spec: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", False)  # one XCom row per shard, not one per key
        if _operator_takes(type(self), "spec"):  # the processor operator's own spec: hand it on
            super().__init__(spec=spec, **kwargs)
        else:
            super().__init__(**kwargs)
            self.spec = spec
        self.shard_spec = shard_spec

    def current_spec(self) -> Any:
        """The shard spec: ``shard_spec``, else ``spec`` unless that is the processor operator's own."""
        if self.shard_spec is not None or _operator_takes(type(self), "spec"):
            return self.shard_spec
        return self.spec

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_batch_provider.exceptions import BatchInputError
        from airflow_batch_provider.jobs import run_shard

        spec = self.current_spec()
        if not isinstance(spec, Mapping) or "shard_fingerprint" not in spec:
            name = "shard_spec" if _operator_takes(type(self), "spec") else "spec"
            raise BatchInputFailure(
                f"{self.task_id}: {name} must be a shard spec from the plan task, got {spec!r}"
            )
        apply_log_row_values()
        folder = self.job_folder(context)
        record_job_folder(context, folder, self.log)
        output = self.output_target(folder)
        ti = context["ti"]
        reporter = _reporter(context, self.log, folder)
        self._cancel = threading.Event()
        try:
            config = self.resolve_config()
            result = run_shard(
                spec,
                self.source_target(),
                self.processor,
                output_path=output,
                shard=ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None,
                config=config,
                csv_options=self.csv_options,
                job_id=reporter.job_id,
                progress_callbacks=[reporter, *self._metrics(context, config), *self.progress_callbacks],
                cancel_event=self._cancel,
                epoch=ti.try_number,
                recovery=self.recovery,
                records_path=self.records_target(),
                alert_callbacks=[_alert_callable(cb, context) for cb in self.alert_callbacks],
                alert_rules=self.alert_rules,
                task_info={
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "try_number": ti.try_number,
                },
                **self.process_kwargs(context),
            )
        except BatchInputError as err:
            raise BatchInputFailure(str(err)) from err
        summary = result.to_dict()
        summary.update(
            output_uri=folder,
            shard_uri=result.output_uri,
            shard=int(result.extra["shard"]),
            try_number=ti.try_number,
            host=socket.gethostname(),
            pid=os.getpid(),
            worker=os.environ.get(WORKER_ID_ENV),
        )
        reporter.finish(summary)
        self.log.info(
            "shard %d of %d done on %s (pid %d): %d rows in, %d chunks (%d resumed) in %.1fs",
            summary["shard"],
            int(spec.get("shards", 0)),
            summary["host"],
            summary["pid"],
            result.rows_in,
            result.chunks_total,
            result.chunks_resumed,
            result.duration_s,
        )
        return summary


class ShardMergeOperator(_ShardedJobPart):
    """Merge the finished shards: one report, one committed manifest; returns ``BatchJobOperator``'s summary.

    :param shard_results: the shard tasks' summaries (``shard_task.output``), to add ``chunks_processed``,
        ``chunks_resumed`` and where each shard ran (``shard_runs``) to the summary. Optional.

    The summary has every key a single ``BatchJobOperator`` returns (``output_uri``, ``rows_in``, ``rows_out``,
    ``report`` ...), with ``extra.shards`` and ``extra.merge_s``; it is pushed with ``multiple_outputs=True``.
    Only :meth:`run_job` is its own: ``execute`` is ``BatchJobOperator``'s, so ``finish_job`` (and, in
    ``ShardedBatchJob``, the processor operator's ``finish_job`` and ``job_kwargs``) apply as on one task.
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "shard_results")
    ui_color = "#a5b4fc"
    calls_source = False  # the merge reads no source

    def __init__(self, *, shard_results: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard_results = shard_results
        self.declare_asset(self.job_key)  # {base_path}/{dag_id}/{job_key}: the job folders without the run

    def run_job(self, context: Context) -> dict[str, Any]:
        """Merge the shards (instead of running the engine over the source); the job summary."""
        from airflow_batch_provider.engine.shards import merge_shards
        from airflow_batch_provider.exceptions import BatchInputError

        apply_log_row_values()
        self.partition_keys()  # a bad key fails before the merge
        folder = self.job_folder(context)
        record_job_folder(context, folder, self.log)
        reporter = _reporter(context, self.log, folder)
        try:
            result = merge_shards(
                self.output_target(folder),
                self.processor,
                job_id=reporter.job_id,
                **self.job_kwargs(),
                **self.process_kwargs(context),
            )
        except BatchInputError as err:
            raise BatchInputFailure(str(err)) from err
        summary = result.to_dict()
        summary["output_uri"] = folder
        if self.shard_results is not None:
            runs = [dict(r) for r in self.shard_results if r]
            summary["chunks_processed"] = sum(int(r.get("chunks_processed", 0)) for r in runs)
            summary["chunks_resumed"] = sum(int(r.get("chunks_resumed", 0)) for r in runs)
            summary["shard_runs"] = [
                {k: r.get(k) for k in ("shard", "host", "pid", "worker", "try_number", "rows_in")}
                for r in sorted(runs, key=lambda r: r.get("shard", 0))
            ]
        reporter.finish(summary)
        self.log.info(
            "sharded job merged: %d shard(s), %d rows in, %d rows out, %d chunks; merge %.1fs; output %s",
            result.extra.get("shards", 0),
            result.rows_in,
            result.rows_out,
            result.chunks_total,
            result.duration_s,
            folder,
        )
        return summary


#: the three parts of a sharded job, by the name a :func:`sharded_part` class ends with
_PART_CLASSES: dict[str, type[_ShardedJobPart]] = {
    "ShardPlanOperator": ShardPlanOperator,
    "ShardOperator": ShardOperator,
    "ShardMergeOperator": ShardMergeOperator,
}
_SHARDED_PARTS: dict[tuple[type, type], type] = {}


@cache
def processor_operators() -> dict[str, type[BatchJobOperator]]:
    """The standard processor operators, by the registered name of their processor (``{"data_quality":
    DataQualityOperator, ...}``): every ``BatchJobOperator`` subclass the ``operators`` package exports whose
    ``processor_class`` is a name. Imports the operator modules only (no processor, no pandas)."""
    import airflow_batch_provider.operators as package

    found: dict[str, type[BatchJobOperator]] = {}
    for name in package.__all__:
        obj = getattr(package, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BatchJobOperator)
            and not issubclass(obj, _ShardedJobPart)
            and isinstance(obj.processor_class, str)
        ):
            found[obj.processor_class] = obj
    return found


def operator_for(processor: Any) -> type[BatchJobOperator]:
    """The operator a single task of ``processor`` would be: the standard processor's operator for its
    registered name, its ``"module:Class"`` path or its class (:func:`processor_operators`), else
    ``BatchJobOperator``. A name a DAG registered itself (``registry.register``) is not a standard processor."""
    from airflow_batch_provider.processors import catalog

    if isinstance(processor, str) and keywords._registered_by_user(processor):
        return BatchJobOperator
    operators = processor_operators()
    if isinstance(processor, str):
        path = processor.strip()
    elif isinstance(processor, type):
        path = f"{processor.__module__}:{processor.__qualname__}"
    else:
        return BatchJobOperator
    for name, operator in operators.items():
        builtin = catalog.BUILTIN.get(name)
        paths = {name} if builtin is None else {name, builtin.path, builtin.path.replace(":", ".")}
        if path in paths:
            return operator
    return BatchJobOperator


def sharded_part(part: type[_ShardedJobPart], operator: type[BatchJobOperator]) -> type[_ShardedJobPart]:
    """``part`` (plan, shard or merge) as an instance of ``operator`` too: ``class
    DataQualityShardMergeOperator(ShardMergeOperator, DataQualityOperator)``, built once per pair.

    The part comes first in the method order: the plan and the shards keep their own ``execute``; the merge
    keeps only its ``run_job``, so the operator's ``execute``/``finish_job``/``job_kwargs`` are the merge's.
    The operator's typed parameters, ``process_kwargs`` (validation, templated numbers) and template fields
    apply to all three. ``BatchJobOperator`` (or an operator the part already is) returns ``part`` itself.
    """
    if operator is BatchJobOperator or issubclass(part, operator):
        return part
    if not (isinstance(operator, type) and issubclass(operator, BatchJobOperator)):
        raise TypeError(f"operator_class must be a BatchJobOperator subclass, got {operator!r}")
    built = _SHARDED_PARTS.get((part, operator))
    if built is None:
        name = f"{operator.__name__.removesuffix('Operator')}{part.__name__}"
        namespace = {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{part.__name__} of a sharded {operator.__name__} job (see ``sharded_part``).",
            "template_fields": tuple(dict.fromkeys((*part.template_fields, *operator.template_fields))),
            "template_fields_renderers": {
                **operator.template_fields_renderers,
                **part.template_fields_renderers,
            },
        }
        built = types.new_class(name, (part, operator), exec_body=lambda ns: ns.update(namespace))
        _SHARDED_PARTS[(part, operator)] = built
        if part in _PART_CLASSES.values() and operator in processor_operators().values():
            globals()[name] = built  # importable by name, like any operator class
    return built


def __getattr__(name: str) -> Any:
    """``DataQualityShardMergeOperator`` ...: the sharded parts of the standard operators, built on first use."""
    for base, part in _PART_CLASSES.items():
        prefix = name.removesuffix(base)
        if prefix != name:
            for operator in processor_operators().values():
                if operator.__name__.removesuffix("Operator") == prefix:
                    return sharded_part(part, operator)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _reporter(context: Context, log: Any, folder: str) -> Any:
    from airflow_batch_provider.operators.batch import _TaskReporter

    return _TaskReporter(context, log, folder)


@cache
def _job_params() -> frozenset[str]:
    """The ``BatchJobOperator`` parameters that are not ``BaseOperator``'s (everything else: processor kwargs)."""
    return frozenset(inspect.signature(BatchJobOperator.__init__).parameters) - {"self", "kwargs"}


#: BaseOperator retry arguments with the batch operators' defaults (mapped tasks need them explicitly)
_RETRY_DEFAULTS: dict[str, Any] = {
    "retries": DEFAULT_RETRIES,
    "retry_delay": DEFAULT_RETRY_DELAY,
    "retry_exponential_backoff": DEFAULT_BACKOFF,
    "max_retry_delay": DEFAULT_MAX_RETRY_DELAY,
}


class ShardedBatchJob(TaskGroup):
    """A batch job fanned out over Airflow's executors: ``{group_id}.plan`` -> ``{group_id}.shard`` (mapped) ->
    ``{group_id}.merge``. Use it like one operator: ``upstream >> job >> downstream``,
    ``job.output["output_uri"]`` (the merge task's summary).

    :param group_id: the task group id; also names the job folder
        (``{[batch_provider] base_path}/{dag_id}/{run_id}/{group_id}/-1`` unless ``output_path`` is given).
    :param source: as ``BatchJobOperator`` (templated; an upstream ``XComArg`` works).
    :param processor: a registered name (the four standard processors, ``"count"`` ...), an import path, a
        processor class or a callable. Processor parameters are keyword arguments, as for ``BatchJobOperator``.
        For a standard processor the three tasks are also its operator (``"data_quality"`` ->
        ``DataQualityOperator``; :func:`operator_for`): its parameters (``fail_on=``, ``log_columns=`` ...) are
        accepted, and the merge applies what that operator applies after its job (``finish_job``: the
        ``profile`` XCom, ``fail_on``, its log lines and the HTML report; ``job_kwargs``: ``_SUCCESS`` only
        when ``fail_on`` passes). Optional with ``operator_class``.
    :param shards: how many shard tasks to aim for (fewer if the job has fewer chunks; never more than
        ``[core] max_map_length``, which the plan task logs).
    :param priority: a :class:`BatchPriority`: ``priority_weight`` with ``weight_rule="absolute"`` on all three
        tasks.
    :param tooltip: the group's tooltip in the UI.
    :param operator_class: the ``BatchJobOperator`` subclass whose parameters, ``process_kwargs``,
        ``finish_job`` and ``job_kwargs`` the tasks take (a subclass of a standard operator, say). Default:
        :func:`operator_for` ``(processor)``; ``processor`` defaults to its ``processor_class``.
    :param kwargs: every other ``BatchJobOperator`` / ``BaseOperator`` argument, applied to all three tasks:
        ``config``, ``output_path``, ``retries``, ``pool``, ``pool_slots``, ``queue``, ``executor``,
        ``executor_config`` (e.g. a KubernetesExecutor ``pod_override``), ``max_active_tis_per_dagrun`` /
        ``max_active_tis_per_dag`` (limit how many shards run at once) ...; other keywords go to the processor (checked as for ``BatchJobOperator``).
        ``asset`` and ``outlets`` apply to the merge only: it declares the job's output asset (default
        ``{[batch_provider] base_path}/{dag_id}/{group_id}``) and puts the run's facts in its event.

    Attributes: ``plan``, ``shard`` (the mapped operator), ``merge``, ``output`` (``merge.output``),
    ``operator_class``.
    """

    shard_operator: ClassVar[type[ShardOperator]] = ShardOperator

    def __init__(
        self,
        group_id: str,
        *,
        source: Any,
        processor: Any = None,
        shards: int = 8,
        priority: BatchPriority | str | None = None,
        tooltip: str = "",
        operator_class: type[BatchJobOperator] | None = None,
        **kwargs: Any,
    ) -> None:
        if int(shards) < 1:
            raise ValueError(f"{group_id}: shards must be >= 1, got {shards!r}")
        operator = operator_class or operator_for(processor)
        if not (isinstance(operator, type) and issubclass(operator, BatchJobOperator)):
            raise TypeError(
                f"{group_id}: operator_class must be a BatchJobOperator subclass, got {operator!r}"
            )
        processor = operator.processor_class if processor is None else processor
        if processor is None:
            raise ValueError(
                f"{group_id}: ShardedBatchJob needs processor= (or an operator_class that sets one)"
            )
        super().__init__(
            group_id=group_id, tooltip=tooltip or f"sharded batch job: plan, {shards} shards, merge"
        )
        outlets = kwargs.pop(
            "outlets", None
        )  # the job's output: the merge's outlets, not the plan's or shards'
        self.operator_class = operator
        task_args = self._task_args(kwargs, priority)
        with self:
            self.plan = sharded_part(ShardPlanOperator, operator)(
                task_id="plan",
                source=source,
                processor=processor,
                shards=shards,
                job_key=self.group_id,
                **task_args,
            )
            self.shard = (
                sharded_part(self.shard_operator, operator)
                .partial(
                    task_id="shard", source=source, processor=processor, job_key=self.group_id, **task_args
                )
                .expand(shard_spec=self.plan.output)
            )
            self.merge = sharded_part(ShardMergeOperator, operator)(
                task_id="merge",
                source=source,
                processor=processor,
                job_key=self.group_id,
                shard_results=self.shard.output,
                outlets=outlets,
                **task_args,
            )

    def _task_args(self, kwargs: dict[str, Any], priority: BatchPriority | str | None) -> dict[str, Any]:
        """Explicit arguments for all three tasks: mapped tasks do not run ``BatchJobOperator``'s defaults
        through the scheduler, so retries, priority and processor parameters are resolved here."""
        if "multiple_outputs" in kwargs:
            raise ValueError(
                f"{self.group_id}: ShardedBatchJob sets multiple_outputs itself (the plan and shards push one XCom, "
                "the merge pushes its summary with multiple_outputs=True)"
            )
        # the processor operator's own typed parameters (fail_on, rules, bins ...) are operator arguments of all
        # three tasks, as on a single task; every other unknown keyword is a processor parameter
        own = keywords.operator_arguments(self.operator_class) - keywords.operator_arguments(BatchJobOperator)
        known = _job_params() | _base_operator_params() | own
        args = {k: v for k, v in kwargs.items() if k in known}
        explicit = dict(args.pop("processor_kwargs", None) or {})
        for name in sorted(own & set(explicit)):  # processor_kwargs={"bins": 7} reached the processor before
            if name in args:
                raise ValueError(
                    f"{self.group_id}: {name!r} given both as a keyword and in processor_kwargs; give it once"
                )
            args[name] = explicit.pop(name)
        processor_kwargs = {**explicit, **{k: v for k, v in kwargs.items() if k not in known}}
        if priority is not None:
            if "priority_weight" in args:
                raise ValueError(f"{self.group_id}: give either priority or priority_weight, not both")
            args["priority_weight"] = int(BatchPriority.parse(priority))
            args["weight_rule"] = "absolute"
        inherited = {**(self.dag.default_args if self.dag else {}), **(self.default_args or {})}
        for key, default in _RETRY_DEFAULTS.items():
            if args.get(key) is None:
                args[key] = inherited.get(key, default)
        if args.get("retry_policy") is None:
            args["retry_policy"] = inherited.get("retry_policy") or BatchRetryPolicy()
        return {**args, "processor_kwargs": processor_kwargs}

    @property
    def output(self) -> Any:
        """The merge task's XCom (``job.output["output_uri"]``)."""
        return self.merge.output
