"""Chunk workers: a fork-context process pool with guards, and the function each worker runs.

Why fork (see the project's notes on Airflow 3.3): inside a task, spawn/forkserver workers cannot
import Airflow and DAG-file functions live under mangled module names; forked workers inherit both.
Guards: SIGTERM/SIGINT reset to default, parent-death signal plus a ppid check, and the job state is
handed over through fork (``initargs`` are not pickled with fork), so processors are never pickled.
Workers read their own chunk (file + row range) and write their own part file.
"""

from __future__ import annotations

import ctypes
import io
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from airflow_batch_provider.engine import sources
from airflow_batch_provider.engine.checkpoints import part_name
from airflow_batch_provider.engine.storage import Location
from airflow_batch_provider.processors.base import ChunkContext, ChunkResult

STATE_INLINE_LIMIT = 64 * 1024
_JOB: JobState | None = None


@dataclass
class JobState:
    """What every chunk needs, shared with workers through fork."""

    job_id: str
    processor: Any
    source_fs: Any
    files: list[sources.SourceFile]
    schema: pa.Schema
    text_options: Any
    gen: Location
    output_uri: str
    columns: list[str] | None = None  # read only these source columns (None: all)


@dataclass(frozen=True)
class ChunkTask:
    index: int
    file_index: int
    start: int
    stop: int
    attempt: int = 1

    @property
    def key(self) -> tuple[int, int]:
        return (self.file_index, self.start)

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def label(self, files: list[sources.SourceFile] | None = None) -> str:
        where = files[self.file_index].path if files else f"file {self.file_index}"
        return f"{where} rows {self.start}-{self.stop}"


def _init_worker(parent_pid: int, job: JobState, arrow_threads: int | None) -> None:
    global _JOB
    _JOB = job
    if arrow_threads:  # as many workers as cores: Arrow's own decode threads would only oversubscribe
        pa.set_cpu_count(arrow_threads)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    _single_threaded_native_pools()


def _single_threaded_native_pools() -> None:
    """One worker per core already: keep BLAS/OpenMP pools at one thread in each worker.

    This avoids oversubscription, and the GNU OpenMP hang in a child forked after the parent ran a
    multi-threaded OpenMP region (libgomp's team threads do not exist in the child).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it there is no pool to limit
        return
    threadpool_limits(limits=1)


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def new_pool(workers: int, job: JobState) -> ProcessPoolExecutor:
    try:  # imported once here rather than in every forked worker
        import threadpoolctl  # noqa: F401
    except ImportError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(os.getpid(), job, 1 if workers >= cores else None),
    )


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the workers now, then shut down without ``cancel_futures`` (which would hang ``wait()``)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, AttributeError):
            pass
    pool.shutdown(wait=False)


def set_inline_job(job: JobState) -> None:
    """Run chunks in this process (no fork on this platform)."""
    global _JOB
    _JOB = job


def run_chunk(task: ChunkTask) -> dict[str, Any]:
    """Read rows ``[start, stop)``, run the processor, write the part; return the finished-range record."""
    job = _JOB
    assert job is not None, "worker started without a job"
    t0 = time.perf_counter()
    f = job.files[task.file_index]
    table = sources.read_rows(
        job.source_fs, f, task.start, task.stop, job.schema, job.text_options, job.columns
    )
    frame = table.to_pandas()
    del table
    ctx = ChunkContext(
        job.job_id,
        task.index,
        task.file_index,
        f.path,
        task.start,
        task.stop,
        task.attempt,
        job.output_uri,
        getattr(job.processor, "params", {}) or {},
        job.gen.uri,
    )
    result = job.processor.process(frame, ctx)
    if result is None:
        result = ChunkResult()
    if not isinstance(result, ChunkResult):
        raise TypeError(
            f"{type(job.processor).__name__}.process must return a ChunkResult, got {type(result)}"
        )
    record: dict[str, Any] = {
        "f": task.file_index,
        "s": task.start,
        "e": task.stop,
        "rows_in": task.rows,
        "rows_out": 0,
        "part": None,
        "state": None,
        "state_ref": None,
    }
    if result.rows is not None and len(result.rows):
        record["part"] = part_name(task.file_index, task.start)
        record["rows_out"] = len(result.rows)
        write_part(job.gen.child("parts", record["part"]), result.rows)
    if result.quarantine is not None and len(result.quarantine):
        record["quarantine"] = part_name(task.file_index, task.start)
        record["rows_quarantined"] = len(result.quarantine)
        write_part(job.gen.child("quarantine", record["quarantine"]), result.quarantine)
    if result.state is not None:
        _store_state(job, record, result.state)
    record["seconds"] = round(time.perf_counter() - t0, 4)
    record["pid"] = os.getpid()
    return record


def _store_state(job: JobState, record: dict[str, Any], state: Any) -> None:
    import json

    from airflow_batch_provider.engine.jsonsafe import to_jsonable

    safe = to_jsonable(state)
    text = json.dumps(safe, separators=(",", ":"), allow_nan=False)
    if len(text) <= STATE_INLINE_LIMIT:
        record["state"] = safe
        return
    name = part_name(record["f"], record["s"]).replace(".parquet", ".json")
    job.gen.child("states", name).write_bytes(text.encode())
    record["state_ref"] = name


def write_part(loc: Location, frame: Any) -> None:
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    loc.write_bytes(buf.getvalue())
