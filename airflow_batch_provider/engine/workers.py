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
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_batch_provider.engine import parquet_out, polars_fork, sources
from airflow_batch_provider.engine.checkpoints import Fence, part_name
from airflow_batch_provider.engine.failures import FailureClass, classify, mark_processor_frames
from airflow_batch_provider.exceptions import (
    BatchInputError,
    ConfigError,
    CorruptRowsError,
    DataCorruptionError,
)
from airflow_batch_provider.processors import frames
from airflow_batch_provider.processors.base import ChunkContext, ChunkResult
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.engine")

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
    fence: Fence | None = None  # checked before a worker writes anything
    #: the rows the job may skip (``max_skipped_fraction`` of the source): a chunk that cannot be read looks for
    #: its unreadable rows one by one up to one more than this, so only they are quarantined
    max_bad_rows: int = 0
    crumbs: Breadcrumbs = field(default_factory=lambda: Breadcrumbs())


class Breadcrumbs:
    """Which chunk each worker is running, in a local temp folder (tmpfs where there is one).

    A worker writes ``<pid>`` = ``"file start stop"`` before it reads a chunk and removes it when the chunk is
    done. When a worker dies, its breadcrumb names the chunk that killed it; the other chunks that were in
    flight are innocent and run again without counting an attempt.
    """

    def __init__(self) -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.folder = tempfile.mkdtemp(prefix="abp-crumbs-", dir=base)

    def drop(self, task: ChunkTask) -> None:
        path = os.path.join(self.folder, str(os.getpid()))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{task.file_index} {task.start} {task.stop}".encode())
        finally:
            os.close(fd)

    def sweep(self) -> None:
        try:
            os.unlink(os.path.join(self.folder, str(os.getpid())))
        except FileNotFoundError:
            pass

    def read(self) -> dict[int, tuple[int, int, int]]:
        out = {}
        for name in os.listdir(self.folder) if os.path.isdir(self.folder) else ():
            try:
                with open(os.path.join(self.folder, name)) as fh:
                    f, s, e = (int(x) for x in fh.read().split())
                out[int(name)] = (f, s, e)
            except (OSError, ValueError):
                continue
        return out

    def clear(self) -> None:
        for name in os.listdir(self.folder) if os.path.isdir(self.folder) else ():
            try:
                os.unlink(os.path.join(self.folder, name))
            except OSError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def exit_codes(procs: Mapping[int, Any], wait: float = 2.0) -> dict[int, int | None]:
    """Exit code of every worker (``pid -> multiprocessing.Process``) of a broken pool (None: still running;
    negative: killed by that signal). Pass the workers the caller saw while the pool ran: once broken, the
    executor's own thread may reap them and drop them from ``pool._processes`` before this is called.

    Called once the pool reported a dead worker, when the executor has already told the others to terminate.
    A killed worker closes its pipes (which is how the executor notices) before the kernel reports its
    status, and a multi-threaded one is a zombie for a moment: every worker still running is waited for, up to
    ``wait`` seconds in all.
    """
    deadline = time.monotonic() + wait
    out = {}
    for pid, proc in list(procs.items()):
        code = proc.exitcode
        # polled, not joined once: when the executor's thread reaps the worker first, our waitpid fails
        # (ECHILD) and the code appears only once that thread has stored it in the shared Popen object
        while code is None and time.monotonic() < deadline:
            proc.join(0.05)
            code = proc.exitcode
        out[pid] = code
    return out


