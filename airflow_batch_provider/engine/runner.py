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

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import sources, workers
from airflow_batch_provider.engine.checkpoints import CheckpointStore, Decision, decide_generation
from airflow_batch_provider.engine.jsonsafe import to_jsonable
from airflow_batch_provider.engine.progress import ProgressEvent, ProgressTracker
from airflow_batch_provider.engine.storage import Location
from airflow_batch_provider.engine.textformats import TextOptions
from airflow_batch_provider.exceptions import (
    BatchInputError,
    ChunkFailedError,
    JobCancelledError,
    JobTimeoutError,
)
from airflow_batch_provider.processors.base import BaseProcessor, StatsPass
from airflow_batch_provider.processors.registry import resolve_processor

log = logging.getLogger("airflow_batch_provider.engine")

DEFAULT_BATCH_SIZE = 100_000
REPORT_INLINE_LIMIT = 16 * 1024
ENV_BASE_PATH = "AIRFLOW_BATCH_PROVIDER_BASE_PATH"


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
    return os.environ.get(ENV_BASE_PATH) or os.path.join(
        os.path.expanduser("~"), ".airflow_batch_provider", "jobs"
    )


@functools.cache
def _versions() -> dict[str, str]:
    out = {}
    for dist in ("pyarrow", "pandas", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def fingerprint_of(files: list[sources.SourceFile], processor: BaseProcessor, options: TextOptions) -> str:
    doc = {
        "files": [(f.path, f.size, f.version) for f in files],
        "processor": processor.identity(),
        "text_options": options.to_dict(),
        "versions": _versions(),
    }
    raw = json.dumps(doc, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def choose_batch_size(
    config: BatchConfig, files: list[sources.SourceFile], concurrency: int
) -> tuple[int, str]:
    """The configured size, or (``auto_optimize``) one sized from bytes per row and the memory budget."""
    if config.batch_size:
        return config.batch_size, "configured"
    rows = sum(f.rows for f in files)
    if not config.auto_optimize or not rows:
        return DEFAULT_BATCH_SIZE, "default"
    bytes_per_row = max(1.0, sum(f.size for f in files) / rows) * 4  # encoded -> in-memory pandas, roughly
    budget = (config.memory_limit_mb or 2048) * 2**20
    per_chunk = min(128 * 2**20, budget / (concurrency * 4))  # 4x: chunk, output, and processor copies
    size = int(max(1_000, min(1_000_000, per_chunk / bytes_per_row)))
    size = int(float(f"{size:.2g}"))  # two significant digits: readable in logs
    return size, f"auto: ~{bytes_per_row:.0f} B/row in memory, {per_chunk / 2**20:.0f} MB per chunk"


def plan_chunks(
    files: list[sources.SourceFile], batch_size: int, done: Iterable[tuple[int, int, int]]
) -> list[workers.ChunkTask]:
    """Chunks covering every unfinished row range, in source order; finished ranges are skipped."""
    finished: dict[int, list[tuple[int, int]]] = {}
    for f, s, e in done:
        finished.setdefault(f, []).append((s, e))
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

    def restart(self, concurrency: int) -> list[workers.ChunkTask]:
        """Kill the pool's workers and start a new pool; return the chunks that were in flight."""
        lost = [t for t, _ in self.inflight.values()]
        self.inflight.clear()
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
    ) -> None:
        self.source = Location.of(source)
        self.columns = columns
        self.processor = processor
        self.config = config
        self.out = out
        self.callbacks = callbacks
        self.text_options = text_options
        self.cancel_event = cancel_event
        self.job_id = job_id
        self.concurrency = config.concurrency
        self.started = time.monotonic()
        self.processed = 0
        self.failures: list[dict[str, Any]] = []

    # -- set-up --------------------------------------------------------------------------------
    def _prepare(self) -> tuple[Decision, CheckpointStore, list[sources.SourceFile], Any]:
        paths = sources.list_source_files(self.source)
        stats = sources.stat_files(self.source.fs, paths)
        fingerprint = fingerprint_of(stats, self.processor, self.text_options)
        decision = decide_generation(self.out, fingerprint)
        store = CheckpointStore(self.out, decision.generation, fingerprint, self.job_id)
        if decision.resume and decision.previous:
            store.load(decision.previous)
            files, schema = store.load_plan()
        else:
            files, schema = sources.build_plan(self.source.fs, stats, self.text_options)
            store.save_plan(files, schema)
            store.write("running")
        return decision, store, files, schema

    def _fit(self, store: CheckpointStore, files: list[sources.SourceFile], schema: Any) -> None:
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
            )
            self.processor.fit_stats(nested.run().report)
        if size:
            from airflow_batch_provider.engine.sampling import deterministic_sample

            columns = wanted_columns(self.processor, "fit_columns", schema)
            self.processor.fit(
                deterministic_sample(self.source.fs, files, schema, self.text_options, size, columns=columns)
            )
        store.gen.child("fit_state.json").write_json(to_jsonable(self.processor.get_state()))

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> JobResult:
        decision, store, files, schema = self._prepare()
        batch_size, why = choose_batch_size(self.config, files, self.concurrency)
        done = [(r["f"], r["s"], r["e"]) for r in store.records.values()]
        tasks = plan_chunks(files, batch_size, done)
        rows_total = sum(f.rows for f in files)
        self.tracker = ProgressTracker(
            self.job_id,
            rows_total,
            len(tasks) + len(done),
            interval=self.config.progress_interval_seconds,
            callbacks=self.callbacks,
            enabled=self.config.enable_progress_tracking,
        )
        self.tracker.resume(store.rows_done, len(done))
        log.info(
            "job %s -> %s | fingerprint %s | %s | %d file(s), %d rows, %d chunk(s) to run of %d "
            "(batch_size %d, %s; %d worker(s))",
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
        )
        self.tracker.emit("started", decision.reason)
        self.store, self.files, self.batch_size = store, files, batch_size
        store.counters.setdefault("runs", 0)
        store.counters["runs"] += 1
        store.counters["batch_size"] = batch_size
        try:
            self._fit(store, files, schema)
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
            )
            self._run_tasks(deque(tasks), job)
        except BaseException as err:
            self._checkpoint("failed", error=f"{type(err).__name__}: {err}"[:2000])
            self.tracker.emit("failed", f"{type(err).__name__}: {err}"[:500], error_type=type(err).__name__)
            raise
        return self._finalize(decision, len(done))

    def _run_tasks(self, pending: deque[workers.ChunkTask], job: workers.JobState) -> None:
        self.fatal: BaseException | None = None
        if not workers.fork_available():
            workers.set_inline_job(job)
            for task in pending:
                self._check_stop()
                self._record(workers.run_chunk(task))
            return
        q = _RunQueue(pending, job, workers.new_pool(self.concurrency, job))
        try:
            while (q.pending or q.inflight or q.retries) and not (self.fatal and not q.inflight):
                self._check_stop()
                now = time.monotonic()
                while q.retries and q.retries[0][0] <= now:
                    q.pending.appendleft(heapq.heappop(q.retries)[2])
                while q.pending and len(q.inflight) < self.concurrency and self.fatal is None:
                    task = q.pending.popleft()
                    q.inflight[q.pool.submit(workers.run_chunk, task)] = (task, time.monotonic())
                if not q.inflight:
                    time.sleep(min(0.2, max(0.0, q.retries[0][0] - now)) if q.retries else 0.01)
                    continue
                done, _ = wait(q.inflight, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut in q.inflight:  # else already handled with a broken pool
                        self._collect(fut, q.inflight.pop(fut)[0], q)
                self._check_batch_timeouts(q)
            if self.fatal is not None:
                raise self.fatal
        except BaseException:
            workers.kill_pool(q.pool)
            raise
        q.pool.shutdown(wait=True)

    def _collect(self, fut: Future[Any], task: workers.ChunkTask, q: _RunQueue) -> None:
        try:
            self._record(fut.result())
        except BrokenProcessPool as err:
            # a worker died (killed, out of memory): every chunk in flight is lost with it
            lost = [task] + q.restart(self.concurrency)
            for t in lost:
                self._retry_or_fail(t, RuntimeError(f"chunk worker died ({err})"), q, kind="system")
        except MemoryError as err:
            if task.rows > 1:
                half = task.start + task.rows // 2
                log.warning(
                    "%s: MemoryError; splitting it at row %d and continuing", task.label(self.files), half
                )
                self._note_failure(task, err, "memory", "split")
                q.pending.appendleft(
                    workers.ChunkTask(task.index, task.file_index, half, task.stop, task.attempt)
                )
                q.pending.appendleft(
                    workers.ChunkTask(task.index, task.file_index, task.start, half, task.attempt)
                )
            else:
                self._retry_or_fail(task, err, q, kind="memory")
        except BatchInputError as err:
            self._note_failure(task, err, "data_corruption", "fail")
            self.fatal = self.fatal or err
        except Exception as err:
            self._retry_or_fail(task, err, q, kind="processing")

    def _retry_or_fail(self, task: workers.ChunkTask, err: BaseException, q: _RunQueue, *, kind: str) -> None:
        if task.attempt > self.config.retry_attempts:
            self._note_failure(task, err, kind, "fail")
            if self.fatal is None:
                failed = ChunkFailedError(
                    f"{task.label(self.files)} failed {task.attempt} time(s); last error "
                    f"{type(err).__name__}: {err}. Finished chunks are checkpointed; a retry resumes from there",
                    chunk=task.label(self.files),
                    attempts=task.attempt,
                )
                failed.__cause__ = err
                self.fatal = failed
            return
        delay = self.config.retry_delay_seconds * 2 ** (task.attempt - 1)
        self._note_failure(task, err, kind, f"retry in {delay:.1f}s")
        self.tracker.emit(
            "retry",
            f"{task.label(self.files)} attempt {task.attempt} failed: "
            f"{type(err).__name__}: {str(err)[:200]}; retrying in {delay:.1f}s",
        )
        nxt = workers.ChunkTask(task.index, task.file_index, task.start, task.stop, task.attempt + 1)
        heapq.heappush(q.retries, (time.monotonic() + delay, task.index, nxt))

    def _note_failure(self, task: workers.ChunkTask, err: BaseException, kind: str, strategy: str) -> None:
        self.failures.append(
            {
                "time": time.time(),
                "chunk": [task.file_index, task.start, task.stop],
                "attempt": task.attempt,
                "class": kind,
                "error": f"{type(err).__name__}: {err}"[:500],
                "strategy": strategy,
            }
        )
        log.warning(
            "%s attempt %d failed (%s, %s): %s: %s",
            task.label(self.files),
            task.attempt,
            kind,
            strategy,
            type(err).__name__,
            str(err)[:500],
        )

    def _check_batch_timeouts(self, q: _RunQueue) -> None:
        limit = self.config.batch_timeout_seconds
        if not limit or not q.inflight:
            return
        now = time.monotonic()
        late = {t for t, started in q.inflight.values() if now - started > limit}
        if not late:
            return
        others = [t for t in q.restart(self.concurrency) if t not in late]
        for t in late:
            error = TimeoutError(f"chunk ran longer than batch_timeout_seconds={limit:g}")
            self._retry_or_fail(t, error, q, kind="timeout")
        q.pending.extendleft(reversed(others))

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
        record["seq"] = self.processed
        self.store.add(record)
        self.processed += 1
        self.tracker.advance(record["e"] - record["s"])
        if self.store.pending >= self.config.checkpoint_interval:
            self._checkpoint("running")

    def _checkpoint(self, status: str, **extra: Any) -> None:
        store = getattr(self, "store", None)
        if store is None:
            return
        store.counters["rows_done"] = store.rows_done
        store.counters["chunks_done"] = len(store.records)
        store.counters["failures"] = store.counters.get("failures", 0) + len(self.failures)
        store.write(status, failures=self.failures[-50:], **extra)
        self.failures = []
        if status == "running":
            self.tracker.emit(
                "checkpoint",
                f"checkpoint: {len(store.records):,} chunks committed",
                generation=store.generation,
                output_uri=self.out.uri,
            )

    # -- finalize ------------------------------------------------------------------------------
    def _finalize(self, decision: Decision, resumed: int) -> JobResult:
        store = self.store
        self._checkpoint("finalizing")
        records = sorted(store.records.values(), key=lambda r: (r["f"], r["s"]))
        states = [self._load_state(r) for r in records]
        report = self.processor.finalize(self.processor.merge(states))
        report = to_jsonable(report) if report is not None else None
        ordered = records if self.config.preserve_order else sorted(records, key=lambda r: r.get("seq", 0))
        gen_prefix = f"g{store.generation:04d}/parts/"
        parts = [gen_prefix + r["part"] for r in ordered if r["part"]]
        quarantine = [
            f"g{store.generation:04d}/quarantine/{r['quarantine']}" for r in ordered if r.get("quarantine")
        ]
        rows_out = sum(r["rows_out"] for r in records)
        quarantined = sum(r.get("rows_quarantined", 0) for r in records)
        summary = {
            "rows_in": sum(f.rows for f in self.files),
            "rows_out": rows_out,
            "chunks": len(records),
            "rows_quarantined": quarantined,
        }
        store.commit_output(parts, report, summary, quarantine)
        store.write("succeeded")
        store.remove_stale(
            {r["part"] for r in records if r["part"]},
            {r["quarantine"] for r in records if r.get("quarantine")},
        )
        duration = time.monotonic() - self.started
        result = JobResult(
            output_uri=self.out.uri,
            rows_in=summary["rows_in"],
            rows_out=rows_out,
            chunks_total=len(records),
            chunks_processed=self.processed,
            chunks_resumed=resumed,
            chunks_skipped=0,
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
            },
        )
        self.tracker.emit(
            "completed", f"{rows_out:,} rows out, {result.duration_s:.1f}s; output {self.out.uri}"
        )
        return result

    def _load_state(self, record: dict[str, Any]) -> Any:
        if record.get("state_ref"):
            return self.store.gen.child("states", record["state_ref"]).read_json()
        return record.get("state")


