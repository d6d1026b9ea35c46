"""Issue #5 proof: one real fault per row, injected at a chosen chunk of a small multi-chunk, two-file job.

Each row checks the failure class, the strategy the engine applied, the failure record (class, chunk,
attempt, strategy, recovered) and that the final output equals a clean run of the same job (minus the
quarantined rows, which are listed with their file, rows and byte range). The faults are real: exceptions
raised in forked chunk workers, a real ``MemoryError`` from the allocator, a worker that really allocates
until the memory watchdog kills it, SIGKILL and ``os._exit``, a hang, a storage read that raises
``ConnectionResetError`` in a registered fsspec filesystem, invalid UTF-8 bytes in a CSV file and
``ENOSPC`` while a part is written. "Once" faults use a marker file created with ``O_EXCL``, so exactly one
worker process fires them. The last tests check that the failure statistics and the ``airflow-batch
failures`` CLI count exactly what the rows injected.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_batch_provider import cli, storage
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.checkpoints import part_name
from airflow_batch_provider.engine.records import (
    FailureRecords,
    get_failure_statistics,
    get_job_failure_history,
)
from airflow_batch_provider.exceptions import ChunkFailedError, DataCorruptionError
from tests.conftest import sample_frame

# two Parquet files of 1000 and 777 rows in chunks of 200: file 0 has 5 chunks, file 1 has 4
BASE_CONFIG = {
    "batch_size": 200,
    "max_concurrent_batches": 2,
    "retry_delay_seconds": 0.05,
    "checkpoint_interval": 2,
}


def once(marker: Path) -> bool:
    """True for exactly one caller across processes: whoever creates ``marker`` (O_EXCL)."""
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return True
    except FileExistsError:
        return False


def transform(batch: pd.DataFrame) -> pd.DataFrame:
    """What every job of the matrix computes (so the output is not just the input)."""
    return batch.assign(y=batch["x"] * 2 + batch["id"])


def clean_processor(batch, ctx):
    return transform(batch)


def at(ctx, file_index: int, start: int) -> bool:
    return ctx.file_index == file_index and ctx.start_row == start


def write_sources(folder: Path, fmt: str, rows_b: int = 777) -> Path:
    """Two files, 1000 and ``rows_b`` rows (Parquet with row groups of 300, or CSV)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    frames = {"part-a": sample_frame(1000, seed=1), "part-b": sample_frame(rows_b, seed=2, offset=1000)}
    for name, frame in frames.items():
        if fmt == "parquet":
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False),
                folder / f"{name}.parquet",
                row_group_size=300,
            )
        else:
            frame[["id", "x", "cat"]].to_csv(folder / f"{name}.csv", index=False)
    return folder


class FlakyFileSystem(LocalFileSystem):
    """Local files under the ``flaky://`` protocol; opening ``FAULT_FILE`` in a chunk worker raises
    ``ConnectionResetError`` until ``FAULT_COUNT`` marker files exist (one is created per failure).

    The protocol is not a local one, so the engine wraps it in its retrying storage layer exactly as it wraps
    S3: the faults go through the real read path.
    """

    protocol = ("flaky",)
    FAULT_FILE = ""
    FAULT_COUNT = 0
    MARKERS = ""
    PARENT = 0

    def open(self, path, mode="rb", **kwargs):
        cls = type(self)
        if "r" in mode and path == cls.FAULT_FILE and os.getpid() != cls.PARENT:  # chunk reads, not planning
            for n in range(cls.FAULT_COUNT):
                if once(Path(cls.MARKERS) / f"reset-{n}"):
                    raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer (injected)")
        return super().open(path, mode, **kwargs)


class FlakyMountFileSystem(FlakyFileSystem):
    """The same faults on a filesystem that counts as local (like a network mount): the storage layer does
    not wrap it, so the chunk read itself meets ``ConnectionResetError``."""

    protocol = ("flakymount", "local")


