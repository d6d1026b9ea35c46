"""Deterministic processor errors fail the job after one attempt (and once in the failure records); transient
classes keep their retries."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.failures import (
    PROCESSOR_FRAMES,
    FailFast,
    FailureClass,
    error_signature,
    from_processor_code,
    mark_processor_frames,
)
from airflow_batch_provider.engine.records import get_failure_statistics, get_job_failure_history
from airflow_batch_provider.exceptions import ChunkFailedError, DeterministicProcessorError


class Attempts:
    """Appends ``file:start:attempt`` per call to a file (chunks run in forked workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, ctx) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{ctx.file_index}:{ctx.start_row}:{ctx.attempt}\n")

    def calls(self) -> list[str]:
        return self.path.read_text().split() if self.path.exists() else []


def add_vat(frame, vat_rates):
    return frame


def _config(**overrides):
    return BatchConfig(
        **{
            "batch_size": 200,
            "retry_attempts": 3,
            "retry_delay_seconds": 0,
            "checkpoint_interval": 1,
            **overrides,
        }
    )


def test_a_type_error_from_the_processor_fails_after_one_attempt(two_files, tmp_path):
    attempts, broken = Attempts(tmp_path / "attempts"), tmp_path / "broken"
    broken.write_text("the bug is in")

    def enrich(batch, ctx):
        attempts(ctx)
        if ctx.file_index == 1 and broken.exists():
            return add_vat(batch, vat_rate=0.2)  # the bug: the keyword is vat_rates
        return batch

    out, records = tmp_path / "out", tmp_path / "records"
    config = _config(max_concurrent_batches=2)
    with pytest.raises(DeterministicProcessorError) as info:
        run_batch_job(two_files, enrich, config=config, output_path=out, records_path=records)
    err = info.value
    message = str(err)
    assert "test_fail_fast" in err.processor and err.processor in message  # the processor
    assert err.chunk.startswith(str(two_files / "part-b.parquet")) and err.chunk in message  # the chunk
    assert "unexpected keyword argument 'vat_rate'" in message and err.error_type == "TypeError"
    assert isinstance(err.__cause__, TypeError)
    calls = attempts.calls()
    assert all(c.endswith(":1") for c in calls), calls  # one attempt per chunk, never a retry
    assert len([c for c in calls if c.startswith("1:")]) <= 2  # at most the chunks already in flight
    checkpoint = json.loads((out / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed" and checkpoint["counters"]["chunks_done"] == 5  # file 0 kept
    stats = get_failure_statistics(records, hours=None)
    assert stats["total"] == 1 and stats["by_strategy"] == {"fail_fast": 1}
    (record,) = get_job_failure_history(records)
    assert record["class"] == "processing" and record["error_type"] == "TypeError" and not record["recovered"]
    broken.unlink()  # fixed: the next run resumes from the checkpoint
    result = run_batch_job(two_files, enrich, config=config, output_path=out, records_path=records)
    assert result.rows_out == 1777 and result.chunks_resumed == 5


def test_the_first_chunks_failing_alike_fail_the_job(two_files, tmp_path):
    attempts = Attempts(tmp_path / "attempts")

    def check(batch, ctx):
        attempts(ctx)
        value = float(batch["x"].dropna().iloc[0])
        raise ValueError(f"amount {value!r} is not a valid amount, got {value * 3.5}")

    records = tmp_path / "records"
    with pytest.raises(DeterministicProcessorError, match="first 3 chunk.*none succeeded") as info:
        run_batch_job(
            two_files,
            check,
            config=_config(max_concurrent_batches=1),
            output_path=tmp_path / "out",
            records_path=records,
        )
    assert "ValueError: amount" in str(info.value)
    assert attempts.calls() == ["0:0:1", "0:200:1", "0:400:1"]  # three chunks, one attempt each
    assert get_failure_statistics(records, hours=None)["total"] == 1


def test_after_a_success_the_same_errors_keep_their_retries(two_files, tmp_path):
    attempts = Attempts(tmp_path / "attempts")

    def check(batch, ctx):
        attempts(ctx)
        if ctx.start_row or ctx.file_index:
            raise ValueError(f"amount {float(batch['x'].dropna().iloc[0])!r} is not valid")
        return batch

    with pytest.raises(ChunkFailedError, match="failed 3 time"):
        run_batch_job(
            two_files,
            check,
            config=_config(max_concurrent_batches=1, retry_attempts=2),
            output_path=tmp_path / "out",
            records_path=False,
        )
    assert attempts.calls()[:4] == ["0:0:1", "0:200:1", "0:200:2", "0:200:3"]


def test_a_network_error_keeps_its_retries(two_files, tmp_path):
    attempts = Attempts(tmp_path / "attempts")

    def flaky_lookup(batch, ctx):
        attempts(ctx)
        if ctx.attempt == 1:  # every chunk fails the same way once: the service is down
            raise ConnectionResetError(104, "Connection reset by peer")
        return batch

    records = tmp_path / "records"
    result = run_batch_job(
        two_files,
        flaky_lookup,
        config=_config(max_concurrent_batches=2),
        output_path=tmp_path / "out",
        records_path=records,
        recovery={"backoff_base_seconds": 0},
    )
    assert result.rows_out == 1777
    calls = attempts.calls()
    assert {c.rsplit(":", 1)[1] for c in calls} == {"1", "2"} and len(calls) == 2 * result.chunks_total
    stats = get_failure_statistics(records, hours=None)
    assert stats["by_class"] == {"network": result.chunks_total} and stats["recovered"] == result.chunks_total


def test_a_network_error_on_every_attempt_is_transient(two_files, tmp_path):
    def down(batch, ctx):
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ChunkFailedError) as info:
        run_batch_job(
            two_files,
            down,
            config=_config(max_concurrent_batches=1, retry_attempts=2),
            output_path=tmp_path / "out",
            records_path=False,
            recovery={"backoff_base_seconds": 0},
        )
    assert info.value.failure_class == "network" and info.value.attempts == 3


def _raised_through(fn):
    """What ``fn`` raises, marked as a chunk worker marks it (frames below the caller)."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        mark_processor_frames(err)
        return err
    raise AssertionError("did not raise")


def test_origin_is_the_processors_own_code_and_survives_pickling():
    own = _raised_through(lambda: add_vat(None, vat_rate=1))
    assert from_processor_code(own)
    again = pickle.loads(pickle.dumps(own))
    assert getattr(again, PROCESSOR_FRAMES) == getattr(own, PROCESSOR_FRAMES) and from_processor_code(again)
    storage = TypeError("bad")
    setattr(storage, PROCESSOR_FRAMES, ("/dags/x.py", "/venv/site-packages/fsspec/spec.py"))
    assert not from_processor_code(storage)
    assert not from_processor_code(TypeError("raised by the engine, not the processor"))


def test_fail_fast_rules():
    own = _raised_through(lambda: add_vat(None, vat_rate=1))
    assert FailFast(10).verdict((0, 0), own, FailureClass.PROCESSING)
    assert FailFast(10).verdict((0, 0), own, FailureClass.NETWORK) is None  # reclassified by the user
    probe = FailFast(10)
    for i, value in enumerate((1.5, 22.25, 3.0e-7)):
        verdict = probe.verdict((0, i), ValueError(f"bad amount {value}"), FailureClass.PROCESSING)
        assert (verdict is None) == (i < 2) and probe.probing == (i < 2)
    probe = FailFast(10)
    probe.verdict((0, 0), ValueError("bad"), FailureClass.PROCESSING)
    probe.verdict((0, 1), KeyError("other"), FailureClass.PROCESSING)
    assert not probe.probing and probe.verdict((0, 2), ValueError("bad"), FailureClass.PROCESSING) is None
    probe = FailFast(1)
    assert probe.verdict((0, 0), ValueError("bad"), FailureClass.PROCESSING)  # min(3, chunks)
    probe = FailFast(10, succeeded=True)  # an earlier try finished chunks
    assert [probe.verdict((0, i), ValueError("x"), FailureClass.PROCESSING) for i in range(3)] == [None] * 3
    assert error_signature(ValueError("row 17: 'Alice' has 3.5")) == error_signature(
        ValueError("row 9: 'Bo' has 1")
    )


def test_an_arrow_kernel_missing_for_the_column_type_fails_after_one_attempt(tmp_path):
    """pyarrow's ArrowNotImplementedError (a NotImplementedError) comes from the data's type: every chunk and
    every retry would fail alike, so the first attempt fails the job (#23)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (tmp_path / "src").mkdir()
    days = pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(40)], pa.date32())
    pq.write_table(pa.table({"day": days}), tmp_path / "src" / "d.parquet")
    attempts = Attempts(tmp_path / "attempts")

    def hours(table, ctx):
        attempts(ctx)
        return {"hours": pc.sum(pc.hour(table.column("day"))).as_py()}  # no hour kernel for date32

    hours.input_format = "arrow"
    with pytest.raises(DeterministicProcessorError) as info:
        run_batch_job(tmp_path / "src", hours, config=_config(batch_size=10), output_path=tmp_path / "out")
    assert info.value.error_type == "ArrowNotImplementedError" and "date32" in str(info.value)
    assert all(c.endswith(":1") for c in attempts.calls())