class MemoryWatchdog:
    """Kills a chunk worker whose own memory grows past its budget, so the chunk fails as a memory failure.

    Measured every ``interval`` seconds with psutil as the worker's private memory (RSS minus pages shared
    with the parent through fork) above the lowest value seen for that worker, so the parent's heap that a
    forked worker maps does not count. The Linux OOM killer would kill the whole task; this kills one worker.
    """

    def __init__(
        self, pool: Callable[[], Any], budget_bytes: int, killed: set[int], interval: float = 0.2
    ) -> None:
        self.pool, self.budget, self.killed, self.interval = pool, int(budget_bytes), killed, interval
        self._stop = threading.Event()
        self._base: dict[int, int] = {}
        self._procs: dict[int, Any] = {}
        self._thread = threading.Thread(target=self._loop, name="batch-memory-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            for pid in list(getattr(self.pool(), "_processes", None) or {}):
                try:
                    proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
                    info = proc.memory_info()
                except (psutil.Error, OSError):
                    continue
                private = info.rss - getattr(info, "shared", 0)
                base = self._base[pid] = min(self._base.get(pid, private), private)
                if private - base > self.budget and pid not in self.killed:
                    log.warning(
                        "chunk worker %d uses %d MB over its start (budget %d MB = memory_limit_mb / workers): "
                        "killing it; its chunk will be split",
                        pid,
                        (private - base) // 2**20,
                        self.budget // 2**20,
                    )
                    self.killed.add(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass


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


def _init_worker(
    parent_pid: int, job: JobState, arrow_threads: int | None, polars_copy: str | None = None
) -> None:
    global _JOB
    _JOB = job
    if arrow_threads:  # as many workers as cores: Arrow's own decode threads would only oversubscribe
        pa.set_cpu_count(arrow_threads)
    # polars' thread pool does not survive fork: a fresh runtime when the parent imported polars
    polars_fork.fresh_polars(polars_copy, single_thread=bool(arrow_threads))
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
    from airflow_batch_provider.machine import usable_cpus

    cores = usable_cpus()
    current = multiprocessing.current_process()
    if current.daemon:
        # A task under CeleryExecutor is forked from a daemonic prefork pool process and inherits its flag;
        # multiprocessing then refuses to start workers ("daemonic processes are not allowed to have
        # children"). The flag only makes a parent kill its children at exit: ours die with it anyway.
        current._config["daemon"] = False  # type: ignore[attr-defined]
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(os.getpid(), job, 1 if workers >= cores else None, polars_fork.runtime_copy()),
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


class ChunkMemory:
    """What one chunk allocates in this process: its peak RSS over the process's own baseline.

    Before a chunk, memory the previous chunk freed is handed back to the OS (Arrow's pool, glibc's
    heap) and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``, Linux >= 4.0); after it,
    ``VmHWM`` is that chunk's own peak. The baseline is the lowest RSS seen at a chunk start in this
    process (right after fork it includes the parent's pages, which a chunk does not allocate).
    Without the reset (another OS), the RSS at the end of the chunk stands in for the peak.
    """

    def __init__(self) -> None:
        self.baseline: int | None = None
        self.resettable = sys.platform.startswith("linux")
        self._libc: Any = None
        self._start = 0

    @staticmethod
    def _status(field_name: bytes) -> int | None:
        try:
            with open("/proc/self/status", "rb") as fh:
                for line in fh:
                    if line.startswith(field_name):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def _rss(self) -> int:
        rss = self._status(b"VmRSS:") if self.resettable else None
        if rss is None:
            import psutil

            rss = int(psutil.Process().memory_info().rss)
        return rss

    def _release(self) -> None:
        pa.default_memory_pool().release_unused()
        if self._libc is None:
            try:
                self._libc = ctypes.CDLL("libc.so.6")
            except OSError:
                self._libc = False
        if self._libc:
            self._libc.malloc_trim(0)

    def start(self) -> None:
        self._release()
        if self.resettable:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # reset the peak RSS to the current RSS
            except OSError:
                self.resettable = False
        self._start = self._rss()
        self.baseline = self._start if self.baseline is None else min(self.baseline, self._start)

    def stop(self) -> dict[str, int]:
        """``mem_peak``: the chunk's peak RSS over the baseline; ``mem_start``: retained before it (bytes)."""
        peak = self._status(b"VmHWM:") if self.resettable else None
        peak = max(peak or 0, self._rss())
        base = self.baseline or 0
        return {"mem_peak": max(0, peak - base), "mem_start": max(0, self._start - base)}


_MEMORY = ChunkMemory()


def chunk_record(task: ChunkTask, **fields: Any) -> dict[str, Any]:
    """The checkpoint record of a chunk before its results are known (row range, no part, no state)."""
    return {
        "f": task.file_index,
        "s": task.start,
        "e": task.stop,
        "rows_in": task.rows,
        "rows_out": 0,
        "part": None,
        "state": None,
        "state_ref": None,
        **fields,
    }


def run_chunk(task: ChunkTask) -> dict[str, Any]:
    """Read rows ``[start, stop)``, run the processor, write the part; return the finished-range record
    with the chunk's ``seconds`` and its measured memory (``mem_peak``/``mem_start`` bytes, see
    :class:`ChunkMemory`)."""
    job = _JOB
    assert job is not None, "worker started without a job"
    _MEMORY.start()
    t0 = time.perf_counter()
    job.crumbs.drop(task)
    try:
        record = _run_chunk(job, task)
    finally:
        job.crumbs.sweep()
    record["seconds"] = round(time.perf_counter() - t0, 4)
    record.update(_MEMORY.stop())
    record["pid"] = os.getpid()
    return record


_NOT_CORRUPTION = {FailureClass.NETWORK, FailureClass.MEMORY, FailureClass.SYSTEM}


def _read(job: JobState, task: ChunkTask) -> tuple[Any, dict[str, Any]]:
    """The chunk in the form the processor asks for (``input_format``: a pandas DataFrame, the Arrow table as
    read, or a polars DataFrame from it) and its dictionaries (:func:`frames.chunk_dictionaries`, which the row
    output's dictionary columns get back); bytes that cannot be decoded raise ``DataCorruptionError``, a
    :class:`CorruptRowsError` naming each unreadable row when the file is a text file."""
    f = job.files[task.file_index]
    try:
        table = sources.read_rows(
            job.source_fs, f, task.start, task.stop, job.schema, job.text_options, job.columns
        )
    except DataCorruptionError as err:
        rows = _unreadable_rows(job, task, err)
        if rows is err:
            raise
        raise rows from err
    except BatchInputError:
        raise
    except Exception as err:
        if classify(err) in _NOT_CORRUPTION:
            raise
        raise DataCorruptionError(
            f"{f.path} rows {task.start}-{task.stop} cannot be decoded: {type(err).__name__}: {err}"
        ) from err
    input_format = getattr(job.processor, "input_format", "pandas")
    try:
        frame = frames.convert(table, input_format)
    except BatchInputError:
        raise
    except Exception as err:  # decoded rows of a type the frame cannot hold: the same on every try
        if classify(err) in _NOT_CORRUPTION:
            raise
        raise ConfigError(
            f"{f.path} rows {task.start}-{task.stop}: the rows cannot be handed to the processor as "
            f"input_format={input_format!r} ({type(err).__name__}: {err}); the columns' types are "
            f"{dict(zip(table.column_names, map(str, table.schema.types), strict=True))}. Use "
            "input_format='arrow', which holds every Arrow type"
        ) from err
    return frame, frames.chunk_dictionaries(table)


def _unreadable_rows(job: JobState, task: ChunkTask, err: DataCorruptionError) -> DataCorruptionError:
    """``err`` as a :class:`CorruptRowsError` listing the chunk's rows that cannot be read on their own (text
    files; up to one more than the job may skip), or ``err`` itself when no single row is to blame."""
    f = job.files[task.file_index]
    if isinstance(err, CorruptRowsError):
        return err
    bad, complete = sources.find_bad_rows(
        job.source_fs, f, task.start, task.stop, job.schema, job.text_options, limit=job.max_bad_rows
    )
    if not bad:
        return err
    count = f"{len(bad)}{'' if complete else ' or more'}"
    return CorruptRowsError(
        f"{f.path} rows {task.start}-{task.stop}: {count} record(s) cannot be read, first at data row "
        f"{bad[0]['row'] + 1} (bytes {bad[0]['byte_range'][0]}-{bad[0]['byte_range'][1]}): {bad[0]['reason']}",
        path=f.path,
        rows=bad,
        complete=complete,
    )


def _run_chunk(job: JobState, task: ChunkTask) -> dict[str, Any]:
    f = job.files[task.file_index]
    frame, dictionaries = _read(job, task)
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
    try:
        result = job.processor.process(frame, ctx)
    except Exception as err:
        mark_processor_frames(err)  # where it came from, for the parent's fail-fast decision
        raise
    if result is None:
        result = ChunkResult()
    if not isinstance(result, ChunkResult):
        raise TypeError(
            f"{type(job.processor).__name__}.process must return a ChunkResult, got {type(result)}"
        )
    record = chunk_record(task)
    if job.fence is not None:
        job.fence.check()
    # rows, or the empty chunk of a source without rows: its (empty) part keeps the output's columns and types
    if result.rows is not None and (len(result.rows) or task.start == task.stop):
        record["part"] = part_name(task.file_index, task.start)
        record["rows_out"] = len(result.rows)
        write_part(job.gen.child("parts", record["part"]), result.rows, _read_schema(job), dictionaries)
    if result.quarantine is not None and len(result.quarantine):
        record["quarantine"] = part_name(task.file_index, task.start)
        record["rows_quarantined"] = len(result.quarantine)
        write_part(
            job.gen.child("quarantine", record["quarantine"]),
            result.quarantine,
            _read_schema(job),
            dictionaries,
        )
    if result.state is not None:
        _store_state(job, record, result.state)
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


def _read_schema(job: JobState) -> pa.Schema:
    """The schema of the chunks the processor is given (the source's, projected to ``job.columns``)."""
    if job.columns is None or not len(job.schema):
        return job.schema
    return pa.schema([job.schema.field(c) for c in job.columns])


def write_part(
    loc: Location, frame: Any, schema: pa.Schema | None = None, dictionaries: dict[str, Any] | None = None
) -> None:
    """Write a part: ``frame`` is a pandas or polars DataFrame or an Arrow table; ``schema`` (the source's) gives
    the columns that went through pandas or polars unchanged their exact Arrow type back, ``dictionaries`` (the
    chunk's) their dictionary."""
    import pyarrow.parquet as pq

    table = frames.to_arrow(frame, schema, dictionaries)
    buf = io.BytesIO()
    pq.write_table(table, buf, **parquet_out.write_options(table))
    loc.write_bytes(buf.getvalue())