@dataclasses.dataclass
class Env:
    """What one row works with: its folder, the base path its failure records go under, pytest's monkeypatch."""

    tmp: Path
    base: Path
    monkeypatch: pytest.MonkeyPatch

    def marker(self, name: str) -> Path:
        return self.tmp / f"{name}.marker"

    @property
    def records(self) -> Path:
        return self.base / "_records"

    def run(
        self, source: Any, processor: Any, name: str, out: str = "out", config: dict | None = None, **kw: Any
    ):
        return run_batch_job(
            source,
            processor,
            config={**BASE_CONFIG, **(config or {})},
            output_path=self.tmp / out,
            records_path=self.records,
            job_id=f"matrix-{name}-{out}",
            monitor=False,
            **kw,
        )


@dataclasses.dataclass(frozen=True)
class Expected:
    """One failure record the row must leave."""

    kind: str
    strategy: str
    chunk: tuple[int, int, int]
    recovered: bool
    attempt: int = 1
    error_type: str | None = None


def same_output(result, clean) -> None:
    pd.testing.assert_frame_equal(read_output(result.output_uri), read_output(clean.output_uri))


# -- the rows ---------------------------------------------------------------------------------------
def row_processing(env: Env, src: Path) -> list[Expected]:
    marker = env.marker("value-error")

    def fails_once(batch, ctx):
        if at(ctx, 0, 400) and once(marker):
            raise ValueError("injected processing fault at chunk 0:400")
        return transform(batch)

    clean = env.run(src, clean_processor, "processing", "clean")
    result = env.run(src, fails_once, "processing", config={"retry_delay_seconds": 0.3})
    same_output(result, clean)
    [record] = history(env, "processing")
    assert record["time_lost_s"] >= 0.3  # the backoff delay is part of the time lost
    return [Expected("processing", "retry", (0, 400, 600), True, error_type="ValueError")]


def row_memory_error(env: Env, src: Path) -> list[Expected]:
    ledger = env.tmp / "sizes"

    def big_chunks_fail(batch, ctx):
        if at(ctx, 1, 200) and len(batch) > 100:
            bytearray(1 << 60)  # a real MemoryError from the allocator (2**60 bytes can never be mapped)
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index} {ctx.start_row} {ctx.stop_row}\n")
        return transform(batch)

    clean = env.run(src, clean_processor, "memory_error", "clean")
    result = env.run(src, big_chunks_fail, "memory_error")
    same_output(result, clean)
    assert result.extra["batch_size_cap"] == 100
    calls = [tuple(map(int, line.split())) for line in ledger.read_text().splitlines()]
    assert (1, 200, 300) in calls and (1, 300, 400) in calls and (1, 200, 400) not in calls
    return [Expected("memory", "split", (1, 200, 400), True, error_type="MemoryError")]


def row_watchdog(env: Env, src: Path) -> list[Expected]:
    def hog(batch, ctx):
        if at(ctx, 0, 400) and len(batch) > 100:
            held = []
            for _ in range(96):  # up to 768 MB, 8 MB at a time, every page written
                held.append(b"x" * (8 << 20))
                time.sleep(0.03)
            raise AssertionError("the memory watchdog did not kill this worker")
        return transform(batch)

    clean = env.run(src, clean_processor, "watchdog", "clean")
    result = env.run(src, hog, "watchdog", config={"memory_limit_mb": 128})  # 64 MB per worker
    same_output(result, clean)
    assert result.extra["batch_size_cap"] == 100
    [record] = history(env, "watchdog")
    assert "memory watchdog" in record["error"]
    return [Expected("memory", "split", (0, 400, 600), True, error_type="WorkerDiedError")]


