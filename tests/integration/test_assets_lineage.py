"""Assets and OpenLineage under a real Airflow (api-server, scheduler, dag-processor, triggerer on 127.0.0.1,
SQLite, LocalExecutor), with the example DAGs ``example_assets`` and ``example_assets_consumer``:

- the quality job's outlet event triggers the asset-scheduled consumer DAG, whose task reads the run's facts from
  ``triggering_asset_events``; the REST API (the Assets view) lists both assets, their producing tasks and the
  events with their extra;
- the OpenLineage provider's listener, with a file transport set through ``[openlineage] transport``, writes one
  COMPLETE event per batch job with one input and one output dataset, whose facets equal ``_report.json``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PRODUCER, CONSUMER = "example_assets", "example_assets_consumer"
ROWS = 20_000


def _launcher():
    spec = importlib.util.spec_from_file_location("local_airflow", ROOT / "scripts" / "local_airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("assets-home")


@pytest.fixture(scope="module")
def airflow(home):
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "example_assets.py", dags)
    shutil.copy(ROOT / "tests" / "dags" / "partitioned_asset_jobs.py", dags)
    (home / "openlineage").mkdir()
    transport = {"type": "file", "log_file_path": str(home / "openlineage" / "events.jsonl"), "append": True}
    env = {
        "AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "batch-tests",
        # the listener emits from a forked child the task waits for: no give-up on a loaded CI machine
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "600",
    }
    with _launcher().LocalAirflow(home, dags, parallelism=4, extra_env=env) as af:
        yield af


@pytest.fixture(scope="module")
def produced(airflow):
    """One producer run (the consumer unpaused first); returns its run id."""
    airflow.wait_for_dag(PRODUCER)
    airflow.wait_for_dag(CONSUMER)
    r = airflow.api("PATCH", f"/api/v2/dags/{CONSUMER}", json={"is_paused": False})
    assert r.status_code == 200, r.text
    run_id = airflow.trigger(PRODUCER, conf={"rows": ROWS})
    assert airflow.wait_for_run(PRODUCER, run_id, timeout=400) == "success"
    return run_id


def _xcom(af, dag_id, run_id, task_id, key="return_value"):
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    r = af.api("GET", path)
    assert r.status_code == 200, f"GET {path} -> HTTP {r.status_code}: {r.text[:1000]}"
    return r.json()["value"]


def _consumer_run(af, timeout=240):
    """The consumer's first run, once it ended (the scheduler creates it from the asset event)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = af.api("GET", f"/api/v2/dags/{CONSUMER}/dagRuns").json()["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            return done[0]
        assert time.monotonic() < deadline, f"no finished {CONSUMER} run after {timeout}s: {runs}"
        time.sleep(1.0)


def _folder(home, run_id, task_id):
    return home / "batch" / PRODUCER / quote(run_id, safe="") / task_id / "-1"


def test_quality_outlet_triggers_the_asset_scheduled_dag_with_the_runs_facts(airflow, produced, home):
    run = _consumer_run(airflow)
    assert run["state"] == "success" and run["run_type"] == "asset_triggered", run
    facts = _xcom(airflow, CONSUMER, run["dag_run_id"], "read_quality_facts")
    assert len(facts) == 1, facts
    fact = facts[0]
    folder = _folder(home, produced, "check_quality")
    report = json.loads((folder / "_report.json").read_text())
    assert fact["source_run_id"] == produced
    assert fact["output_uri"] == str(folder) and fact["report_uri"] == f"{folder}/_report.json"
    assert fact["rows_in"] == report["rows"] == ROWS
    assert fact["quality_score"] == report["score"] and fact["rules_failed"] == report["rules_failed"]
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert fact["rows_quarantined"] == manifest["summary"]["rows_quarantined"]
    assert (
        fact["rows_out"] == manifest["summary"]["rows_out"] and fact["generation"] == manifest["generation"]
    )
    assert {"transaction_id", "amount", "currency"} <= {f["name"] for f in fact["schema"]}


def test_the_assets_view_lists_both_outputs_and_their_events(airflow, produced, home):
    base = f"file://{home / 'batch' / PRODUCER}"
    assets = airflow.api("GET", "/api/v2/assets", params={"uri_pattern": base}).json()["assets"]
    by_uri = {a["uri"]: a for a in assets}
    assert set(by_uri) == {f"{base}/profile", f"{base}/check_quality"}, list(by_uri)
    for task_id in ("profile", "check_quality"):
        producing = by_uri[f"{base}/{task_id}"]["producing_tasks"]
        assert [(t["dag_id"], t["task_id"]) for t in producing] == [(PRODUCER, task_id)]
    assert [d["dag_id"] for d in by_uri[f"{base}/check_quality"]["scheduled_dags"]] == [CONSUMER]

    events = airflow.api("GET", "/api/v2/assets/events", params={"source_dag_id": PRODUCER}).json()
    by_task = {e["source_task_id"]: e for e in events["asset_events"]}
    assert set(by_task) == {"profile", "check_quality"}
    profile = by_task["profile"]
    assert profile["uri"] == f"{base}/profile" and profile["source_run_id"] == produced
    assert profile["extra"]["output_uri"] == str(_folder(home, produced, "profile"))
    assert profile["extra"]["rows_in"] == ROWS and profile["extra"]["schema_of"] == "source"
    assert [r["dag_id"] for r in by_task["check_quality"]["created_dagruns"]] == [CONSUMER]


