"""Unreadable CSV rows inside the planner's samples under ``dag.test()``: quarantined within
``max_skipped_fraction`` (the task succeeds, its XCom lists them), failed on try 1 past it (no Airflow retry)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.anomaly_detection import AnomalyDetectionOperator
from tests.integration.conftest import serialize
from tests.unit.engine.test_quarantine_rows import BAD, ROWS, expected_output, write_csv

pytestmark = pytest.mark.integration


def run(tmp_path: Path, name: str, fraction: float) -> tuple:
    source = tmp_path / "data.csv"
    ranges = write_csv(source)
    with DAG(name, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        AnomalyDetectionOperator(
            task_id="job",
            source=str(source),
            output_path=str(tmp_path / f"{name}-out"),
            features=["id", "amount"],
            sample_size=5 * ROWS,  # the fit sample holds every row, the bad ones too
            contamination=0.05,
            config={"batch_size": 64},
            recovery={"max_skipped_fraction": fraction},
            retries=2,
            retry_delay=0,
        )
    return serialize(dag).test(), ranges


def test_bad_rows_in_the_samples_are_quarantined_and_the_task_succeeds(airflow_db, tmp_path):
    dr, ranges = run(tmp_path, "quarantine_in_samples", 0.01)
    ti = dr.get_task_instance("job")
    assert dr.state == "success" and ti.try_number == 1
    summary = ti.xcom_pull(task_ids="job")
    assert summary["rows_in"] == ROWS and summary["rows_out"] == ROWS - len(BAD)
    assert summary["extra"]["rows_skipped"] == len(BAD) == summary["chunks_skipped"]
    out = Path(summary["output_uri"])
    entries = [json.loads((out / p).read_text()) for p in summary["extra"]["skipped"]]
    listed = sorted((e["start_row"], tuple(e["byte_range"])) for e in entries)
    assert listed == sorted(ranges.items())
    frame = read_output(summary["output_uri"])
    assert frame["id"].tolist() == expected_output()["id"].tolist()


def test_past_the_budget_the_task_fails_on_try_one_naming_the_rows(airflow_db, tmp_path):
    dr, ranges = run(tmp_path, "quarantine_over_budget", 0.001)  # 1 row may be skipped; 4 are bad
    ti = dr.get_task_instance("job")
    assert dr.state == "failed" and ti.state == "failed" and ti.try_number == 1  # retries=2 unused
    checkpoint = json.loads(
        (tmp_path / "quarantine_over_budget-out" / "g0001" / "_checkpoint.json").read_text()
    )
    assert checkpoint["status"] == "failed"
    assert (
        "hold unreadable records: data row" in checkpoint["error"]
        and "max_skipped_fraction" in checkpoint["error"]
    )
