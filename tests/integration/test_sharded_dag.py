"""Sharded jobs under a real Airflow (dag.test()): plan -> mapped shards -> merge equals one task; a failed
shard retries and resumes alone; the plan never maps more than [core] max_map_length shards."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.shards import ShardedBatchJob
from tests.conftest import sample_frame
from tests.integration.conftest import serialize
from tests.unit.processors.test_conformance import _strip

pytestmark = pytest.mark.integration
CONFIG = BatchConfig(batch_size=150, max_concurrent_batches=1, checkpoint_interval=1)
RULES = [
    {"type": "not_null", "column": "x"},
    {"type": "allowed_values", "column": "cat", "values": ["a", "b", "c"]},
    {"type": "unique", "column": "dup"},
]
PROCESSORS = {
    "data_profiling": {"bins": 8, "top_k": 3},
    "data_quality": {"rules": RULES},
    "feature_engineering": {"scale": {"x": "standard"}, "encode": {"cat": "onehot"}, "impute": {"x": "mean"}},
}


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(1000, seed=11), "a.parquet")
    make_parquet(sample_frame(650, seed=12, offset=1000), "b.parquet")
    return str(tmp_path / "src")


def _frame(source):
    return pd.concat([pd.read_parquet(p) for p in sorted(Path(source).glob("*.parquet"))], ignore_index=True)


def _mapped(dr, task_id):
    return sorted(
        (ti for ti in dr.get_task_instances() if ti.task_id == task_id), key=lambda ti: ti.map_index
    )


@pytest.mark.parametrize("processor", sorted(PROCESSORS))
def test_sharded_result_equals_the_single_task(airflow_db, source, processor):
    params = PROCESSORS[processor]
    with DAG(f"sharded_equals_{processor}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        single = BatchJobOperator(
            task_id="single", source=source, processor=processor, config=CONFIG, **params
        )
        job = ShardedBatchJob(
            "sharded", source=source, processor=processor, shards=3, config=CONFIG, **params
        )
        check = BatchJobOperator(task_id="downstream", source=job.output["output_uri"], processor="count")
        job >> check
        single >> job  # one at a time: the machine is small
    dr = serialize(dag).test()
    assert dr.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in dr.get_task_instances()]
    shards = _mapped(dr, "sharded.shard")
    assert [ti.map_index for ti in shards] == [0, 1, 2] and all(ti.state == "success" for ti in shards)
    want = dr.get_task_instance("single").xcom_pull(task_ids="single")
    got = dr.get_task_instance("sharded.merge").xcom_pull(task_ids="sharded.merge")
    assert set(want) <= set(got) and got["extra"]["shards"] == 3
    assert (got["rows_in"], got["rows_out"], got["chunks_total"]) == (
        want["rows_in"],
        want["rows_out"],
        want["chunks_total"],
    )
    assert got["chunks_processed"] == want["chunks_processed"] == want["chunks_total"]
    assert _strip(got["report"]) == _strip(want["report"])  # floats to 12 significant digits
    ours, ref = read_output(got["output_uri"]), read_output(want["output_uri"])
    if ref is None:
        assert ours is None
    else:
        pd.testing.assert_frame_equal(ours, ref, check_exact=False, rtol=1e-12)
    if processor == "data_quality":
        quarantined = read_output(got["output_uri"], quarantine=True)
        assert quarantined is None or len(quarantined) == want["extra"].get(
            "rows_quarantined", len(quarantined)
        )
    downstream = dr.get_task_instance("downstream").xcom_pull(task_ids="downstream")
    assert downstream["rows_in"] == got["rows_out"]
    runs = got["shard_runs"]
    assert [r["shard"] for r in runs] == [0, 1, 2] and all(r["host"] and r["pid"] for r in runs)


def test_a_failed_shard_retries_and_resumes_alone(airflow_db, source, tmp_path):
    ledger, flag = tmp_path / "ledger", tmp_path / "fail-once"
    flag.write_text("x")

    def fail_once(batch, ctx):
        if ctx.file_index == 1 and ctx.start_row == 300 and flag.exists():
            flag.unlink()
            raise RuntimeError("injected: shard fails once, in try 1")
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index}:{ctx.start_row}:{ctx.stop_row}\n")
        return batch.assign(double=batch["x"] * 2)

    with DAG("sharded_retry_alone", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ShardedBatchJob(
            "job",
            source=source,
            processor=fail_once,
            shards=3,
            retries=1,
            retry_delay=0,
            config=BatchConfig(
                batch_size=150, max_concurrent_batches=1, checkpoint_interval=1, retry_attempts=0
            ),
        )
    dr = serialize(dag).test()
    assert dr.state == "success"
    shards = _mapped(dr, "job.shard")
    assert [ti.try_number for ti in shards] == [1, 1, 2]  # (1, 300) is in the last shard; only it ran again
    summaries = [ti.xcom_pull(task_ids="job.shard", map_indexes=ti.map_index) for ti in shards]
    last = summaries[2]
    assert last["try_number"] == 2 and last["chunks_resumed"] == 1 and last["chunks_processed"] == 3
    assert all(s["chunks_resumed"] == 0 for s in summaries[:2])
    calls = ledger.read_text().splitlines()
    assert len(calls) == len(set(calls)) == 12  # every chunk exactly once across both tries
    assert (dr.get_task_instance("job.plan").try_number, dr.get_task_instance("job.merge").try_number) == (
        1,
        1,
    )
    merged = dr.get_task_instance("job.merge").xcom_pull(task_ids="job.merge")
    want = _frame(source)
    pd.testing.assert_frame_equal(read_output(merged["output_uri"]), want.assign(double=want["x"] * 2))
    assert merged["chunks_resumed"] == 1 and merged["chunks_processed"] == 11


def test_plan_is_capped_by_max_map_length(airflow_db, source, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    with DAG("sharded_capped", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ShardedBatchJob("job", source=source, processor="count", shards=6, config=CONFIG)
    dr = serialize(dag).test()
    assert dr.state == "success"
    assert [ti.map_index for ti in _mapped(dr, "job.shard")] == [0, 1]
    merged = dr.get_task_instance("job.merge").xcom_pull(task_ids="job.merge")
    assert merged["extra"]["shards"] == 2 and merged["rows_in"] == 1650 and merged["report"]["rows"] == 1650


def test_example_dag_fans_out_and_reads_the_merged_output(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).resolve().parents[2] / "dags"
    dag = DagBag(dag_folder=str(dags / "example_sharded_job.py")).dags["example_sharded_job"]
    dr = dag.test(run_conf={"rows": 20_000})
    assert dr.state == "success"
    assert [ti.map_index for ti in _mapped(dr, "profile.shard")] == [0, 1, 2, 3]
    merged = dr.get_task_instance("profile.merge").xcom_pull(task_ids="profile.merge")
    report = dr.get_task_instance("report").xcom_pull(task_ids="report")
    assert report["output_uri"] == merged["output_uri"] and "/example_sharded_job/" in report["output_uri"]
    assert report["rows"] == merged["rows_in"] == 20_000 and report["shards"] == 4
    assert "amount" in report["columns"] and len(merged["shard_runs"]) == 4
