"""Online batch-size adaptation: the adapter's rules, and real jobs that adapt, shrink on a lowered memory
target, resume with other sizes, and give the same results as a fixed batch size."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_batch_provider.engine import adaptive, read_output, run_batch_job, workers
from airflow_batch_provider.engine.adaptive import BatchSizeAdapter
from airflow_batch_provider.engine.runner import JobRunner
from airflow_batch_provider.exceptions import JobCancelledError
from airflow_batch_provider.processors import register_processor
from airflow_batch_provider.processors.registry import unregister_processor
from airflow_batch_provider.storage import Location

MB = 2**20
FILES, ROWS = 4, 20_000


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("adaptive_src")
    rng = np.random.default_rng(7)
    for i in range(FILES):
        ids = np.arange(i * ROWS, (i + 1) * ROWS)
        frame = pd.DataFrame(
            {
                "id": ids,
                "a": rng.random(ROWS),
                "b": rng.integers(0, 50, ROWS).astype("float64"),
                "s": [f"k{v % 97}" for v in ids],
            }
        )
        frame.loc[frame.index % 13 == 0, "b"] = np.nan
        frame.to_parquet(folder / f"part-{i}.parquet", row_group_size=5_000)
    return folder


@pytest.fixture
def instant_control(monkeypatch):
    """The runner re-reads the control file on every chunk (not once a second)."""
    monkeypatch.setattr(adaptive, "CONTROL_INTERVAL_S", 0.0)


def lower_target_after(out: Path, chunks: int, target_mb: float):
    """A progress callback that lowers the memory target through the control file after ``chunks`` chunks."""

    def callback(event) -> None:
        if event.event_type == "progress" and event.chunks_done >= chunks:
            path = out / adaptive.CONTROL_FILE
            if not path.exists():
                path.write_text(json.dumps({"target_memory_usage_mb": target_mb}))

    return callback


AUTO = {"max_concurrent_batches": 2, "progress_interval_seconds": 0}


def timing_free(report):
    """The report without timings, floats to 12 significant digits (means and deviations agree within 1e-9
    relative across chunkings, as tests/unit/processors/test_conformance.py checks)."""
    if isinstance(report, dict):
        return {k: timing_free(v) for k, v in report.items() if k not in ("duration_s", "seconds")}
    if isinstance(report, list):
        return [timing_free(v) for v in report]
    if isinstance(report, float):
        return float(f"{report:.12g}")
    return report


# -- the adapter's rules -------------------------------------------------------------------------------
def test_grows_while_memory_allows_and_throughput_improves():
    a = BatchSizeAdapter(10_000, target_mb=1000, concurrency=2, max_size=1_000_000)
    a.observe(10_000, 1.0, 10 * MB)  # 10k rows/s, 1 KB per row
    assert a.size == 10_000  # one chunk per worker first
    a.observe(10_000, 1.0, 10 * MB)
    assert a.size == 20_000
    assert a.trajectory[-1]["from"] == 10_000 and "leaves room" in a.trajectory[-1]["reason"]
    a.observe(20_000, 1.0, 20 * MB)
    a.observe(20_000, 1.0, 20 * MB)  # 20k rows/s: faster, keep growing
    assert a.size == 40_000


def test_reverts_when_a_larger_size_is_slower():
    a = BatchSizeAdapter(10_000, target_mb=1000, concurrency=1, max_size=1_000_000)
    a.observe(10_000, 1.0, MB)
    assert a.size == 20_000
    a.observe(20_000, 4.0, 2 * MB)  # 5k rows/s: slower than 10k rows/s
    assert a.size == 10_000 and a.converged
    assert "slower" in a.trajectory[-1]["reason"]
    a.observe(10_000, 1.0, MB)
    assert a.size == 10_000  # converged: no more growth


def test_growth_stops_at_the_memory_budget():
    a = BatchSizeAdapter(10_000, target_mb=100, concurrency=2, max_size=1_000_000)  # 50 MB per worker
    a.observe(10_000, 1.0, 20 * MB)  # 2 KB per row: 0.7 x 50 MB fits ~17.5k rows
    a.observe(10_000, 1.0, 20 * MB)
    assert a.size == int(0.7 * 50 * MB / (20 * MB / 10_000))
    assert a.size < 20_000


def test_shrinks_before_memory_runs_out():
    a = BatchSizeAdapter(100_000, target_mb=100, concurrency=1, max_size=1_000_000)
    a.observe(100_000, 1.0, 95 * MB)  # 95% of the budget
    assert a.size == int(100_000 * 0.7 * 100 / 95)
    assert "peaked at 95 MB" in a.trajectory[-1]["reason"]


def test_lowered_target_shrinks_at_once_and_a_raised_one_allows_growth():
    a = BatchSizeAdapter(100_000, target_mb=1000, concurrency=2, max_size=1_000_000)
    a.observe(100_000, 1.0, 100 * MB)
    a.set_target_mb(100)  # 50 MB per worker: 100k rows need ~100 MB
    assert a.size == int(0.7 * 50 * MB / (100 * MB / 100_000))
    assert "memory target 1,000 -> 100 MB" in a.trajectory[-1]["reason"]
    a.set_target_mb(0)  # ignored
    assert a.target_mb == 100


def test_control_file(tmp_path):
    a = BatchSizeAdapter(100_000, target_mb=1000, concurrency=1, max_size=1_000_000)
    a.observe(100_000, 1.0, 100 * MB)
    folder = Location.of(str(tmp_path))
    a.poll_control(folder, now=0.0)  # no file: nothing changes
    (tmp_path / adaptive.CONTROL_FILE).write_text(json.dumps({"target_memory_usage_mb": 50}))
    a.poll_control(folder, now=0.5)  # re-read at most once per CONTROL_INTERVAL_S
    assert a.target_mb == 1000
    a.poll_control(folder, now=5.0)
    assert a.target_mb == 50 and a.size < 100_000
    (tmp_path / adaptive.CONTROL_FILE).write_text("{not json")
    a.poll_control(folder, now=10.0)  # a broken file changes nothing
    assert a.target_mb == 50


def test_cut_joins_and_splits_pending_ranges():
    runner = JobRunner.__new__(JobRunner)
    runner.row_cap, runner.concurrency = None, 1
    runner.adapter = BatchSizeAdapter(250, target_mb=100, concurrency=1, max_size=10_000, min_size=1)
    pending = deque(workers.ChunkTask(i, 0, i * 100, (i + 1) * 100) for i in range(4))
    pending.append(workers.ChunkTask(4, 1, 0, 100))
    first = runner._cut(pending.popleft(), pending)
    assert (first.file_index, first.start, first.stop) == (0, 0, 250)
    second = runner._cut(pending.popleft(), pending)
    assert (second.file_index, second.start, second.stop) == (0, 250, 400)  # stops at the file's end
    third = runner._cut(pending.popleft(), pending)
    assert (third.file_index, third.start, third.stop) == (1, 0, 100)
    assert not pending
    # grown past the start with two workers: chunks stay at most an equal share of the rows left per worker,
    # so no worker idles at the end, and never below the starting size
    runner.concurrency = 2
    runner.adapter = BatchSizeAdapter(100, target_mb=100, concurrency=2, max_size=10_000, min_size=1)
    runner.adapter.size = 400
    pending = deque(workers.ChunkTask(i, 0, i * 100, (i + 1) * 100) for i in range(5))
    first = runner._cut(pending.popleft(), pending)
    assert (first.start, first.stop) == (0, 250)
    second = runner._cut(pending.popleft(), pending)
    assert (second.start, second.stop) == (250, 375)  # 250 rows left: 125 each
    third = runner._cut(pending.popleft(), pending)
    assert (third.start, third.stop) == (375, 475)  # 125 left: the starting size, 100
    assert [(t.start, t.stop) for t in pending] == [(475, 500)]


def test_growth_keeps_four_chunks_per_worker_when_the_source_has_the_rows():
    runner = JobRunner.__new__(JobRunner)
    runner.row_cap, runner.concurrency = None, 2
    runner.adapter = BatchSizeAdapter(1_000, target_mb=100, concurrency=2, max_size=100_000, min_size=1)
    runner.adapter.size = 4_000  # grown 4x after the first chunks
    runner.rows_total = 12_000  # 4 x 2 workers x 1,000 rows or more: at least 8 chunks, so at most 1,500 rows
    pending = deque(workers.ChunkTask(i, 0, i * 1_000, (i + 1) * 1_000) for i in range(2, 12))
    first = runner._cut(pending.popleft(), pending)
    assert (first.start, first.stop) == (2_000, 3_500)
    runner.rows_total = 7_999  # too few rows for 8 chunks of the minimum size: only the equal-share cap
    pending = deque(workers.ChunkTask(i, 0, i * 1_000, (i + 1) * 1_000) for i in range(2, 8))
    second = runner._cut(pending.popleft(), pending)
    assert (second.start, second.stop) == (2_000, 5_000)  # 6,000 rows left: 3,000 each


# -- real jobs -----------------------------------------------------------------------------------------
def test_chunk_records_measure_each_chunks_own_allocation(source, tmp_path, monkeypatch):
    """``mem_peak`` is per chunk (the peak RSS mark is reset): a small chunk after a big one reads small."""
    seen: list[dict] = []
    original = JobRunner._record

    def spy(self, record):
        seen.append(dict(record))
        original(self, record)

    monkeypatch.setattr(JobRunner, "_record", spy)

    def allocate(batch, ctx):
        if ctx.file_index == 0 and ctx.start_row == 0:
            block = np.ones(64 * MB // 8)  # 64 MB, every page touched
            assert block.sum() > 0
        return None

    run_batch_job(
        source / "part-0.parquet",
        allocate,
        config={"batch_size": 5_000, "max_concurrent_batches": 1},
        output_path=tmp_path / "out",
        records_path=False,
    )
    by_start = {r["s"]: r for r in seen}
    assert by_start[0]["mem_peak"] >= 60 * MB
    assert all(by_start[s]["mem_peak"] < 40 * MB for s in (5_000, 10_000, 15_000))
    assert all(r["seconds"] > 0 for r in seen)


def test_forced_shrink_shows_its_trajectory_in_the_log_and_the_summary(
    source, tmp_path, instant_control, caplog
):
    out = tmp_path / "auto"
    caplog.set_level(logging.INFO, logger="airflow_batch_provider.engine")
    result = run_batch_job(
        source,
        "passthrough",
        config=AUTO,
        output_path=out,
        records_path=False,
        progress_callbacks=[lower_target_after(out, 1, 2)],
    )
    trajectory = result.batch_size_trajectory
    assert trajectory and trajectory[0]["to"] < trajectory[0]["from"]
    assert "memory target" in trajectory[0]["reason"] or "peaked" in trajectory[0]["reason"]
    assert result.extra["memory_target_mb"] == 2
    assert result.to_dict()["batch_size_trajectory"] == trajectory
    assert any(r.startswith("sample of") for r in result.extra["batch_size_reasons"])
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch size ")]
    assert len(changes) == len(trajectory)
    assert f"batch size {trajectory[0]['from']} -> {trajectory[0]['to']}" in changes[0]
    job_line = next(r.getMessage() for r in caplog.records if "chunk(s) to run" in r.getMessage())
    assert f"batch_size {result.batch_size}, auto: sample of" in job_line
    # the output is the source, row for row
    got = read_output(result.output_uri)
    want = pd.concat([pd.read_parquet(p) for p in sorted(source.glob("*.parquet"))], ignore_index=True)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("processor", ["passthrough", "count", "data_profiling"])
def test_adaptation_never_changes_results(source, tmp_path, instant_control, processor):
    fixed = run_batch_job(
        source, processor, config={"batch_size": 3_000, "max_concurrent_batches": 2},
        output_path=tmp_path / "fixed", records_path=False,
    )  # fmt: skip
    out = tmp_path / "auto"
    auto = run_batch_job(
        source, processor, config=AUTO, output_path=out, records_path=False,
        progress_callbacks=[lower_target_after(out, 1, 2)],
    )  # fmt: skip
    assert auto.batch_size_trajectory and not fixed.batch_size_trajectory
    assert auto.rows_in == fixed.rows_in == FILES * ROWS
    assert timing_free(auto.report) == timing_free(fixed.report)
    if processor == "passthrough":
        pd.testing.assert_frame_equal(read_output(auto.output_uri), read_output(fixed.output_uri))


def test_cancel_after_adapting_then_resume_neither_redoes_nor_skips_rows(source, tmp_path, instant_control):
    clean = run_batch_job(
        source,
        "passthrough",
        config={"batch_size": 7_000},
        output_path=tmp_path / "clean",
        records_path=False,
    )
    out = tmp_path / "job"
    cancel = threading.Event()
    lower = lower_target_after(out, 1, 2)

    def cancel_later(event) -> None:
        lower(event)
        if event.event_type == "progress" and event.chunks_done >= 4:
            cancel.set()

    with pytest.raises(JobCancelledError):
        run_batch_job(
            source, "passthrough", config=AUTO, output_path=out, records_path=False,
            progress_callbacks=[cancel_later], cancel_event=cancel,
        )  # fmt: skip
    (out / adaptive.CONTROL_FILE).unlink()  # the resumed run starts from the estimate again: other sizes
    resumed = run_batch_job(source, "passthrough", config=AUTO, output_path=out, records_path=False)
    assert resumed.chunks_resumed >= 4
    assert resumed.rows_in == clean.rows_in
    got, want = read_output(resumed.output_uri), read_output(clean.output_uri)
    assert got["id"].is_unique and len(got) == FILES * ROWS
    pd.testing.assert_frame_equal(got, want)


def test_plain_callable_keeps_its_size_unless_it_opts_in(source, tmp_path, instant_control):
    def double(batch, ctx):
        return batch.assign(a2=batch["a"] * 2)

    out = tmp_path / "plain"
    plain = run_batch_job(
        source, double, config=AUTO, output_path=out, records_path=False,
        progress_callbacks=[lower_target_after(out, 1, 2)],
    )  # fmt: skip
    assert plain.batch_size_trajectory == [] and plain.extra["memory_target_mb"] is None
    assert plain.extra["batch_size_reasons"]  # the start is still the estimate

    register_processor("double_invariant", double, replace=True, chunk_invariant=True)
    try:
        out = tmp_path / "opted_in"
        opted = run_batch_job(
            source, "double_invariant", config=AUTO, output_path=out, records_path=False,
            progress_callbacks=[lower_target_after(out, 1, 2)],
        )  # fmt: skip
    finally:
        unregister_processor("double_invariant")
        del double.chunk_invariant
    assert opted.batch_size_trajectory
    pd.testing.assert_frame_equal(read_output(opted.output_uri), read_output(plain.output_uri))


def test_configured_batch_size_does_not_adapt(source, tmp_path, instant_control):
    out = tmp_path / "fixed"
    result = run_batch_job(
        source, "passthrough", config={"batch_size": 4_000, "max_concurrent_batches": 2},
        output_path=out, records_path=False, progress_callbacks=[lower_target_after(out, 1, 2)],
    )  # fmt: skip
    assert result.batch_size == 4_000 and result.batch_size_trajectory == []
    assert result.extra["batch_size_reasons"] == []
    assert result.chunks_total == FILES * ROWS // 4_000
