"""``run_batch_job``: plan -> run -> checkpoint -> finalize.

No Airflow imports. The operator in ``airflow_batch_provider.operators.batch`` is a thin wrapper.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import heapq
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from airflow_batch_provider import settings
from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import sizing, sources, textformats, workers
from airflow_batch_provider.engine.adaptive import FILL, BatchSizeAdapter
from airflow_batch_provider.engine.checkpoints import (
    CheckpointStore,
    Decision,
    Fence,
    decide_generation,
    part_name,
)
from airflow_batch_provider.engine.compaction import COMPACTED, Compaction, compact_output
from airflow_batch_provider.engine.failures import (
    FailFast,
    FailureClass,
    RecoveryConfig,
    Strategy,
    error_signature,
)
from airflow_batch_provider.engine.jsonsafe import to_jsonable
from airflow_batch_provider.engine.ledger import FailureLedger
from airflow_batch_provider.engine.progress import ProgressEvent, ProgressTracker
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.engine.redaction import Scrubber
from airflow_batch_provider.engine.textformats import TextOptions
from airflow_batch_provider.exceptions import (
    BatchInputError,
    ChunkFailedError,
    ChunkTimeoutError,
    CorruptRowsError,
    DataCorruptionError,
    DeterministicProcessorError,
    JobCancelledError,
    JobTimeoutError,
    StaleAttemptError,
    WorkerDiedError,
)
from airflow_batch_provider.processors import frames, side_files
from airflow_batch_provider.processors.base import BaseProcessor, StatsPass
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.engine")

DEFAULT_BATCH_SIZE = 100_000
REPORT_INLINE_LIMIT = 16 * 1024
ENV_BASE_PATH = settings.LEGACY_BASE_PATH_ENV  # deprecated


@dataclass(frozen=True)
class JobResult:
    """What a job did. ``to_dict()`` is the compact JSON summary (the operator's XCom result)."""

    output_uri: str
    rows_in: int
    rows_out: int
    chunks_total: int
    chunks_processed: int
    chunks_resumed: int
    chunks_skipped: int
    report: dict[str, Any] | None
    duration_s: float
    job_id: str = ""
    generation: int = 1
    fingerprint: str = ""
    batch_size: int = 0
    resume_decision: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: batch-size changes while the job ran (``from``, ``to``, ``reason``, ``chunk``, ``time``)
    batch_size_trajectory: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["report_uri"] = self.output_uri.rstrip("/") + "/_report.json"
        report_json = json.dumps(to_jsonable(self.report), separators=(",", ":"))
        if len(report_json) > REPORT_INLINE_LIMIT:
            out["report"] = None
            out["report_truncated"] = True
        else:
            out["report"] = to_jsonable(self.report)
        out["extra"] = to_jsonable(self.extra)
        return out


def default_base_path() -> str:
    """``$AIRFLOW__BATCH_PROVIDER__BASE_PATH`` (what ``[batch_provider] base_path`` reads), else the deprecated
    ``$AIRFLOW_BATCH_PROVIDER_BASE_PATH``, else ``$AIRFLOW_HOME/batch_provider``: the operators' default too,
    so jobs run from Python, from Airflow, the CLI and the dashboard all find the same folder
    (:mod:`airflow_batch_provider.settings`)."""
    return settings.engine_base_path()


def default_records_path() -> str:
    return os.path.join(default_base_path(), settings.RECORDS_FOLDER)


@functools.cache
def _versions(*extra: str) -> dict[str, str]:
    """Versions of the libraries results depend on: the provider itself (its kernels), numpy, pyarrow, pandas,
    scikit-learn, and the ``extra`` distributions."""
    out = {}
    for dist in ("airflow-batch-provider", "numpy", "pyarrow", "pandas", "scikit-learn", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def _versions_for(processor: Any) -> dict[str, str]:
    """:func:`_versions`, plus polars' when the processor is handed polars frames (polars' hashes and kernels
    are only stable within one polars version)."""
    wants = getattr(processor, "input_format", "pandas") == "polars" or getattr(
        processor, "uses_polars", False
    )
    return _versions("polars") if wants else _versions()


def fingerprint_of(files: list[sources.SourceFile], processor: BaseProcessor, options: TextOptions) -> str:
    """What a checkpoint is only valid for: the files, the processor, how text files read (options and the
    reader's semantics version, :data:`textformats.READER_VERSION`) and the library versions."""
    doc = {
        "files": [(f.path, f.size, f.version) for f in files],
        "processor": processor.identity(),
        "text_options": options.to_dict(),
        "text_reader": textformats.READER_VERSION,
        "versions": _versions_for(processor),
    }
    raw = json.dumps(doc, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def choose_batch_size(
    config: BatchConfig, processor: Any, sample: Callable[[], sizing.DataSample]
) -> tuple[int, str, sizing.BatchRecommendation | None]:
    """The configured size; else (``auto_optimize``) :func:`airflow_batch_provider.sizing.recommend_for_sample`
    on a real sample of the job's rows (``sample()``, read only then), aiming at ``FILL`` of
    ``memory_limit_mb``; else ``DEFAULT_BATCH_SIZE``. Returns the size, why, and the recommendation."""
    if config.batch_size:
        return config.batch_size, "configured", None
    if not config.auto_optimize:
        return DEFAULT_BATCH_SIZE, "default", None
    data = sample()
    if not data.total_rows:
        return DEFAULT_BATCH_SIZE, "default (no rows to sample)", None
    target = config.memory_limit_mb * FILL if config.memory_limit_mb else None
    rec = sizing.recommend_for_sample(data, processor, target, config.max_concurrent_batches)
    return rec.recommended_batch_size, "auto: " + "; ".join(rec.reasons), rec


def _fast_rows(rec: sizing.BatchRecommendation, batch_size: int) -> int:
    """Growth stops at about ``sizing.MAX_CHUNK_MB`` of rows per chunk (or the first size, when larger): bigger
    chunks measured no faster, so trying them only costs (a doubled 230 MB chunk of 200 columns ran 30% slower)."""
    if rec.bytes_per_row <= 0:
        return sizing.MAX_BATCH_SIZE
    return max(batch_size, int(sizing.MAX_CHUNK_MB * 2**20 / rec.bytes_per_row))


def _split(task: workers.ChunkTask, rows: int) -> list[workers.ChunkTask]:
    """``task`` cut into pieces of at most ``rows`` rows (same index and attempt)."""
    return [
        workers.ChunkTask(task.index, task.file_index, s, min(task.stop, s + rows), task.attempt)
        for s in range(task.start, task.stop, max(1, rows))
    ]


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``(start, stop)`` ranges with touching ones joined."""
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def plan_chunks(
    files: list[sources.SourceFile], batch_size: int, done: Iterable[tuple[int, int, int]]
) -> list[workers.ChunkTask]:
    """Chunks covering every unfinished row range, in source order; finished ranges are skipped."""
    finished: dict[int, list[tuple[int, int]]] = {}
    for file_index, s, e in done:
        finished.setdefault(file_index, []).append((s, e))
    tasks: list[workers.ChunkTask] = []
    for fi, f in enumerate(files):
        pos = 0
        for s, e in sorted(finished.get(fi, [])) + [(f.rows, f.rows)]:
            while pos < s:
                stop = min(s, pos + batch_size)
                tasks.append(workers.ChunkTask(len(tasks), fi, pos, stop))
                pos = stop
            pos = max(pos, e)
    return tasks


def wanted_columns(processor: Any, hook: str, schema: Any) -> list[str] | None:
    """The source columns a processor's optional ``hook(schema)`` asks for (``stats_columns`` for the
    statistics pass, ``fit_columns`` for the fit sample), or None for all of them.

    Reading fewer columns is only an optimisation: results are the same, so anything unexpected (no hook,
    None, a name not in the schema, an empty list) reads every column and lets the processor report it.
    """
    fn = getattr(processor, hook, None)
    if not callable(fn) or not len(schema):
        return None
    columns = fn(schema)
    if not columns:
        return None
    columns = list(dict.fromkeys(str(c) for c in columns))
    names = schema.names
    if len(set(names)) != len(names) or not set(columns) <= set(names):
        return None
    return columns


@dataclass
class _RunQueue:
    """The run loop's state: chunks waiting, in flight (with their start time), and waiting to be retried."""

    pending: deque[workers.ChunkTask]
    job: workers.JobState
    pool: Any
    inflight: dict[Future[Any], tuple[workers.ChunkTask, float]] = field(default_factory=dict)
    retries: list[tuple[float, int, workers.ChunkTask]] = field(default_factory=list)
    #: every worker process the pool has had (pid -> Process), kept because a broken pool's own thread may
    #: reap a dead worker and forget it before its exit code is read
    procs: dict[int, Any] = field(default_factory=dict)

    def seen_workers(self) -> dict[int, Any]:
        self.procs.update(getattr(self.pool, "_processes", None) or {})
        return self.procs

    def restart(self, concurrency: int) -> list[tuple[workers.ChunkTask, float]]:
        """Kill the pool's workers and start a new pool; return the chunks that were in flight."""
        lost = list(self.inflight.values())
        self.inflight.clear()
        self.procs = {}
        workers.kill_pool(self.pool)
        self.pool = workers.new_pool(concurrency, self.job)
        return lost


class JobRunner:
    """Runs one job to completion or to a checkpointed failure."""

    def __init__(
        self,
        source: Any,
        processor: BaseProcessor,
        config: BatchConfig,
        out: Location,
        *,
        callbacks: list[Callable[[ProgressEvent], Any]],
        text_options: TextOptions,
        cancel_event: threading.Event,
        job_id: str,
        columns: list[str] | None = None,
        recovery: RecoveryConfig | None = None,
        epoch: int | None = None,
        fence: Fence | None = None,
        records: FailureRecords | None = None,
        task_info: Mapping[str, Any] | None = None,
        success_marker: bool | Callable[[Any], bool] = True,
        phase: tuple[str, int, int] | None = None,
        event_job_id: str | None = None,
    ) -> None:
        self.source = Location.of(source)
        #: a statistics pass runs as a nested runner counting phase 1 of its job's progress, under the job's id
        self.phase, self.event_job_id = phase, event_job_id
        self.success_marker = success_marker
        self.columns = columns
        self.processor = processor
        self.recovery = recovery or RecoveryConfig()
        self.config = self.recovery.merge_into(config)
        if not self.config.preserve_order and sizing.profile_of(processor).requires_order:
            log.info("job %s: the processor's profile requires order: preserve_order=True", job_id)
            self.config = self.config.with_overrides({"preserve_order": True})
        self.out = out
        self.callbacks = callbacks
        self.text_options = text_options
        self.cancel_event = cancel_event
        self.job_id = job_id
        self.concurrency = self.config.concurrency
        self.started = time.monotonic()
        self.processed = 0
        self.epoch, self.fence = epoch, fence
        self.records = records
        self.task_info = dict(task_info or {})
        self.row_cap: int | None = None  # batch-size cap after a memory failure
        self.adapter: BatchSizeAdapter | None = None  # online batch sizing (auto_optimize, chunk-invariant)
        self.recommendation: sizing.BatchRecommendation | None = None
        self.skipped_rows = 0
        self.watchdog_kills: set[int] = set()
        self.fail_fast = FailFast(0)
        self.fatal: BaseException | None = None  # the error that stops the run loop
        self._fatal_signature: str | None = None
        self._store: CheckpointStore | None = None  # the open generation (set by run())
        self.files: list[sources.SourceFile] = []
        self.batch_size = self.rows_total = 0
        self.scrubber = Scrubber.for_job(processor=processor, paths=(self.source, out))  # no row values
        self.ledger = FailureLedger(
            job_id=job_id, output_uri=out.uri, scrubber=self.scrubber, records=records, task_info=task_info
        )

    @property
    def store(self) -> CheckpointStore:
        """The generation this run writes (opened by :meth:`run`)."""
        if self._store is None:
            raise RuntimeError(f"job {self.job_id}: no generation is open yet")
        return self._store

    @store.setter
    def store(self, value: CheckpointStore) -> None:
        self._store = value

    # -- set-up --------------------------------------------------------------------------------
    def open_generation(self, fingerprint: str) -> tuple[Decision, CheckpointStore]:
        """Take the job folder (fencing epoch) and decide: resume the previous generation or start a new one."""
        if self.fence is None:
            self.fence = Fence.acquire(self.out, self.epoch)
        decision = decide_generation(self.out, fingerprint, resume=self.recovery.enable_checkpointing)
        return decision, CheckpointStore(
            self.out, decision.generation, fingerprint, self.job_id, fence=self.fence
        )

    def prepare(self) -> tuple[Decision, CheckpointStore, list[sources.SourceFile], Any]:
        paths = sources.list_source_files(self.source)
        stats = sources.stat_files(self.source.fs, paths)
        decision, store = self.open_generation(fingerprint_of(stats, self.processor, self.text_options))
        if decision.resume and decision.previous:
            store.load(decision.previous)
            files, schema = store.load_plan()
        else:
            files, schema = sources.build_plan(self.source.fs, stats, self.text_options)
            store.save_plan(files, schema)
            store.write("running")
        return decision, store, files, schema

    def fit(self, store: CheckpointStore, files: list[sources.SourceFile], schema: Any) -> None:
        """Learn global state before the main pass: a full statistics pass and/or a deterministic sample.

        The statistics pass is itself a checkpointed job (in ``{generation}/fit``), so it resumes too.
        What was learned is saved as JSON and restored on resume instead of being learned again.
        """
        size = int(getattr(self.processor, "fit_sample_size", 0) or 0)
        stats_pass = bool(getattr(self.processor, "stats_pass", False))
        if not size and not stats_pass:
            return
        saved = store.gen.child("fit_state.json").read_json()
        if saved is not None:
            self.processor.set_state(saved)
            if stats_pass:
                self._enter_processing()
            return
        if stats_pass:
            log.info("job %s: statistics pass over the whole source before processing", self.job_id)
            nested = JobRunner(
                self.source,
                StatsPass(self.processor),
                self.config,
                store.gen.child("fit"),
                callbacks=self.callbacks,
                text_options=self.text_options,
                cancel_event=self.cancel_event,
                job_id=f"{self.job_id}/fit",
                columns=wanted_columns(self.processor, "stats_columns", schema),
                recovery=self.recovery,
                fence=self.fence,
                records=self.records,
                task_info=self.task_info,
                phase=("statistics", 1, 2),
                event_job_id=self.event_job_id or self.job_id,
            )
            self.processor.fit_stats(nested.run().report)
            self._enter_processing()
        if size:
            from airflow_batch_provider.engine.sampling import deterministic_sample

            columns = wanted_columns(self.processor, "fit_columns", schema)
            sample = deterministic_sample(
                self.source.fs,
                files,
                schema,
                self.text_options,
                size,
                columns=columns,
                max_bad_rows=self.skip_allowance(files),
            )
            self.processor.fit(sample)
        store.gen.child("fit_state.json").write_json(to_jsonable(self.processor.get_state()))

    def _enter_processing(self) -> None:
        """The statistics pass is over: the job's progress moves to its processing phase (2/2)."""
        tracker = getattr(self, "tracker", None)  # none when a shard plan runs the statistics pass
        if tracker is not None and tracker.phase[0] != "processing":
            tracker.enter_phase("processing", 2)
            tracker.emit("phase_started", "statistics pass done; processing the source")

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> JobResult:
        # side files of chunk states on object storage go through the job folder's own filesystem (and a local
        # cache of this machine, dropped when the job ends): registered before any chunk worker forks
        side_files.register(self.out)
        try:
            return self._run()
        finally:
            side_files.release(self.out)

    def _run(self) -> JobResult:
        decision, store, files, schema = self.prepare()
        self.scrubber = Scrubber.for_job(
            schema=schema,
            processor=self.processor,
            paths=(self.source, self.out, *(f.path for f in files)),
            options=self.text_options,
        )
        self.ledger.scrubber = self.scrubber
        batch_size, why = self.choose_batch_size(files, schema)
        cap = store.counters.get("batch_size_cap")
        if cap and cap < batch_size:  # an earlier try split chunks after a memory failure
            batch_size, why = int(cap), f"capped at {cap} after a memory failure in an earlier try"
            self.row_cap = int(cap)
        self._start_adapter(batch_size)
        done = [(r["f"], r["s"], r["e"]) for r in store.records.values()]
        if done and log.isEnabledFor(logging.DEBUG):
            self._log_resume_ranges(files, done)
        tasks = self.plan_tasks(files, batch_size, done)
        readable = [i for i, f in enumerate(files) if f.size]
        if not tasks and not done and len(schema) and readable and not any(f.rows for f in files):
            # columns but no rows (a header-only CSV, a zero-row Parquet file): one empty chunk, so the
            # processor sees the columns and its report keeps them
            tasks = [workers.ChunkTask(0, readable[0], 0, 0)]
        self.fail_fast = FailFast(len(tasks), succeeded=bool(done))
        rows_total = sum(f.rows for f in files)
        phase, sub_phase = self.phase, self.phase is not None
        if phase is None:  # the job's own tracker: two phases when a statistics pass runs first
            stats_pass = bool(getattr(self.processor, "stats_pass", False))
            fitted = stats_pass and store.gen.child("fit_state.json").exists()
            phase = (
                ("processing", 1, 1)
                if not stats_pass
                else ("processing", 2, 2)
                if fitted
                else ("statistics", 1, 2)
            )
        self.tracker = ProgressTracker(
            self.event_job_id or self.job_id,
            rows_total,
            len(tasks) + len(done),
            interval=self.config.progress_interval_seconds,
            callbacks=self.callbacks,
            enabled=self.config.enable_progress_tracking,
            phase=phase,
            sub_phase=sub_phase,
        )
        self.tracker.resume(store.rows_done, len(done))
        log.info(
            "job %s -> %s | fingerprint %s | %s | %d file(s), %d rows, %d chunk(s) to run of %d "
            "(batch_size %d, %s; %d worker(s); epoch %d)",
            self.job_id,
            self.out.uri,
            store.fingerprint,
            decision.reason,
            len(files),
            rows_total,
            len(tasks),
            len(tasks) + len(done),
            batch_size,
            why,
            self.concurrency,
            self.fence.epoch if self.fence else 0,
        )
        self.tracker.emit("started", decision.reason)
        self.store, self.files, self.batch_size, self.rows_total = store, files, batch_size, rows_total
        self.skipped_rows = sum(r["e"] - r["s"] for r in store.records.values() if r.get("skipped"))
        self.tracker.rows_skipped = self.skipped_rows
        store.counters.setdefault("runs", 0)
        store.counters["runs"] += 1
        store.counters.update(
            batch_size=batch_size, rows_total=rows_total, chunks_total=len(tasks) + len(done)
        )
        try:
            self.validate_schema(schema)
            self.fit(store, files, schema)
            job = workers.JobState(
                self.job_id,
                self.processor,
                self.source.fs,
                files,
                schema,
                self.text_options,
                store.gen,
                self.out.uri,
                self.columns,
                fence=self.fence,
                max_bad_rows=self.skip_allowance(files),
            )
            self.run_tasks(deque(tasks), job)
        except BaseException as err:
            self._stop_failed(err)
            raise
        return self.finalize(decision, len(done))

    def skip_allowance(self, files: list[sources.SourceFile]) -> int:
        """The rows corrupt data may make the job skip: ``max_skipped_fraction`` of the source's rows."""
        return int(self.recovery.max_skipped_fraction * sum(f.rows for f in files))

    def validate_schema(self, schema: Any) -> None:
        """The processor's pre-flight checks (``validate(schema)``): once per job, after the plan, before any
        chunk (statistics pass included). A ``BatchInputError`` fails the job without retry."""
        if getattr(self.processor, "input_format", "pandas") == "polars":
            frames.check_polars_types(schema)
        check = getattr(self.processor, "validate", None)
        if callable(check):
            check(schema)

    def choose_batch_size(self, files: list[sources.SourceFile], schema: Any) -> tuple[int, str]:
        """The first batch size and why; with auto-tuning also the concurrency (when not configured)."""

        def sample() -> sizing.DataSample:
            return sizing.sample_files(
                self.source.fs,
                files,
                schema,
                self.text_options,
                columns=self.columns,
                max_bad_rows=self.skip_allowance(files),
            )

        size, why, self.recommendation = choose_batch_size(self.config, self.processor, sample)
        if self.recommendation is not None and self.config.max_concurrent_batches is None:
            self.concurrency = self.recommendation.recommended_concurrency
        return size, why

    def _start_adapter(self, batch_size: int) -> None:
        """Online adaptation, for auto-tuned jobs whose processor declares itself chunk-invariant."""
        rec = self.recommendation
        if rec is None or not getattr(self.processor, "chunk_invariant", False):
            return
        self.adapter = BatchSizeAdapter(
            batch_size,
            target_mb=self.config.memory_limit_mb or rec.target_memory_usage_mb / FILL,
            concurrency=self.concurrency,
            max_size=min(
                self.row_cap or sizing.MAX_BATCH_SIZE, sizing.MAX_BATCH_SIZE, _fast_rows(rec, batch_size)
            ),
            extra_rows=rec.row_group_rows,
        )

    def _stop_failed(self, err: BaseException) -> None:
        """Checkpoint (unless a newer attempt owns the folder), record the failure, tell the callbacks."""
        self.scrubber.exception(err)
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, StaleAttemptError):
            try:
                self._checkpoint("failed", error=message[:2000])
                if not self.recovery.preserve_partial_results and not self.is_statistics_pass:
                    self.store.gen.remove(recursive=True)
            except StaleAttemptError:
                log.warning("job %s: a newer attempt owns %s; not checkpointing", self.job_id, self.out.uri)
        self.ledger.job_failed(err, self.recovery.classify(err))
        self.tracker.emit("failed", message[:500], error_type=type(err).__name__)

    @property
    def is_statistics_pass(self) -> bool:
        """Whether this runner is a job's statistics pass (its processor is the :class:`StatsPass` wrapper)."""
        return isinstance(self.processor, StatsPass)

    def plan_tasks(
        self, files: list[sources.SourceFile], batch_size: int, done: list[tuple[int, int, int]]
    ) -> list[workers.ChunkTask]:
        """The chunks this run executes (a shard narrows them to its own row ranges)."""
        return plan_chunks(files, batch_size, done)

    def run_tasks(self, pending: deque[workers.ChunkTask], job: workers.JobState) -> None:
        self.fatal = None
        if not workers.fork_available():
            workers.set_inline_job(job)
            for task in pending:
                self._check_stop()
                self._record(workers.run_chunk(task))
            return
        q = _RunQueue(pending, job, workers.new_pool(self.concurrency, job))
        watchdog = self._start_watchdog(q)
        try:
            while (q.pending or q.inflight or q.retries) and not (self.fatal and not q.inflight):
                self._check_stop()
                self._submit(q)
                if not q.inflight:
                    now = time.monotonic()
                    time.sleep(min(0.2, max(0.0, q.retries[0][0] - now)) if q.retries else 0.01)
                    continue
                done, _ = wait(q.inflight, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut in q.inflight:  # else already handled with a broken pool
                        self._collect(fut, *q.inflight.pop(fut), q)
                self._check_batch_timeouts(q)
            if self.fatal is not None:
                raise self.fatal
        except BaseException:
            workers.kill_pool(q.pool)
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            job.crumbs.close()
        q.pool.shutdown(wait=True)

    def _submit(self, q: _RunQueue) -> None:
        now = time.monotonic()
        # while it is open whether the processor fails deterministically, new chunks go before retries
        while q.retries and q.retries[0][0] <= now and not (self.fail_fast.probing and q.pending):
            q.pending.appendleft(heapq.heappop(q.retries)[2])
        while q.pending and len(q.inflight) < self.concurrency and self.fatal is None:
            task = q.pending.popleft()
            if self.adapter is not None and task.attempt == 1:
                before = len(q.pending)
                task = self._cut(task, q.pending)
                self.tracker.chunks_total += len(q.pending) - before  # chunks added (cut) or removed (joined)
            if self.row_cap and task.rows > self.row_cap:  # smaller batches after a memory failure
                q.pending.extendleft(reversed(_split(task, self.row_cap)))
                continue
            try:
                fut = q.pool.submit(workers.run_chunk, task)
            except BrokenProcessPool:  # a worker died since the last wait()
                q.pending.appendleft(task)
                if q.inflight:  # wait() reports its chunk and _workers_died replaces the pool
                    return
                q.restart(self.concurrency)  # it died idle: nothing to blame, start a new pool
                continue
            q.inflight[fut] = (task, time.monotonic())
            q.seen_workers()  # the executor starts workers on submit
        self.tracker.chunks_running = len(q.inflight)

    def _cut(self, task: workers.ChunkTask, pending: deque[workers.ChunkTask]) -> workers.ChunkTask:
        """``task`` resized to the adapter's size (grown: at most an equal share of the rows left per worker):
        joined with the next pending ranges of the same file, or cut with the rest put back first. Ranges, not
        chunk numbers, are what is recorded, so this is safe."""
        assert self.adapter is not None
        size = min(self.adapter.size, self.row_cap or self.adapter.size)
        if size > self.adapter.initial:  # grown: not past an equal share of the rows left, so no idle tail
            rest = task.rows + sum(t.rows for t in pending)
            size = min(size, max(self.adapter.initial, -(-rest // self.concurrency)), self._planned_cap())
        while task.rows < size and pending:
            nxt = pending[0]
            if nxt.file_index != task.file_index or nxt.start != task.stop or nxt.attempt != 1:
                break
            pending.popleft()
            task = workers.ChunkTask(task.index, task.file_index, task.start, nxt.stop)
        if task.rows > size:
            pending.appendleft(workers.ChunkTask(task.index, task.file_index, task.start + size, task.stop))
            task = workers.ChunkTask(task.index, task.file_index, task.start, task.start + size)
        return task

    def _planned_cap(self) -> int:
        """The largest grown size that keeps the plan's ``CHUNKS_PER_WORKER x workers`` chunks when the source has
        the rows for them (``docs/tuning.md``), never below the starting size; else no cap."""
        assert self.adapter is not None
        total, least = int(getattr(self, "rows_total", 0) or 0), sizing.CHUNKS_PER_WORKER * self.concurrency
        if total < least * sizing.MIN_BATCH_SIZE:
            return sizing.MAX_BATCH_SIZE
        return max(self.adapter.initial, -(-total // least))

    def _start_watchdog(self, q: _RunQueue) -> workers.MemoryWatchdog | None:
        limit = self.config.memory_limit_mb
        if not (limit and self.recovery.memory_watchdog):
            return None
        return workers.MemoryWatchdog(lambda: q.pool, limit * 2**20 // self.concurrency, self.watchdog_kills)

    def _collect(self, fut: Future[Any], task: workers.ChunkTask, started: float, q: _RunQueue) -> None:
        try:
            self._record(fut.result())
            self.fail_fast.success()
        except BrokenProcessPool:
            self._workers_died(task, started, q)
        except Exception as err:
            self._handle_failure(task, err, q, started)

    def _workers_died(self, task: workers.ChunkTask, started: float, q: _RunQueue) -> None:
        """A worker died: the chunk it was running (from its breadcrumb) failed; the others run again."""
        exits = workers.exit_codes(q.seen_workers())
        crumbs = q.job.crumbs.read()
        lost = [(task, started)] + q.restart(self.concurrency)
        culprits: dict[tuple[int, int, int], tuple[int | None, int | None]] = {}
        for pid, code in exits.items():
            if code not in (None, 0, -signal.SIGTERM) and pid in crumbs:
                culprits[crumbs[pid]] = (pid, code)
        q.job.crumbs.clear()
        for t, t_started in lost:
            hit = culprits.get((t.file_index, t.start, t.stop))
            if hit is None and culprits:
                q.pending.appendleft(t)  # an innocent bystander: run it again, no attempt counted
                continue
            dead_pid, code = hit or (None, None)
            killed = code == -signal.SIGKILL
            how = (
                "killed by the memory watchdog"
                if dead_pid in self.watchdog_kills
                else ("killed (SIGKILL: out of memory?)" if killed else f"exit code {code}")
            )
            kind = "memory" if killed else "system"
            err = WorkerDiedError(f"chunk worker {dead_pid or '?'} died ({how})", failure_class=kind)
            self._handle_failure(t, err, q, t_started)

    def _handle_failure(
        self, task: workers.ChunkTask, err: BaseException, q: _RunQueue, started: float
    ) -> None:
        kind = self.recovery.classify(err)
        self.scrubber.exception(err)  # row values out of every message, log line and record below
        strategy = self.recovery.strategy(kind)
        lost = time.monotonic() - started
        if isinstance(err, BatchInputError) and not isinstance(err, DataCorruptionError):
            strategy = Strategy.FAIL  # a bad parameter or source: the same for every chunk, fail as it is
        reason = self.fail_fast.verdict(task.key, err, kind)
        if reason is not None:
            self._fail_deterministic(task, err, kind, lost, reason)
        elif strategy is Strategy.SPLIT and task.rows > 1:
            half = max(1, task.rows // 2)
            self.row_cap = min(self.row_cap or half, half)
            self.store.counters["batch_size_cap"] = self.row_cap
            self._note_failure(task, err, kind, f"split; batch size capped at {self.row_cap}", lost, "split")
            q.pending.extendleft(reversed(_split(task, half)))
        elif strategy is Strategy.QUARANTINE and isinstance(err, CorruptRowsError):
            self._quarantine_rows(task, err, kind, lost, q)
        elif strategy is Strategy.QUARANTINE:
            self._quarantine(task, err, kind, lost)
        elif strategy in (Strategy.RETRY, Strategy.RETRY_JITTER, Strategy.SPLIT):
            self._retry_or_fail(task, err, q, kind=kind, lost=lost, jitter=strategy is Strategy.RETRY_JITTER)
        else:
            self._fail(task, err, kind, strategy.value, lost)

    def _fail(
        self, task: workers.ChunkTask, err: BaseException, kind: FailureClass, strategy: str, lost: float
    ) -> None:
        self._note_failure(task, err, kind, strategy, lost, strategy, fatal=True)
        if self.fatal is not None:
            return
        if isinstance(err, BatchInputError):
            self.fatal = err
            return
        failed = ChunkFailedError(
            f"{task.label(self.files)} failed {task.attempt} time(s) ({kind.value} failure); last error "
            f"{type(err).__name__}: {err}. Finished chunks are checkpointed; a retry resumes from there",
            chunk=task.label(self.files),
            attempts=task.attempt,
            failure_class=kind.value,
        )
        failed.__cause__ = err
        self.fatal = failed

    def _fail_deterministic(
        self, task: workers.ChunkTask, err: BaseException, kind: FailureClass, lost: float, reason: str
    ) -> None:
        """Stop after this attempt: a bug in the processor fails every chunk and every retry the same way. The
        failures of this signature noted so far become one record."""
        signature = error_signature(err)
        if self.fatal is not None and self._fatal_signature == signature:
            return  # another chunk in flight hit the same bug: already counted
        self.ledger.forget_signature(signature)
        self._note_failure(task, err, kind, f"fail fast: {reason}", lost, "fail_fast", fatal=True)
        if self.fatal is not None:
            return
        label = processor_label(self.processor)
        fatal = DeterministicProcessorError(
            f"processor {label} failed on {task.label(self.files)} (attempt {task.attempt}) with "
            f"{type(err).__name__}: {err}. Not retried, in the task or by Airflow: {reason}. Fix the processor; "
            "finished chunks are checkpointed and the next run resumes from there",
            chunk=task.label(self.files),
            processor=label,
            error_type=type(err).__name__,
        )
        fatal.__cause__ = err
        self.fatal, self._fatal_signature = fatal, signature

    def _retry_or_fail(
        self,
        task: workers.ChunkTask,
        err: BaseException,
        q: _RunQueue,
        *,
        kind: FailureClass,
        lost: float,
        jitter: bool = False,
    ) -> None:
        if task.attempt > self.config.retry_attempts:
            self._fail(task, err, kind, "fail", lost)
            return
        delay = self.recovery.delay(task.attempt, self.config.retry_delay_seconds, jitter=jitter)
        strategy = "retry_jitter" if jitter else "retry"
        self._note_failure(task, err, kind, f"{strategy} in {delay:.1f}s", lost + delay, strategy)
        self.tracker.emit(
            "retry",
            f"{task.label(self.files)} attempt {task.attempt} failed ({kind.value}): "
            f"{type(err).__name__}: {str(err)[:200]}; retrying in {delay:.1f}s",
        )
        nxt = workers.ChunkTask(task.index, task.file_index, task.start, task.stop, task.attempt + 1)
        heapq.heappush(q.retries, (time.monotonic() + delay, task.index, nxt))

    def _quarantine(
        self, task: workers.ChunkTask, err: BaseException, kind: FailureClass, lost: float
    ) -> None:
        """Skip a chunk that cannot be decoded: list its source rows with the reason; fail past the limit."""
        allowed = self.recovery.max_skipped_fraction * self.rows_total
        if self.skipped_rows + task.rows > allowed:
            self._note_failure(
                task, err, kind, "quarantine refused: over max_skipped_fraction", lost, "fail", fatal=True
            )
            if self.fatal is None:
                share = (self.skipped_rows + task.rows) / max(1, self.rows_total)
                fatal = DataCorruptionError(
                    f"{task.label(self.files)} cannot be decoded ({type(err).__name__}: {err}). Skipping it would "
                    f"skip {self.skipped_rows + task.rows:,} rows ({share:.4%} of the source), more than "
                    f"max_skipped_fraction={self.recovery.max_skipped_fraction:g}. Fix or remove the file, or "
                    "allow skipping with recovery={'max_skipped_fraction': ...}; finished chunks are checkpointed"
                )
                fatal.__cause__ = err
                self.fatal = fatal
            return
        f = self.files[task.file_index]
        self._note_failure(task, err, kind, "quarantine", lost, "quarantine", recovered=True)
        self._skip(task, kind, f"{type(err).__name__}: {err}", sources.byte_range(f, task.start, task.stop))

    def _skip(self, task: workers.ChunkTask, kind: FailureClass, error: str, byte_range: Any) -> None:
        """List rows ``[task.start, task.stop)`` in ``skipped/`` with the reason and record them as done."""
        f = self.files[task.file_index]
        entry = {
            "file": f.path,
            "file_index": task.file_index,
            "start_row": task.start,
            "stop_row": task.stop,
            "rows": task.rows,
            "byte_range": byte_range,
            "reason": kind.value,
            "error": self.scrubber.record(error),
        }
        name = part_name(task.file_index, task.start).replace(".parquet", ".json")
        self.store.gen.child("skipped", name).write_json(entry)
        self.skipped_rows += task.rows
        self.tracker.rows_skipped = self.skipped_rows  # events report it: skip-rate alerts, metrics
        log.warning("%s skipped (%s): listed in %s", task.label(self.files), kind.value, f"skipped/{name}")
        self._record(workers.chunk_record(task, skipped=name))

    def _quarantine_rows(
        self, task: workers.ChunkTask, err: CorruptRowsError, kind: FailureClass, lost: float, q: _RunQueue
    ) -> None:
        """Quarantine exactly the rows of a chunk that cannot be read (each listed with its byte range and
        reason, so the listing is the same for any batch size) and run the rest of the chunk as new chunks;
        fail, naming the rows and the fix, when the job may not skip that many."""
        allowed = self.skip_allowance(self.files)
        f = self.files[task.file_index]
        if not err.complete or self.skipped_rows + len(err.rows) > allowed:
            self._note_failure(
                task, err, kind, "quarantine refused: over max_skipped_fraction", lost, "fail", fatal=True
            )
            if self.fatal is None:
                where = f"rows {task.start}-{task.stop}"
                before = f"; {self.skipped_rows:,} row(s) already skipped" if self.skipped_rows else ""
                fraction = self.recovery.max_skipped_fraction
                message = sources.too_many_bad_rows(f.path, err.rows, allowed, where, fraction)
                fatal = DataCorruptionError(f"{message}{before}; finished chunks are checkpointed")
                fatal.__cause__ = err
                self.fatal = fatal
            return
        self._note_failure(task, err, kind, "quarantine", lost, "quarantine", recovered=True)
        pos, rest = task.start, []
        for bad in err.rows:
            row = int(bad["row"])
            if pos < row:
                rest.append(workers.ChunkTask(task.index, task.file_index, pos, row, task.attempt))
            one = workers.ChunkTask(task.index, task.file_index, row, row + 1, task.attempt)
            self._skip(one, kind, f"{CorruptRowsError.__name__}: {bad['reason']}", bad["byte_range"])
            pos = row + 1
        if pos < task.stop:
            rest.append(workers.ChunkTask(task.index, task.file_index, pos, task.stop, task.attempt))
        self.tracker.chunks_total += len(err.rows) + len(rest) - 1  # the rows listed and the ranges left
        q.pending.extendleft(reversed(rest))

    def _note_failure(
        self,
        task: workers.ChunkTask,
        err: BaseException,
        kind: FailureClass | str,
        strategy: str,
        lost: float,
        record_strategy: str,
        *,
        fatal: bool = False,
        recovered: bool | None = None,
    ) -> None:
        self.ledger.note(
            chunk=(task.file_index, task.start, task.stop),
            label=task.label(self.files),
            attempt=task.attempt,
            err=err,
            kind=kind,
            strategy=strategy,
            record_strategy=record_strategy,
            lost=lost,
            fatal=fatal,
            recovered=recovered,
        )

    def _check_batch_timeouts(self, q: _RunQueue) -> None:
        limit = self.config.batch_timeout_seconds
        if not limit or not q.inflight:
            return
        now = time.monotonic()
        late = {t for t, started in q.inflight.values() if now - started > limit}
        if not late:
            return
        for t, started in q.restart(self.concurrency):
            if t in late:
                error = ChunkTimeoutError(f"chunk ran longer than batch_timeout_seconds={limit:g}")
                self._handle_failure(t, error, q, started)
            else:
                q.pending.appendleft(t)
        q.job.crumbs.clear()

    def _check_stop(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelledError(f"job {self.job_id} was asked to stop; finished chunks are checkpointed")
        limit = self.config.timeout_seconds
        if limit and time.monotonic() - self.started > limit:
            raise JobTimeoutError(
                f"job {self.job_id} ran past timeout_seconds={limit:g}; finished chunks are "
                "checkpointed and a retry resumes from there"
            )

    def _record(self, record: dict[str, Any]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            self._log_chunk(record)
        record["seq"] = self.processed
        # the attempt that ran it: the dashboard's chunk map shows chunks of an earlier attempt as resumed
        record["epoch"] = self.fence.epoch if self.fence else None
        self.store.add(record)
        self.tracker.batch_size = record["e"] - record["s"]
        self.processed += 1
        self.tracker.advance(record["e"] - record["s"])
        self.ledger.resolve(record)
        if self.adapter is not None:
            self.adapter.observe(
                record["e"] - record["s"], record.get("seconds") or 0.0, record.get("mem_peak")
            )
            self.adapter.poll_control(self.out)
        if self.recovery.enable_checkpointing and self.store.pending >= self.config.checkpoint_interval:
            self._checkpoint("running")

    def _log_chunk(self, record: dict[str, Any]) -> None:
        """One DEBUG line per finished chunk: range, worker, rows in/out, seconds, memory."""
        path = self.files[record["f"]].path if record["f"] < len(self.files) else f"file {record['f']}"
        if record.get("skipped"):
            log.debug(
                "job %s: %s rows %d-%d skipped (quarantined)", self.job_id, path, record["s"], record["e"]
            )
            return
        mb = {k: f"{float(record[k]) / 2**20:.1f}" for k in ("mem_start", "mem_peak") if k in record}
        log.debug(
            "job %s: chunk %s rows %d-%d done by worker pid %s: %d rows in, %d rows out%s, %.3fs, memory peak "
            "%s MB over the worker's baseline (%s MB retained before it)",
            self.job_id,
            path,
            record["s"],
            record["e"],
            record.get("pid", "?"),
            record.get("rows_in", record["e"] - record["s"]),
            record.get("rows_out", 0),
            f", {record['rows_quarantined']} quarantined" if record.get("rows_quarantined") else "",
            float(record.get("seconds") or 0.0),
            mb.get("mem_peak", "?"),
            mb.get("mem_start", "?"),
        )

    def _log_resume_ranges(self, files: list[sources.SourceFile], done: list[tuple[int, int, int]]) -> None:
        """DEBUG: per file, the row ranges finished by an earlier try (skipped) and those to run, contiguous
        chunks merged into one range each."""
        finished: dict[int, list[tuple[int, int]]] = {}
        for fi, s, e in done:
            finished.setdefault(fi, []).append((s, e))
        for fi, f in enumerate(files):
            pos = 0
            for s, e in _merged(sorted(finished.get(fi, []))):
                if pos < s:
                    log.debug("job %s: resume: %s rows %d-%d to run", self.job_id, f.path, pos, s)
                log.debug(
                    "job %s: resume: %s rows %d-%d finished in an earlier try: skipped",
                    self.job_id,
                    f.path,
                    s,
                    e,
                )
                pos = max(pos, e)
            if pos < f.rows:
                log.debug("job %s: resume: %s rows %d-%d to run", self.job_id, f.path, pos, f.rows)

    def _checkpoint(self, status: str, **extra: Any) -> None:
        store = self._store
        if store is None:
            return
        store.counters["rows_done"] = store.rows_done
        store.counters["chunks_done"] = len(store.records)
        store.counters["rows_skipped"] = self.skipped_rows
        failures = self.ledger.take()
        store.counters["failures"] = store.counters.get("failures", 0) + len(failures)
        store.write(status, failures=failures[-50:], **extra)
        if status == "running":
            self.tracker.emit(
                "checkpoint",
                f"checkpoint: {len(store.records):,} chunks committed",
                generation=store.generation,
                output_uri=self.out.uri,
            )

    # -- finalize ------------------------------------------------------------------------------
    def finalize(self, decision: Decision, resumed: int) -> JobResult:
        store = self.store
        self._checkpoint("finalizing")
        records = sorted(store.records.values(), key=lambda r: (r["f"], r["s"]))
        states = [self.load_state(r) for r in records if not r.get("skipped")]
        report = self.processor.finalize(self.processor.merge(states))
        report = to_jsonable(report) if report is not None else None
        ordered = records if self.config.preserve_order else sorted(records, key=lambda r: r.get("seq", 0))
        part_names = [r["part"] for r in ordered if r["part"]]
        try:
            compacted, compaction = self.compact(part_names)
        except BaseException as err:  # recorded like a chunk failure; the next run compacts from the parts
            self._stop_failed(err)
            raise
        if compacted is None:
            parts = [f"g{store.generation:04d}/parts/{name}" for name in part_names]
        else:
            parts = [f"g{store.generation:04d}/{COMPACTED}/{name}" for name in compacted]
        quarantine = [
            f"g{store.generation:04d}/quarantine/{r['quarantine']}" for r in ordered if r.get("quarantine")
        ]
        skipped = [f"g{store.generation:04d}/skipped/{r['skipped']}" for r in records if r.get("skipped")]
        rows_out = sum(r["rows_out"] for r in records)
        quarantined = sum(r.get("rows_quarantined", 0) for r in records)
        summary = {
            "rows_in": sum(f.rows for f in self.files),
            "rows_out": rows_out,
            "chunks": len(records),
            "rows_quarantined": quarantined,
            "rows_skipped": self.skipped_rows,
            "chunks_skipped": len(skipped),
        }
        success = self.success_marker(report) if callable(self.success_marker) else self.success_marker
        store.commit_output(
            parts,
            report,
            summary,
            quarantine,
            skipped,
            success=bool(success),
            compaction=compaction.to_dict(),
        )
        store.write("succeeded")
        store.remove_stale(
            set(part_names) if compacted is None else set(),
            {r["quarantine"] for r in records if r.get("quarantine")},
            set(compacted or ()),
        )
        duration = time.monotonic() - self.started
        result = JobResult(
            output_uri=self.out.uri,
            rows_in=summary["rows_in"],
            rows_out=rows_out,
            chunks_total=len(records),
            chunks_processed=self.processed,
            chunks_resumed=resumed,
            chunks_skipped=len(skipped),
            report=report,
            duration_s=round(duration, 3),
            job_id=self.job_id,
            generation=store.generation,
            fingerprint=store.fingerprint,
            batch_size=self.batch_size,
            resume_decision=decision.reason,
            extra={
                "workers": self.concurrency,
                "runs": store.counters.get("runs", 1),
                "rows_quarantined": quarantined,
                "rows_skipped": self.skipped_rows,
                "skipped": skipped[:100],
                "epoch": self.fence.epoch if self.fence else None,
                "batch_size_cap": self.row_cap,
                "batch_size_reasons": self.recommendation.reasons if self.recommendation else [],
                "memory_target_mb": self.adapter.target_mb if self.adapter else None,
                "estimated_memory_usage_mb": (
                    self.recommendation.estimated_memory_usage_mb if self.recommendation else None
                ),
                "compaction": compaction.to_dict(),
                "estimated_memory_components_mb": (
                    dict(self.recommendation.memory_components_mb) if self.recommendation else None
                ),
            },
            batch_size_trajectory=list(self.adapter.trajectory) if self.adapter else [],
        )
        self.tracker.emit(
            "completed", f"{rows_out:,} rows out, {result.duration_s:.1f}s; output {self.out.uri}"
        )
        return result

    def compact(self, part_names: list[str]) -> tuple[list[str] | None, Compaction]:
        """Merge the committed parts into files of about ``target_file_size_mb`` (``compact_output``; see
        :mod:`~airflow_batch_provider.engine.compaction`): the compacted files' names, or None when the parts
        stay as they are, and what was done. Runs before the commit, so a crash here leaves the previous
        output committed and the generation unfinished: the next run compacts again from the parts. Before
        each file: the fence, the cancel event and ``timeout_seconds``."""

        def check() -> None:
            self.store._check()
            self._check_stop()

        return compact_output(
            self.store.gen,
            part_names,
            self.config.compact_output,
            self.config.target_file_size_mb,
            job_id=self.job_id,
            check=check,
        )

    def load_state(self, record: dict[str, Any]) -> Any:
        if record.get("state_ref"):
            return self.store.gen.child("states", record["state_ref"]).read_json()
        return record.get("state")


def as_config(config: BatchConfig | Mapping[str, Any] | None) -> BatchConfig:
    """A :class:`BatchConfig` from a config, a mapping of its fields or None (the defaults)."""
    if config is None:
        return BatchConfig()
    return config if isinstance(config, BatchConfig) else BatchConfig.from_mapping(config)


def build_runner(
    cls: type[JobRunner],
    source: Any,
    processor: BaseProcessor,
    config: BatchConfig,
    out: Location,
    job_id: str,
    *,
    csv_options: Mapping[str, Any] | None = None,
    progress_callbacks: Iterable[Callable[[ProgressEvent], Any]] | None = None,
    cancel_event: threading.Event | None = None,
    recovery: RecoveryConfig | Mapping[str, Any] | None = None,
    records_path: Any = False,
    **extra: Any,
) -> JobRunner:
    """The one way a runner is made, for single jobs, shards and the shard planner."""
    return cls(
        source,
        processor,
        config,
        out,
        callbacks=list(progress_callbacks or ()),
        text_options=TextOptions.from_mapping(dict(csv_options or {})),
        cancel_event=cancel_event or threading.Event(),
        job_id=job_id,
        recovery=RecoveryConfig.from_value(recovery),
        records=FailureRecords(records_path) if records_path not in (None, False) else None,
        **extra,
    )


def processor_label(processor: Any) -> str:
    """The processor's name in messages: a callable's ``module.function``, a class's ``name``."""
    if isinstance(processor, StatsPass):
        return f"{processor_label(processor.processor)} (statistics pass)"
    name = getattr(processor, "label", None) or getattr(processor, "name", None)
    return str(name) if name and name != BaseProcessor.name else type(processor).__name__


def new_job_id() -> str:
    return f"job-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def read_output(output_uri: Any, columns: list[str] | None = None, *, quarantine: bool = False) -> Any:
    """The committed output (or, with ``quarantine=True``, the quarantined rows) of a job folder as one
    pandas DataFrame, or None when there are none. For small outputs and tests. Converted like a pandas
    processor's chunks (:func:`frames.arrow_to_pandas`): every value held (integers with nulls as ``Int64``,
    timestamps in their own unit, dates past 9999 and nested columns as ``pd.ArrowDtype``)."""
    import pyarrow.parquet as pq

    loc = Location.of(output_uri)
    if quarantine:
        manifest = loc.child(sources.OUTPUT_MANIFEST).read_json() or {}
        parts = sources.manifest_files(loc, manifest, "quarantine")
    else:
        parts = sources.list_source_files(loc)
    if not parts:
        return None
    tables = []
    for p in parts:
        with loc.fs.open(p, "rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    import pyarrow as pa

    return frames.arrow_to_pandas(pa.concat_tables(tables, promote_options="permissive"))