def row_sigkill(env: Env, src: Path) -> list[Expected]:
    marker = env.marker("sigkill")

    def killed_once(batch, ctx):
        if at(ctx, 1, 0) and once(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return transform(batch)

    clean = env.run(src, clean_processor, "sigkill", "clean")
    result = env.run(src, killed_once, "sigkill")
    same_output(result, clean)
    [record] = history(env, "sigkill")
    assert "SIGKILL" in record["error"]
    return [Expected("memory", "split", (1, 0, 200), True, error_type="WorkerDiedError")]


def row_exit_code(env: Env, src: Path) -> list[Expected]:
    marker = env.marker("exit3")

    def exits_once(batch, ctx):
        if at(ctx, 1, 400) and once(marker):
            os._exit(3)
        return transform(batch)

    clean = env.run(src, clean_processor, "exit_code", "clean")
    with pytest.raises(ChunkFailedError, match="system failure.*exit code 3") as info:
        env.run(src, exits_once, "exit_code")
    assert info.value.failure_class == "system"
    rerun = env.run(src, exits_once, "exit_code")
    assert rerun.chunks_resumed >= 1 and rerun.chunks_processed + rerun.chunks_resumed == 9
    same_output(rerun, clean)
    return [Expected("system", "checkpoint_and_fail", (1, 400, 600), False, error_type="WorkerDiedError")]


def row_timeout(env: Env, src: Path) -> list[Expected]:
    marker = env.marker("hang")

    def hangs_once(batch, ctx):
        if at(ctx, 0, 200) and once(marker):
            time.sleep(600)
        return transform(batch)

    clean = env.run(src, clean_processor, "timeout", "clean")
    result = env.run(src, hangs_once, "timeout", config={"batch_timeout_seconds": 3})
    same_output(result, clean)
    [record] = history(env, "timeout")
    assert record["time_lost_s"] >= 3
    return [Expected("timeout", "retry", (0, 200, 400), True, error_type="ChunkTimeoutError")]


def arm_flaky_reads(env: Env, src: Path, faults: int) -> None:
    env.monkeypatch.setattr(FlakyFileSystem, "FAULT_FILE", str(src / "part-b.parquet"))
    env.monkeypatch.setattr(FlakyFileSystem, "FAULT_COUNT", faults)
    env.monkeypatch.setattr(FlakyFileSystem, "MARKERS", str(env.tmp))
    env.monkeypatch.setattr(FlakyFileSystem, "PARENT", os.getpid())
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    fsspec.register_implementation("flakymount", FlakyMountFileSystem, clobber=True)


def row_network(env: Env, src: Path) -> list[Expected]:
    faults = 3  # = the storage layer's attempts below: one chunk read fails after the storage retries
    arm_flaky_reads(env, src, faults)
    env.monkeypatch.setattr(
        storage, "DEFAULT_RETRY_POLICY", storage.RetryPolicy(attempts=faults, base_delay=0.01)
    )

    clean = env.run(src, clean_processor, "network", "clean", config={"max_concurrent_batches": 1})
    result = env.run(f"flaky://{src}", clean_processor, "network", config={"max_concurrent_batches": 1})
    same_output(result, clean)
    assert len(list(env.tmp.glob("reset-*"))) == faults  # every injected reset happened
    [record] = history(env, "network")
    assert "ConnectionResetError" in record["error"]
    return [Expected("network", "retry_jitter", (1, 0, 200), True, error_type="StorageNetworkError")]


def row_network_mount(env: Env, src: Path) -> list[Expected]:
    arm_flaky_reads(env, src, 1)
    clean = env.run(src, clean_processor, "network_mount", "clean", config={"max_concurrent_batches": 1})
    result = env.run(
        f"flakymount://{src}", clean_processor, "network_mount", config={"max_concurrent_batches": 1}
    )
    same_output(result, clean)
    assert len(list(env.tmp.glob("reset-*"))) == 1
    return [Expected("network", "retry_jitter", (1, 0, 200), True, error_type="ConnectionResetError")]


# A CSV file with one undecodable byte in row CSV_BAD_ROW of file b: planning types the column from the other
# rows; the chunk holding it quarantines exactly that row and reads the rest.
CSV_ROWS_B, CSV_BAD_ROW, CSV_BATCH = 40_000, 10_500, 2_000


def corrupt_csv(path: Path, row: int) -> int:
    """Replace one byte of ``row``'s last field with 0xFF (invalid UTF-8); returns its byte offset."""
    data = bytearray(path.read_bytes())
    lines = data.split(b"\n")
    line_start = sum(len(line) + 1 for line in lines[: row + 1])  # +1: the header line
    offset = line_start + lines[row + 1].rindex(b",") + 1
    data[offset] = 0xFF
    path.write_bytes(bytes(data))
    return offset


def row_corrupt_csv(env: Env, src: Path) -> list[Expected]:
    clean_src = write_sources(env.tmp / "csv-clean", "csv", CSV_ROWS_B)
    bad_src = write_sources(env.tmp / "csv-bad", "csv", CSV_ROWS_B)
    bad_file = bad_src / "part-b.csv"
    offset = corrupt_csv(bad_file, CSV_BAD_ROW)
    cfg = {"batch_size": CSV_BATCH}
    chunk = (1, CSV_BAD_ROW // CSV_BATCH * CSV_BATCH, CSV_BAD_ROW // CSV_BATCH * CSV_BATCH + CSV_BATCH)

    clean = env.run(clean_src, clean_processor, "corrupt_csv", "clean", config=cfg)
    result = env.run(
        bad_src, clean_processor, "corrupt_csv", config=cfg, recovery={"max_skipped_fraction": 0.1}
    )
    assert result.chunks_skipped == 1 and result.extra["rows_skipped"] == 1  # the bad row, not its chunk
    [listed] = result.extra["skipped"]
    entry = json.loads((Path(result.output_uri) / listed).read_text())
    assert entry["file"] == str(bad_file) and entry["reason"] == "data_corruption"
    assert (entry["file_index"], entry["start_row"], entry["stop_row"], entry["rows"]) == (
        1,
        CSV_BAD_ROW,
        CSV_BAD_ROW + 1,
        1,
    )
    first, last = entry["byte_range"]  # exactly the record's line
    line = bad_file.read_bytes()[first:last]
    assert first <= offset < last and line.endswith(b"\n") and line.count(b"\n") == 1
    expected = read_output(clean.output_uri)
    lost = expected["id"] == 1000 + CSV_BAD_ROW  # file b's ids start at 1000
    assert lost.sum() == 1
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected[~lost].reset_index(drop=True))

    # the default max_skipped_fraction=0 skips nothing: the job fails, naming the file and the option
    with pytest.raises(DataCorruptionError, match=rf"{bad_file}.*max_skipped_fraction=0"):
        env.run(bad_src, clean_processor, "corrupt_csv", "strict", config=cfg)
    return [
        Expected("data_corruption", "quarantine", chunk, True, error_type="CorruptRowsError"),
        Expected("data_corruption", "fail", chunk, False, error_type="CorruptRowsError"),
    ]


def row_disk_full(env: Env, src: Path) -> list[Expected]:
    marker = env.marker("enospc")
    target = part_name(0, 400)
    real_temp = storage.Location._local_temp

    def no_space_once(self, data):
        if self.path.endswith("/parts/" + target) and once(marker):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        return real_temp(self, data)

    clean = env.run(src, clean_processor, "disk_full", "clean")
    env.monkeypatch.setattr(storage.Location, "_local_temp", no_space_once)  # forked workers inherit it
    with pytest.raises(ChunkFailedError, match="system failure.*No space left") as info:
        env.run(src, clean_processor, "disk_full")
    assert info.value.failure_class == "system"
    checkpoint = json.loads((env.tmp / "out" / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed"
    rerun = env.run(src, clean_processor, "disk_full")
    assert rerun.chunks_resumed == checkpoint["counters"]["chunks_done"] >= 1
    assert rerun.chunks_processed + rerun.chunks_resumed == 9
    same_output(rerun, clean)
    return [Expected("system", "checkpoint_and_fail", (0, 400, 600), False, error_type="OSError")]


ROWS: dict[str, Callable[[Env, Path], list[Expected]]] = {
    "processing": row_processing,
    "memory_error": row_memory_error,
    "watchdog": row_watchdog,
    "sigkill": row_sigkill,
    "exit_code": row_exit_code,
    "timeout": row_timeout,
    "network": row_network,
    "network_mount": row_network_mount,
    "corrupt_csv": row_corrupt_csv,
    "disk_full": row_disk_full,
}


def history(env: Env, name: str) -> list[dict[str, Any]]:
    """The failure records of row ``name`` (all its jobs), oldest first."""
    found = [
        r
        for r in FailureRecords(env.records).iter_records()
        if r.get("job_id", "").startswith(f"matrix-{name}-")
    ]
    return sorted(found, key=lambda r: r["ts"])


def run_row(name: str, tmp: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> list[Expected]:
    """Run one row and check its failure records against what it injected; returns them."""
    env = Env(tmp, base, monkeypatch)
    wanted = ROWS[name](env, write_sources(tmp / "src", "parquet"))
    got = history(env, name)
    assert [r["job_id"] for r in got if r["job_id"].endswith("-clean")] == [], (
        "the clean run failed somewhere"
    )
    summary = [
        Expected(r["class"], r["strategy"], tuple(r["chunk"]), r["recovered"], r["attempt"], r["error_type"])
        for r in got
    ]
    assert summary == wanted, json.dumps(got, indent=1)
    return wanted


# -- the tests --------------------------------------------------------------------------------------
INJECTED: list[Expected] = []  # what the passing matrix rows of this session injected


@pytest.fixture(scope="module")
def shared_base(tmp_path_factory) -> Path:
    """The records of every passing row, gathered under one base path (record names are unique)."""
    return tmp_path_factory.mktemp("matrix-base")


def run_and_gather(name: str, tmp: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> list[Expected]:
    injected = run_row(name, tmp, tmp / "base", monkeypatch)
    shutil.copytree(tmp / "base" / "_records", shared / "_records", dirs_exist_ok=True)
    return injected


@pytest.mark.parametrize("name", list(ROWS))
def test_fault_matrix(name, tmp_path, shared_base, monkeypatch):
    INJECTED.extend(run_and_gather(name, tmp_path, shared_base, monkeypatch))


def expected_statistics(injected: list[Expected]) -> dict[str, Any]:
    by_class = Counter(e.kind for e in injected)
    return {
        "total": len(injected),
        "by_class": dict(by_class),
        "by_strategy": dict(Counter(e.strategy for e in injected)),
        "recovered": sum(e.recovered for e in injected),
        "per_class": {k: (n, sum(e.recovered for e in injected if e.kind == k)) for k, n in by_class.items()},
    }


def test_statistics_and_cli_agree_with_the_injected_faults(shared_base, tmp_path_factory, capsys):
    base, injected = shared_base, list(INJECTED)
    if not injected:  # run alone (-k): inject the whole matrix here
        base = tmp_path_factory.mktemp("matrix-alone")
        for name in ROWS:
            with pytest.MonkeyPatch.context() as mp:
                injected.extend(run_and_gather(name, tmp_path_factory.mktemp(name), base, mp))
    assert len({e.kind for e in injected}) == 6  # every class was injected
    want = expected_statistics(injected)
    stats = get_failure_statistics(base / "_records", hours=1)
    assert stats["total"] == want["total"] and stats["by_class"] == want["by_class"]
    assert stats["by_strategy"] == want["by_strategy"] and stats["recovered"] == want["recovered"]
    assert {k: (v["failures"], v["recovered"]) for k, v in stats["classes"].items()} == want["per_class"]
    assert stats["recovery_rate"] == pytest.approx(want["recovered"] / want["total"])
    assert stats["time_lost_s"] > 3  # the hang alone cost the batch timeout
    newest = get_job_failure_history(base / "_records", limit=1)
    assert newest[0]["ts"] == max(r["ts"] for r in FailureRecords(base / "_records").iter_records())

    capsys.readouterr()
    assert cli.main(["failures", "--base", str(base), "--hours", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["statistics"]
    assert printed["by_class"] == want["by_class"] and printed["recovered"] == want["recovered"]
    assert cli.main(["failures", "--base", str(base), "--hours", "1"]) == 0
    table = capsys.readouterr().out
    assert f"total {want['total']}, recovered {want['recovered']}" in table
    for kind, (n, ok) in want["per_class"].items():
        assert any(line.split()[:3] == [kind, str(n), str(ok)] for line in table.splitlines()), table
