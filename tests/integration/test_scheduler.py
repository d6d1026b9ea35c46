"""Smoke test against a real Airflow: api-server, scheduler, dag-processor and triggerer on 127.0.0.1.

Triggers the example DAG through the REST API, waits for success, reads the task log and the
task_state_store progress through the API, and watches progress change while a slow job runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _launcher():
    spec = importlib.util.spec_from_file_location("local_airflow", ROOT / "scripts" / "local_airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    home = tmp_path_factory.mktemp("scheduler-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "example_batch_job.py", dags)
    shutil.copy(ROOT / "tests" / "dags" / "slow_batch_job.py", dags)
    env = {"AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch")}
    with _launcher().LocalAirflow(home, dags, parallelism=4, extra_env=env) as af:
        yield af


def _events(log: list[dict]) -> list[str]:
    return [str(e.get("event", "")) for e in log]


def test_example_dag_through_the_rest_api(airflow):
    airflow.wait_for_dag("example_batch_job")
    run_id = airflow.trigger("example_batch_job", conf={"rows": 200_000})
    assert airflow.wait_for_run("example_batch_job", run_id, timeout=300) == "success"
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("example_batch_job", run_id)}
    assert states == {"demo_data": "success", "enrich": "success", "summarize": "success"}
    events = _events(airflow.task_log("example_batch_job", run_id, "enrich"))
    assert any("checkpoint:" in e and "% |" in e and "rows/s" in e for e in events), events[-20:]
    assert any(e.startswith("batch job done") for e in events)
    progress = airflow.state_store("example_batch_job", run_id, "enrich", "progress")["value"]
    assert progress["percent"] == 100.0 and progress["rows"] == 200_000 and progress["state"] == "completed"
    pointer = airflow.state_store("example_batch_job", run_id, "enrich", "checkpoint")["value"]
    assert pointer["status"] == "succeeded" and pointer["generation"] == 1

    # cleared by hand after success: the task runs fresh, as a new output generation in the same folder
    airflow.clear_task("example_batch_job", run_id, ["enrich"])
    assert airflow.wait_for_run("example_batch_job", run_id, timeout=300) == "success"
    pointer = airflow.state_store("example_batch_job", run_id, "enrich", "checkpoint")["value"]
    assert pointer["generation"] == 2 and pointer["output_uri"].endswith("/enrich/-1")
    manifest = json.loads((Path(pointer["output_uri"]) / "_manifest.json").read_text())
    assert manifest["generation"] == 2 and manifest["summary"]["rows_out"] == 200_000


def test_progress_is_visible_while_the_task_runs(airflow):
    airflow.wait_for_dag("slow_batch_job")
    run_id = airflow.trigger("slow_batch_job")
    seen: list[float] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        entry = airflow.state_store("slow_batch_job", run_id, "slow", "progress")
        if entry and entry["value"].get("state") in ("progress", "checkpoint", "started"):
            seen.append(entry["value"]["percent"])
        run = airflow.api("GET", f"/api/v2/dags/slow_batch_job/dagRuns/{_q(run_id)}").json()
        if run["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    assert run["state"] == "success"
    assert any(0 < p < 100 for p in seen), seen
    final = airflow.state_store("slow_batch_job", run_id, "slow", "progress")["value"]
    assert final["state"] == "completed" and final["chunks_done"] == final["chunks_total"] == 40


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