def _lineage_events(home, jobs, timeout=120):
    """The COMPLETE events of ``jobs`` in the file transport's output (written by the listener's child)."""
    path = home / "openlineage" / "events.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        events = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.exists()
            else []
        )
        complete = {e["job"]["name"]: e for e in events if e.get("eventType") == "COMPLETE"}
        if set(jobs) <= set(complete):
            return complete
        assert time.monotonic() < deadline, f"no COMPLETE event for {jobs} in {path}: {sorted(complete)}"
        time.sleep(1.0)


def test_openlineage_events_carry_one_input_one_output_and_the_reports(airflow, produced, home):
    jobs = (f"{PRODUCER}.profile", f"{PRODUCER}.check_quality")
    complete = _lineage_events(home, jobs)
    source = _xcom(airflow, PRODUCER, produced, "demo_data")
    base = home / "batch" / PRODUCER

    profile_event = complete[f"{PRODUCER}.profile"]
    assert profile_event["job"]["namespace"] == "batch-tests"
    assert len(profile_event["inputs"]) == 1 and len(profile_event["outputs"]) == 1  # not one per chunk file
    source_ds, output = profile_event["inputs"][0], profile_event["outputs"][0]
    assert (source_ds["namespace"], source_ds["name"]) == ("file", source)
    assert (output["namespace"], output["name"]) == ("file", f"{base}/profile")
    folder = _folder(home, produced, "profile")
    assert output["facets"]["version"]["datasetVersion"] == str(folder)
    report = json.loads((folder / "_report.json").read_text())
    metrics = source_ds["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == report["rows"] == ROWS
    assert set(metrics["columnMetrics"]) == set(report["columns"])
    for name, col in report["columns"].items():
        got = metrics["columnMetrics"][name]
        assert (got["nullCount"], got["distinctCount"]) == (col["nulls"], col["distinct"]), name
        if col["type"] in ("integer", "float"):
            assert (got["min"], got["max"], got["quantiles"]) == (col["min"], col["max"], col["quantiles"]), (
                name
            )
    assert {f["name"] for f in source_ds["facets"]["schema"]["fields"]} == set(report["columns"])

    quality_event = complete[f"{PRODUCER}.check_quality"]
    assert len(quality_event["inputs"]) == 1 and len(quality_event["outputs"]) == 1
    source_ds, output = quality_event["inputs"][0], quality_event["outputs"][0]
    assert source_ds["name"] == source and output["name"] == f"{base}/check_quality"
    folder = _folder(home, produced, "check_quality")
    report = json.loads((folder / "_report.json").read_text())
    manifest = json.loads((folder / "_manifest.json").read_text())
    assertions = source_ds["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert [(a["assertion"], a["success"], a.get("column")) for a in assertions] == [
        (r["type"], r["passed"], r["columns"][0] if len(r["columns"]) == 1 else None) for r in report["rules"]
    ]
    assert [a["params"]["failed"] for a in assertions] == [r["failed"] for r in report["rules"]]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == manifest["summary"]["rows_out"]
    assert output["outputFacets"]["outputStatistics"]["fileCount"] == len(manifest["parts"])


def test_asset_partitions_give_one_consumer_run_per_key(airflow, home):
    """``asset_partitions`` renders per run; a ``PartitionedAssetTimetable`` DAG gets one run per key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = home / "regional-src" / "part.parquet"
    source.parent.mkdir()
    pq.write_table(pa.table({"region": ["eu", "us", "eu"], "n": [1, 2, 3]}), source)
    airflow.wait_for_dag("partitioned_producer")
    airflow.wait_for_dag("partitioned_consumer")
    r = airflow.api("PATCH", "/api/v2/dags/partitioned_consumer", json={"is_paused": False})
    assert r.status_code == 200, r.text
    run_id = airflow.trigger("partitioned_producer", conf={"source": str(source.parent), "day": "2026-06-01"})
    assert airflow.wait_for_run("partitioned_producer", run_id, timeout=300) == "success"

    deadline = time.monotonic() + 240
    while True:
        runs = airflow.api("GET", "/api/v2/dags/partitioned_consumer/dagRuns").json()["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if len(done) >= 2:
            break
        assert time.monotonic() < deadline, f"consumer runs after 240s: {runs}"
        time.sleep(1.0)
    assert [r["state"] for r in done] == ["success", "success"], done
    results = sorted(
        (_xcom(airflow, "partitioned_consumer", r["dag_run_id"], "read_partition") for r in done),
        key=lambda v: v["partition_key"],
    )
    assert [v["partition_key"] for v in results] == ["eu|2026-06-01", "us|2026-06-01"]
    for value in results:
        assert [e["partition_key"] for e in value["events"]] == [value["partition_key"]]
        assert value["events"][0]["rows_in"] == 3 and value["events"][0]["output_uri"].endswith("/count/-1")
