"""BatchJobOperator through op.execute with a real (in-memory) context: no Airflow DB needed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.config import BatchConfig, BatchPriority
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.exceptions import ChunkFailedError
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator, _segment
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore, context


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return tmp_path / "src"


def _scale(batch, context, factor=1):
    return batch.assign(x=batch["x"] * factor)


def test_defaults_priority_and_processor_kwargs():
    with DAG("d", schedule=None):
        op = BatchJobOperator(
            task_id="t",
            source="/x",
            processor=_scale,
            priority=BatchPriority.HIGH,
            factor=3,
            pool="default_pool",
        )
    assert (op.priority_weight, op.weight_rule) == (100, "absolute")
    assert op.retries == 3 and op.retry_delay == timedelta(seconds=30) and op.retry_exponential_backoff == 2.0
    assert op.processor_kwargs == {"factor": 3} and op.pool == "default_pool"
    with DAG("d2", schedule=None, default_args={"retries": 0}):
        assert BatchJobOperator(task_id="t", source="/x", processor="count").retries == 0
    with pytest.raises(ValueError, match="priority or priority_weight"):
        BatchJobOperator(task_id="t2", source="/x", processor="count", priority="low", priority_weight=3)


def test_execute_writes_under_the_base_path_and_reports(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    store, ti = StateStore(), FakeTI()
    op = BatchJobOperator(
        task_id="job",
        source=str(source),
        processor="passthrough",
        config=BatchConfig(batch_size=250, checkpoint_interval=1, progress_interval_seconds=0),
    )
    summary = op.execute(context(ti, store))
    folder = tmp_path / "base" / "batch_dag" / "manual__2026-11-28T10%3A00%3A00%2B00%3A00" / "job" / "-1"
    assert summary["output_uri"] == str(folder) and (folder / "_SUCCESS").exists()
    assert len(json.dumps(summary)) < 48 * 1024
    assert summary["rows_out"] == 1400 and summary["chunks_total"] == 6
    assert store["progress"]["percent"] == 100.0 and store["progress"]["state"] == "completed"
    assert store["checkpoint"]["status"] == "succeeded"
    assert any(key == "checkpoint" for key, _ in ti.xcoms)  # the first checkpoint is pushed (then throttled)
    pd.testing.assert_frame_equal(read_output(folder)[["id"]], pd.DataFrame({"id": range(1400)}))


def test_try_two_resumes_what_try_one_left(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    ledger, flag = tmp_path / "ledger", tmp_path / "fail-once"
    flag.write_text("x")

    def fail_once(batch, ctx):
        if ctx.file_index == 1 and flag.exists():
            flag.unlink()
            raise RuntimeError("try 1 fails here")
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index}:{ctx.start_row}\n")
        return batch

    op = BatchJobOperator(
        task_id="job",
        source=str(source),
        processor=fail_once,
        config=BatchConfig(batch_size=200, checkpoint_interval=1, retry_attempts=0),
    )
    store = StateStore()
    with pytest.raises(ChunkFailedError):
        op.execute(context(FakeTI(try_number=1), store))
    assert store["checkpoint"]["chunks_done"] >= 1 and store["progress"]["state"] == "failed"
    first = ledger.read_text().splitlines()
    summary = op.execute(context(FakeTI(try_number=2), store))
    second = ledger.read_text().splitlines()[len(first) :]
    assert not set(first) & set(second)
    assert summary["chunks_resumed"] == len(first) and summary["rows_out"] == 1400
    # a clear after success runs fresh, as a new generation
    again = op.execute(context(FakeTI(try_number=3), store))
    assert again["generation"] == 2 and again["chunks_resumed"] == 0


def test_bad_input_fails_without_retry(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    op = BatchJobOperator(task_id="job", source=str(tmp_path / "missing"), processor="count")
    with pytest.raises(AirflowFailException, match="does not exist"):
        op.execute(context())
    op = BatchJobOperator(
        task_id="job", source=str(tmp_path), processor="count", config_overrides={"batchsize": 1}
    )
    with pytest.raises(BatchInputFailure, match="batchsize"):
        op.execute(context())


def test_templated_overrides_are_validated(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    op = BatchJobOperator(
        task_id="job", source=str(source), processor="count", config_overrides={"batch_size": "700"}
    )
    assert op.execute(context())["batch_size"] == 700
    assert "processor" not in BatchJobOperator.template_fields
    for field in BatchJobOperator.template_fields:
        assert hasattr(op, field)


def test_compaction_from_templated_overrides_and_a_bad_value_fails_without_retry(
    source, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    overrides = {"batch_size": "100", "compact_output": "true", "target_file_size_mb": "64"}
    op = BatchJobOperator(
        task_id="job", source=str(source), processor="passthrough", config_overrides=overrides
    )
    summary = op.execute(context())
    folder = Path(summary["output_uri"])
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert summary["chunks_total"] == 14 and manifest["parts"] == ["g0001/compacted/c000000.parquet"]
    assert summary["extra"]["compaction"] == manifest["compaction"]
    assert manifest["compaction"]["mode"] == "on" and manifest["compaction"]["target_file_size_mb"] == 64
    pd.testing.assert_frame_equal(read_output(folder)[["id"]], pd.DataFrame({"id": range(1400)}))
    bad = BatchJobOperator(
        task_id="bad",
        source=str(source),
        processor="passthrough",
        config_overrides={"target_file_size_mb": "0"},
    )
    with pytest.raises(BatchInputFailure, match="target_file_size_mb must be >= 1"):
        bad.execute(context())


@pytest.mark.parametrize("raw", ["a/b", "..", ".", "", "x%2Fy", "manual__2026-01-01T00:00:00+00:00", "é ü"])
def test_path_segments_are_one_to_one_and_safe(raw):
    seg = _segment(raw)
    assert "/" not in seg and seg not in ("", ".", "..")
    from urllib.parse import unquote

    assert unquote(seg) == raw or raw in ("", ".", "..")
    assert len({_segment(r) for r in ["a/b", "a%2Fb", "..", "%2E%2E"]}) == 4


def test_mapped_task_gets_its_own_folder(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    op = BatchJobOperator(task_id="job", source=str(source), processor="count")
    a = op.execute(context(FakeTI(map_index=0)))
    b = op.execute(context(FakeTI(map_index=1)))
    assert Path(a["output_uri"]).name == "0" and Path(b["output_uri"]).name == "1"


def test_on_kill_checkpoints_and_the_next_try_resumes(source, tmp_path, monkeypatch):
    from airflow_batch_provider.exceptions import JobCancelledError

    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    holder = {}

    def kill_after_three_chunks(event):
        if event.event_type == "checkpoint" and event.chunks_done >= 3:
            holder["op"].on_kill()

    op = BatchJobOperator(
        task_id="job",
        source=str(source),
        processor="passthrough",
        progress_callbacks=[kill_after_three_chunks],
        config=BatchConfig(batch_size=100, checkpoint_interval=1, max_concurrent_batches=1),
    )
    holder["op"] = op
    store = StateStore()
    with pytest.raises(JobCancelledError):
        op.execute(context(FakeTI(), store))
    assert store["progress"]["state"] == "failed" and store["checkpoint"]["chunks_done"] >= 3
    op.progress_callbacks = []
    summary = op.execute(context(FakeTI(try_number=2), store))
    assert summary["chunks_resumed"] >= 3 and summary["rows_out"] == 1400


def test_engine_reads_and_writes_through_object_storage_path(source, tmp_path):
    from airflow.sdk import ObjectStoragePath

    from airflow_batch_provider.engine import run_batch_job

    out = ObjectStoragePath(f"file://{tmp_path}/osp-out")
    result = run_batch_job(
        ObjectStoragePath(f"file://{source}"), "passthrough", config={"batch_size": 300}, output_path=out
    )
    assert result.rows_out == 1400 and (out / "_manifest.json").exists()
    assert read_output(out)["id"].tolist() == list(range(1400))
