"""The example DAGs are docs and tests: they import cleanly and each runs under dag.test()."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[2] / "dags"
SMALL = 20_000  # every example DAG with a `rows` param runs on this many demo rows in the tests


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dagbag_has_no_import_errors():
    bag = _bag()
    assert not bag.import_errors, bag.import_errors
    assert "example_batch_job" in bag.dags


@pytest.mark.parametrize("dag_id", sorted(p.stem for p in DAGS.glob("example_*.py")))
def test_example_dag_runs(airflow_db, dag_id):
    dag = _bag().dags[dag_id]
    dr = dag.test(run_conf={"rows": SMALL} if "rows" in dag.params else None)
    failed = [ti.task_id for ti in dr.get_task_instances() if ti.state != "success"]
    assert dr.state == "success" and not failed, failed


def test_demo_job_chains_outputs_through_xcom(airflow_db):
    dr = _bag().dags["example_batch_job"].test(run_conf={"rows": 5_000})
    enrich = dr.get_task_instance("enrich").xcom_pull(task_ids="enrich")
    summary = dr.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    assert enrich["rows_out"] == 5_000 and summary["report"]["rows"] == 5_000
    assert summary["report"]["nulls"]["amount_eur"] >= summary["report"]["nulls"]["amount"] > 0


def test_pipeline_chains_quality_features_anomaly(airflow_db):
    from airflow_batch_provider.engine import read_output

    dr = _bag().dags["example_pipeline"].test(run_conf={"rows": SMALL})
    xcom = {
        t: dr.get_task_instance(t).xcom_pull(task_ids=t)
        for t in ("check_quality", "build_features", "score_anomalies")
    }
    quality, features, anomalies = xcom["check_quality"], xcom["build_features"], xcom["score_anomalies"]
    assert quality["rows_in"] == SMALL and quality["rows_out"] == SMALL - quality["extra"]["rows_quarantined"]
    assert features["rows_in"] == quality["rows_out"] == anomalies["rows_in"] == anomalies["rows_out"]
    scored = read_output(anomalies["output_uri"], columns=["transaction_id", "anomaly_score", "is_anomaly"])
    assert len(scored) == quality["rows_out"] and scored["is_anomaly"].any()
