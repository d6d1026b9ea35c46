"""A processor bug under a real Airflow (dag.test()): one try, no retries, one failure record."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.cli import main
from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine.records import get_failure_statistics
from airflow_batch_provider.operators.batch import BatchJobOperator
from tests.conftest import sample_frame
from tests.integration.conftest import serialize

pytestmark = pytest.mark.integration


def add_vat(frame, vat_rates):
    return frame.assign(vat=frame["x"] * vat_rates["EUR"])


def enrich(batch, context):
    return add_vat(batch, vat_rate={"EUR": 0.2})  # the bug: the helper's keyword is vat_rates


def enrich_with(batch, context, vat_rates):
    return add_vat(batch, vat_rates=vat_rates)


def test_a_type_error_in_the_processor_fails_the_task_once(
    airflow_db, make_parquet, tmp_path, monkeypatch, capsys
):
    base = tmp_path / "base"
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(base))
    make_parquet(sample_frame(1000, seed=5), "a.parquet")
    failed, retried = tmp_path / "failed", tmp_path / "retried"

    def on_failure(context):
        failed.write_text(f"{context['ti'].try_number} {context['exception']}")

    def on_retry(context):
        retried.write_text(str(context["exception"]))

    with DAG("batch_fail_fast", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        BatchJobOperator(
            task_id="job",
            source=str(tmp_path / "src"),
            processor=enrich,
            retries=3,
            retry_delay=0,
            config=BatchConfig(batch_size=100, max_concurrent_batches=2),
            on_failure_callback=on_failure,
            on_retry_callback=on_retry,
        )
    dr = serialize(dag).test()
    ti = dr.get_task_instance("job")
    assert dr.state == "failed" and ti.state == "failed" and ti.try_number == 1  # not up_for_retry
    assert not retried.exists()
    try_number, message = failed.read_text().split(" ", 1)
    assert try_number == "1"
    assert "processor tests.integration.test_fail_fast.enrich" in message  # the processor
    assert "a.parquet rows 0-100" in message or "a.parquet rows 100-200" in message  # the chunk
    assert "unexpected keyword argument 'vat_rate'" in message  # the original message
    log = capsys.readouterr()  # dag.test prints the task log
    assert "unexpected keyword argument 'vat_rate'" in log.out + log.err

    stats = get_failure_statistics(base / "_records", hours=None)
    assert stats["total"] == 1 and stats["by_class"] == {"processing": 1}, stats
    assert main(["failures", "--base", str(base), "--json", "--hours", "100000"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["statistics"]["total"] == 1 and payload["statistics"]["by_strategy"] == {"fail_fast": 1}
    (record,) = payload["recent"]
    assert record["dag_id"] == "batch_fail_fast" and record["try_number"] == 1 and record["attempt"] == 1


def test_an_unknown_keyword_of_a_callable_fails_try_one_before_any_chunk(
    airflow_db, make_parquet, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    make_parquet(sample_frame(300, seed=5), "a.parquet")
    with DAG("batch_unknown_keyword", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        BatchJobOperator(
            task_id="job",
            source=str(tmp_path / "src"),
            processor=enrich_with,
            vat_rate={"EUR": 0.2},  # enrich_with takes vat_rates
            retries=3,
            retry_delay=0,
            output_path=str(tmp_path / "out"),
        )
    dr = serialize(dag).test()
    ti = dr.get_task_instance("job")
    assert dr.state == "failed" and ti.state == "failed" and ti.try_number == 1
    assert not (tmp_path / "out").exists()  # refused before the plan: no chunk ran
