"""BatchJobOperator under a real Airflow: dag.test() runs retries, XCom and task_state_store for real."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.batch import BatchJobOperator
from tests.conftest import sample_frame
from tests.integration.conftest import serialize

pytestmark = pytest.mark.integration


def test_retry_resumes_from_the_checkpoint(airflow_db, make_parquet, tmp_path):
    make_parquet(sample_frame(1000, seed=5), "a.parquet")
    make_parquet(sample_frame(600, seed=6, offset=1000), "b.parquet")
    ledger, flag = tmp_path / "ledger", tmp_path / "fail-once"
    flag.write_text("x")

    def fail_once(batch, ctx):
        if ctx.file_index == 1 and ctx.start_row == 200 and flag.exists():
            flag.unlink()
            raise RuntimeError("fails once, in try 1")
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index}:{ctx.start_row}:{ctx.stop_row}\n")
        return batch.assign(double=batch["x"] * 2)

    with DAG("batch_retry_resume", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        BatchJobOperator(
            task_id="job",
            source=str(tmp_path / "src"),
            processor=fail_once,
            retries=1,
            retry_delay=0,
            config=BatchConfig(
                batch_size=200, max_concurrent_batches=1, checkpoint_interval=1, retry_attempts=0
            ),
        )
    dr = serialize(dag).test()
    assert dr.state == "success"
    ti = dr.get_task_instance("job")
    assert ti.try_number == 2
    calls = ledger.read_text().splitlines()
    assert len(calls) == len(set(calls)) == 8  # every chunk exactly once across both tries
    summary = ti.xcom_pull(task_ids="job")
    assert summary["chunks_resumed"] == 6 and summary["chunks_processed"] == 2
    want = pd.concat(
        [pd.read_parquet(p) for p in sorted((tmp_path / "src").glob("*.parquet"))], ignore_index=True
    )
    pd.testing.assert_frame_equal(read_output(summary["output_uri"]), want.assign(double=want["x"] * 2))
    assert "/batch_retry_resume/" in summary["output_uri"] and summary["output_uri"].endswith("/job/-1")


def test_clear_after_success_runs_fresh(airflow_db, make_parquet, tmp_path):
    make_parquet(sample_frame(500, seed=7), "a.parquet")
    with DAG("batch_clear_fresh", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        BatchJobOperator(
            task_id="job",
            source=str(tmp_path / "src"),
            processor="passthrough",
            output_path=str(tmp_path / "out"),
            config=BatchConfig(batch_size=100),
        )
    serialize(dag)
    first = dag.test().get_task_instance("job").xcom_pull(task_ids="job")
    second = dag.test().get_task_instance("job").xcom_pull(task_ids="job")
    assert (first["generation"], second["generation"]) == (1, 2)
    assert second["chunks_resumed"] == 0 and second["chunks_processed"] == 5
    assert json.loads((tmp_path / "out" / "_manifest.json").read_text())["generation"] == 2
    assert not (Path(tmp_path / "out") / "g0001").exists()