def _new_job_id() -> str:
    return f"job-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


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
    **processor_kwargs: Any,
) -> JobResult:
    """Run ``processor`` over ``source`` in chunks, with checkpoints; resume if ``output_path`` holds one.

    :param source: a file, folder or glob of Parquet/CSV/JSON Lines files: a local path, an fsspec URI or an
        ``ObjectStoragePath``. A folder written by this engine is read through its committed manifest.
    :param processor: a registered name, an import path ``"module:attr"``, a processor class or instance, or a
        sync/``async`` callable ``fn(batch_df, context, **processor_kwargs)``.
    :param config: a :class:`BatchConfig` (or a mapping of its fields).
    :param output_path: the job's own folder. ``None``: a new folder under ``$AIRFLOW_BATCH_PROVIDER_BASE_PATH``
        (default ``~/.airflow_batch_provider/jobs``).
    :param progress_callbacks: callables receiving :class:`ProgressEvent` objects.
    :param csv_options: options for CSV / JSON Lines sources (``delimiter``, ``quote_char``, ``encoding``,
        ``column_types``).
    :param job_id: the id in logs and events (default: the output folder's name).
    :param cancel_event: set it to stop the job; it checkpoints and raises ``JobCancelledError``.
    :param processor_kwargs: everything else goes to the processor.
    """
    if config is None:
        config = BatchConfig()
    elif isinstance(config, Mapping):
        config = BatchConfig.from_mapping(config)
    proc = resolve_processor(processor, processor_kwargs)
    if output_path is None:
        job_id = job_id or _new_job_id()
        output_path = os.path.join(default_base_path(), job_id)
    out = Location.of(output_path)
    cancel_event = cancel_event or threading.Event()
    runner = JobRunner(
        source,
        proc,
        config,
        out,
        callbacks=list(progress_callbacks or ()),
        text_options=TextOptions.from_mapping(dict(csv_options or {})),
        cancel_event=cancel_event,
        job_id=job_id or out.name,
    )
    with _sigterm_sets(cancel_event):
        return runner.run()


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


def read_output(output_uri: Any, columns: list[str] | None = None, *, quarantine: bool = False) -> Any:
    """The committed output (or, with ``quarantine=True``, the quarantined rows) of a job folder as one
    pandas DataFrame, or None when there are none. For small outputs and tests."""
    import pyarrow.parquet as pq

    loc = Location.of(output_uri)
    if quarantine:
        manifest = loc.child(sources.OUTPUT_MANIFEST).read_json() or {}
        parts = [loc.child(p).path for p in manifest.get("quarantine", [])]
    else:
        parts = sources.list_source_files(loc)
    if not parts:
        return None
    tables = []
    for p in parts:
        with loc.fs.open(p, "rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
