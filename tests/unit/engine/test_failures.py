"""In-task failure handling with real faults: killed workers, MemoryError, hangs, timeouts, cancellation."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ChunkFailedError, JobCancelledError, JobTimeoutError


def expected(src):
    return pd.concat([pd.read_parquet(p) for p in sorted(src.glob("*.parquet"))], ignore_index=True)


def once(flag):
    """True the first time it is called for this flag file (across processes)."""
    try:
        os.unlink(flag)
        return True
    except FileNotFoundError:
        return False


def test_a_killed_worker_is_replaced_and_its_chunks_rerun(two_files, tmp_path):
    flag = tmp_path / "kill"
    flag.write_text("x")

    def suicidal(batch, ctx):
        if ctx.file_index == 0 and ctx.start_row == 400 and once(flag):
            os.kill(os.getpid(), signal.SIGKILL)
        return batch

    result = run_batch_job(
        two_files,
        suicidal,
        config=BatchConfig(batch_size=200, retry_delay_seconds=0),
        output_path=tmp_path / "out",
    )
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected(two_files))
    failures = json.loads((tmp_path / "out" / "g0001" / "_checkpoint.json").read_text())
    assert failures["counters"]["failures"] >= 1


def test_memory_error_splits_the_chunk_and_completes(two_files, tmp_path):
    ledger = tmp_path / "ledger"

    def picky(batch, ctx):
        if len(batch) > 100:
            raise MemoryError("too big for this test")
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index} {ctx.start_row} {ctx.stop_row}\n")
        return batch

    result = run_batch_job(
        two_files, picky, config=BatchConfig(batch_size=400, retry_attempts=0), output_path=tmp_path / "out"
    )
    sizes = [int(e) - int(s) for _, s, e in (line.split() for line in ledger.read_text().splitlines())]
    assert max(sizes) <= 100 and sum(sizes) == 1777
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected(two_files))


def test_a_hanging_chunk_is_killed_after_batch_timeout_and_retried(two_files, tmp_path):
    flag = tmp_path / "hang"
    flag.write_text("x")

    def hangs_once(batch, ctx):
        if ctx.start_row == 0 and ctx.file_index == 1 and once(flag):
            time.sleep(600)
        return batch

    t0 = time.monotonic()
    result = run_batch_job(
        two_files,
        hangs_once,
        config=BatchConfig(batch_size=500, batch_timeout_seconds=2, retry_delay_seconds=0),
        output_path=tmp_path / "out",
    )
    assert time.monotonic() - t0 < 60
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected(two_files))


def test_chunk_failing_every_attempt_checkpoints_then_raises(two_files, tmp_path):
    def always(batch, ctx):
        if ctx.file_index == 1:
            raise ValueError("bad chunk")
        return batch

    with pytest.raises(ChunkFailedError, match="failed 3 time.*ValueError: bad chunk") as info:
        run_batch_job(
            two_files,
            always,
            config=BatchConfig(
                batch_size=300, retry_attempts=2, retry_delay_seconds=0.01, max_concurrent_batches=1
            ),
            output_path=tmp_path / "out",
        )
    assert info.value.attempts == 3
    checkpoint = json.loads((tmp_path / "out" / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed" and checkpoint["counters"]["chunks_done"] == 4  # file 0: 4 chunks
    assert any(f["class"] == "processing" and f["strategy"] == "fail" for f in checkpoint["failures"])


def stuck_after_four(batch, ctx, flag):
    if ctx.chunk_index >= 4 and not Path(flag).exists():
        time.sleep(120)  # the job runs past its timeout here, whatever the machine's load
    return batch


def test_job_timeout_checkpoints_and_a_rerun_finishes(two_files, tmp_path):
    flag = tmp_path / "unstuck"
    # 4 instant chunks, then chunks that hang: the timeout fires with exactly the first 4 checkpointed (a
    # generous limit, so a loaded machine still finishes them in time)
    cfg = BatchConfig(batch_size=100, max_concurrent_batches=2, checkpoint_interval=1, timeout_seconds=10)
    with pytest.raises(JobTimeoutError):
        run_batch_job(two_files, stuck_after_four, config=cfg, output_path=tmp_path / "out", flag=str(flag))
    flag.touch()
    result = run_batch_job(
        two_files, stuck_after_four, config=cfg.with_overrides({"timeout_seconds": None}),
        output_path=tmp_path / "out", flag=str(flag),
    )  # fmt: skip
    assert result.chunks_resumed == 4
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected(two_files))


def test_cancel_event_stops_with_a_checkpoint(two_files, tmp_path):
    cancel = threading.Event()

    def cancel_at_checkpoint(event):
        if event.event_type == "checkpoint" and event.chunks_done >= 4:
            cancel.set()

    with pytest.raises(JobCancelledError):
        run_batch_job(
            two_files,
            "passthrough",
            config=BatchConfig(batch_size=100, checkpoint_interval=2),
            output_path=tmp_path / "out",
            progress_callbacks=[cancel_at_checkpoint],
            cancel_event=cancel,
        )
    checkpoint = json.loads((tmp_path / "out" / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed" and checkpoint["counters"]["chunks_done"] >= 4
    assert (
        checkpoint["counters"]["rows_done"] == 100 * checkpoint["counters"]["chunks_done"]
    )  # full chunks of file 0
    result = run_batch_job(
        two_files, "passthrough", config=BatchConfig(batch_size=100), output_path=tmp_path / "out"
    )
    assert result.chunks_resumed >= 4 and result.rows_out == 1777


def test_progress_events_reach_callbacks_as_objects_and_mappings(two_files, tmp_path):
    events = []
    run_batch_job(
        two_files,
        "passthrough",
        config=BatchConfig(batch_size=100, progress_interval_seconds=0, checkpoint_interval=5),
        output_path=tmp_path / "out",
        progress_callbacks=[events.append, lambda e: 1 / 0],
    )
    kinds = [e.event_type for e in events]
    assert (
        kinds[0] == "started" and kinds[-1] == "completed" and "progress" in kinds and "checkpoint" in kinds
    )
    last = events[-1]
    assert last["progress_percentage"] == 100.0 and last.rows_processed == last.rows_total == 1777
    assert all(e.chunks_total == 18 for e in events)
    pcts = [e.progress_percentage for e in events]
    assert pcts == sorted(pcts)


def test_preserve_order_false_lists_parts_in_completion_order(two_files, tmp_path):
    marker = tmp_path / "chunk1-done"

    def reverse_speed(batch, ctx):
        # chunk 0 finishes only after chunk 1 has (a barrier, not a race of sleeps on a loaded machine)
        if ctx.chunk_index == 1:
            marker.write_text("x")
        elif ctx.chunk_index == 0:
            for _ in range(3000):
                if marker.exists():
                    break
                time.sleep(0.01)
            time.sleep(0.3)
        return batch

    run_batch_job(
        two_files,
        reverse_speed,
        config=BatchConfig(batch_size=200, preserve_order=False, compact_output=False),
        output_path=tmp_path / "out",
    )
    parts = json.loads((tmp_path / "out" / "_manifest.json").read_text())["parts"]
    assert sorted(parts) != parts and len(parts) == 9
    got = read_output(tmp_path / "out").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(got, expected(two_files))


def test_a_config_error_in_a_chunk_fails_the_job_and_quarantines_nothing(two_files, tmp_path):
    """A ConfigError is the job's configuration, not its data: class ``configuration``, strategy ``fail``, even
    when ``max_skipped_fraction`` would let corrupt chunks be skipped (it was ``data_corruption`` -> quarantine)."""
    from airflow_batch_provider.engine.failures import DEFAULT_STRATEGIES, FailureClass, Strategy, classify
    from airflow_batch_provider.exceptions import ConfigError

    assert classify(ConfigError("x")) is FailureClass.CONFIGURATION
    assert DEFAULT_STRATEGIES[FailureClass.CONFIGURATION] is Strategy.FAIL
    calls = tmp_path / "calls"

    def misconfigured(batch, ctx):
        with open(calls, "a") as fh:
            fh.write(f"{ctx.file_index}:{ctx.start_row}\n")
        if ctx.file_index == 0 and ctx.start_row == 200:
            raise ConfigError("rule 'positive': option 'threshold' must be a number")
        return batch

    with pytest.raises(Exception, match="option 'threshold' must be a number") as info:
        run_batch_job(
            two_files,
            misconfigured,
            config=BatchConfig(batch_size=200, retry_delay_seconds=0, max_concurrent_batches=1),
            recovery={"max_skipped_fraction": 0.5},
            output_path=tmp_path / "out",
        )
    assert "configuration" in str(info.value) or classify(info.value) is FailureClass.CONFIGURATION
    assert calls.read_text().splitlines().count("0:200") == 1  # one attempt, no retry
    assert not list((tmp_path / "out").rglob("skipped/*"))  # nothing quarantined


def test_a_profile_that_requires_order_forces_preserve_order(two_files, tmp_path):
    """``ProcessingProfile(requires_order=True)`` (the reference API's flag) commits outputs in source order even
    with ``preserve_order=False``, although the first chunk finishes last (it waits for the second one)."""
    from airflow_batch_provider.engine import sizing
    from airflow_batch_provider.processors.base import ProcessingProfile
    from airflow_batch_provider.processors.registry import register_processor, unregister_processor

    flag = tmp_path / "second-done"

    def first_finishes_last(batch, ctx):
        if ctx.file_index == 0 and ctx.start_row == 0:
            while not flag.exists():  # a barrier, not a timer: the second chunk has returned its rows
                time.sleep(0.01)
        elif ctx.file_index == 0 and ctx.start_row == 200:
            flag.write_text("x")
        return batch

    register_processor("ordered_rows", first_finishes_last, replace=True)
    sizing.register_processing_profile(ProcessingProfile("ordered_rows", requires_order=True))
    try:
        result = run_batch_job(
            two_files,
            "ordered_rows",
            config=BatchConfig(batch_size=200, max_concurrent_batches=2, preserve_order=False),
            output_path=tmp_path / "out",
        )
    finally:
        unregister_processor("ordered_rows")
    pd.testing.assert_frame_equal(read_output(result.output_uri), expected(two_files))
