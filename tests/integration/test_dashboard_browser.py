"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real Airflow started here
on 127.0.0.1 (api-server, scheduler, DAG processor; tests/integration/browser.py), DAGs triggered through the
REST API and run by the scheduler:

* while a slow DAG runs, its job page shows the progress advancing (never 100% before the end) and the chunk
  map filling; after it ends, the page and the dashboard's history list show it with its state and rows, and
  its links open the task's extra-link pages;
* a two-pass job (data profiling: statistics, then processing) never shows 100% before it ends, in the page
  and in its recorded series, and shows its phase names while it runs;
* per-DAG authorization: ``bob`` (another team) sees none of these jobs and gets 403 for their pages' data;
  no token gets 401.

Nothing is timed: the test polls the page's DOM for conditions until a generous deadline. Screenshots go to
``$BATCH_PROVIDER_SCREENSHOTS`` (default: a pytest temporary folder; the path is printed).
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.monitoring import history
from airflow_batch_provider.monitoring.monitor import records_root
from tests.integration.browser import login, skip_without_browser, team_airflow

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

skip_without_browser()

SLOW, PROFILE = "dashboard_slow", "dashboard_profile"
ROWS = 40_000  # 40 chunks of 1,000 rows, two workers, 0.5 s each: about 10 s of processing
PROFILE_ROWS = 500_000  # two passes of 500 chunks: seconds of running to watch
DEADLINE_S = 600

DAG_FILE = """
import time
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator

FAST_BEATS = {"heartbeat_interval_s": 0.3, "sample_interval_s": 0.3}


def slow_double(batch, context, seconds):
    time.sleep(seconds)
    return batch.assign(double=batch["amount"] * 2)


with DAG(dag_id="dashboard_slow", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def data() -> str:
        from airflow_batch_provider.demo import ensure_demo_dataset
        from airflow_batch_provider.operators.batch import base_path

        return ensure_demo_dataset(f"{base_path()}/slow-data", rows=ROWS_HERE, files=2)

    BatchJobOperator(
        task_id="slow",
        source=data(),
        processor=slow_double,
        seconds=0.5,
        config=BatchConfig(
            batch_size=1_000, max_concurrent_batches=2, checkpoint_interval=1, progress_interval_seconds=0.3
        ),
        alert_rules=FAST_BEATS,
    )

with DAG(dag_id="dashboard_profile", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def profile_data() -> str:
        import numpy as np
        import pandas as pd

        from airflow_batch_provider.operators.batch import base_path

        rng = np.random.default_rng(3)
        n = PROFILE_ROWS_HERE
        frame = pd.DataFrame(
            {"id": np.arange(n), "amount": rng.lognormal(3, 1, n), "group": rng.choice(list("abcdef"), n)}
        )
        path = f"{base_path()}/profile-data.parquet"
        frame.to_parquet(path, row_group_size=1_000)
        return path

    DataProfilingOperator(
        task_id="profile",
        source=profile_data(),
        config=BatchConfig(batch_size=1_000, max_concurrent_batches=1, progress_interval_seconds=0.2),
        alert_rules=FAST_BEATS,
    )
""".replace("PROFILE_ROWS_HERE", str(PROFILE_ROWS)).replace("ROWS_HERE", str(ROWS))

#: what the job page shows, read from its DOM (data-* attributes the page sets from the JSON)
PAGE_JS = """() => {
  const one = (sel) => document.querySelector(sel);
  return {state: one("#state")?.dataset.state ?? null, pct: one("#pct") ? Number(one("#pct").dataset.pct) : null,
    phase: one("#phase")?.textContent ?? "", rows: one("#rows")?.dataset.rows ?? null,
    done: document.querySelectorAll("#chunks [data-state=done]").length,
    cells: document.querySelectorAll("#chunks .cell").length, error: one("#error")?.textContent ?? ""};
}"""
ENDED = ("success", "failed", "stopped")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    with team_airflow(tmp_path_factory.mktemp("dashboard-home"), {"dashboard.py": DAG_FILE}) as af:
        yield af


def job_url(airflow, job_id: str) -> str:
    return f"{airflow.base_url}/batch-provider/job?id={urllib.parse.quote(job_id, safe='')}"


def api_path(job_id: str) -> str:
    return "/batch-provider/api/jobs/" + "/".join(urllib.parse.quote(p, safe="") for p in job_id.split("/"))


def watch(page, screens, name: str, poll_ms: int = 250) -> list[dict]:
    """Poll the open job page until its job has ended; every observation, and screenshots of the first one
    with finished chunks while running (``<name>-running.png``) and of the end (``<name>-ended.png``)."""
    seen: list[dict] = []
    shot = False
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        now = page.evaluate(PAGE_JS)
        seen.append(now)
        if not shot and now["state"] == "running" and now["done"] > 0:
            page.screenshot(path=str(screens / f"{name}-running.png"), full_page=True)
            shot = True
        if now["state"] in ENDED:
            page.wait_for_function("() => document.querySelectorAll('#chunks .cell').length > 0")
            page.screenshot(path=str(screens / f"{name}-ended.png"), full_page=True)
            return seen
        page.wait_for_timeout(poll_ms)
    raise AssertionError(f"the job did not end within {DEADLINE_S}s; last seen: {seen[-3:]}")


def test_a_running_job_page_advances_then_the_job_is_in_the_history(airflow, browser, screens):
    airflow.wait_for_dag(SLOW)
    context, page, dialogs = login(browser, airflow, "alice")
    try:
        run_id = airflow.trigger(SLOW)  # POST /api/v2/dags/dashboard_slow/dagRuns; the scheduler runs it
        job_id = f"{SLOW}/{run_id}/slow/-1"
        page.goto(job_url(airflow, job_id))  # before the task starts: 404, retried until it runs
        seen = watch(page, screens, "slow")
        assert airflow.wait_for_run(SLOW, run_id, timeout=DEADLINE_S) == "success"

        running = [s for s in seen if s["state"] == "running"]
        pcts = [s["pct"] for s in running]
        assert len(set(pcts)) >= 3, f"progress did not advance on the page: {pcts}"
        assert pcts == sorted(pcts) and max(pcts[:-1]) < 100
        done = [s["done"] for s in running]
        assert done == sorted(done) and len({d for d in done if 0 < d < ROWS // 1000}) >= 2, done
        assert {s["cells"] for s in running if s["cells"]} == {ROWS // 1000}  # one cell per chunk

        final = seen[-1]
        assert (final["state"], final["pct"], final["rows"]) == ("success", 100, str(ROWS))
        assert final["done"] == final["cells"] == ROWS // 1000
        assert int(page.locator("#charts [data-chart=progress]").get_attribute("data-points")) >= 3
        for chart in ("rate", "memory", "cpu", "batch"):
            assert page.locator(f"#charts [data-chart={chart}] polyline").count() >= 1, chart
        run = urllib.parse.quote(run_id, safe="")
        assert page.locator("a[data-link=task_instance]").get_attribute("href") == (
            f"/dags/{SLOW}/runs/{run}/tasks/slow"  # the Airflow 3.3 UI's task instance route
        )
        with page.expect_navigation():
            page.locator("a[data-link=job]").click()
        assert page.locator("[data-status]").inner_text() == "succeeded"

        page.goto(f"{airflow.base_url}/batch-provider/dashboard", wait_until="networkidle")
        row = page.locator(f'#jobs tr[data-job="{job_id}"]')
        row.wait_for(timeout=60_000)
        assert (row.get_attribute("data-state"), row.get_attribute("data-rows")) == ("success", str(ROWS))
        assert row.locator("a").first.get_attribute("href") == (
            f"job?id={urllib.parse.quote(job_id, safe='')}&try=1"
        )
        page.screenshot(path=str(screens / "dashboard-history.png"), full_page=True)
        page.select_option("#state", "failed")  # filtered out
        page.wait_for_function(f"() => !document.querySelector('#jobs tr[data-job=\"{job_id}\"]')")
        page.select_option("#state", "success")
        page.select_option("#dag", SLOW)
        row.wait_for(timeout=60_000)
        assert page.locator("#jobs tr[data-job]").count() == 1

        # markup in what a record holds (ids, error texts) is shown as text, never run
        hostile = f"{SLOW}/<img src=x onerror=alert(1)>/t/-1"
        history.write_job_record(
            records_root(airflow.env["AIRFLOW__BATCH_PROVIDER__BASE_PATH"]),
            {"job_id": hostile, "dag_id": SLOW, "run_id": "<img src=x onerror=alert(1)>", "task_id": "t",
             "map_index": -1, "state": "failed", "started_at": time.time() - 5, "ended_at": time.time(),
             "error_type": "ValueError", "error": "<script>alert(2)</script>"},
            [{"t": time.time(), "pct": 5.0, "phase": "<b>x</b>"}],
        )  # fmt: skip
        root = records_root(airflow.env["AIRFLOW__BATCH_PROVIDER__BASE_PATH"])
        FailureRecords(root).add(
            {"job_id": hostile, "class": "network", "error_type": "ConnectionError", "chunk": [0, 0, 10],
             "error": "<svg onload=alert(3)>", "strategy": "retry", "recovered": False, "ts": time.time() - 2}
        )  # fmt: skip
        page.goto(job_url(airflow, hostile))
        page.wait_for_function("() => document.querySelector('#state')?.dataset.state === 'failed'")
        assert "<script>alert(2)</script>" in page.locator("#summary").inner_text()
        # its failure: on the timeline, in the table, by class, and its chunk in the map
        assert page.locator("#timeline circle[data-event=failure]").count() == 1
        assert "<svg onload=alert(3)>" in page.locator("#events tr[data-event=failure]").inner_text()
        assert page.locator("#classes [data-class=network]").inner_text() == "network 1"
        assert page.locator("#chunks [data-state=failed]").count() == 1
        assert page.locator("#summary img, #summary script, #charts b").count() == 0
        page.goto(f"{airflow.base_url}/batch-provider/dashboard?state=failed", wait_until="networkidle")
        page.locator("#jobs tr[data-job]").first.wait_for(timeout=60_000)
        states = page.locator("#jobs tr[data-job]").evaluate_all("(rows) => rows.map((r) => r.dataset.state)")
        assert states == ["failed"]  # the URL's filter; the slow job (success) is not listed
        assert page.locator("#jobs img").count() == 0 and dialogs == []
        page.screenshot(path=str(screens / "dashboard-escaped.png"), full_page=True)
    finally:
        context.close()

    context, page, _ = login(browser, airflow, "bob")  # team beta: not this DAG's team
    try:
        listed = page.request.get(f"{airflow.base_url}/batch-provider/api/jobs")
        assert listed.status == 200 and listed.json()["jobs"] == []
        assert page.request.get(airflow.base_url + api_path(job_id)).status == 403
        page.goto(job_url(airflow, job_id))
        page.wait_for_function("() => document.querySelector('#error').textContent.includes('403')")
        page.screenshot(path=str(screens / "bob-job-403.png"))
    finally:
        context.close()
    anonymous = browser.new_context()
    try:
        assert anonymous.request.get(airflow.base_url + api_path(job_id)).status == 401
    finally:
        anonymous.close()


def test_a_two_pass_job_never_shows_100_percent_before_it_ends(airflow, browser, screens):
    airflow.wait_for_dag(PROFILE)
    context, page, dialogs = login(browser, airflow, "alice")
    try:
        run_id = airflow.trigger(PROFILE)
        job_id = f"{PROFILE}/{run_id}/profile/-1"
        page.goto(job_url(airflow, job_id))
        seen = watch(page, screens, "profile", poll_ms=100)
        assert airflow.wait_for_run(PROFILE, run_id, timeout=DEADLINE_S) == "success"
        running = [s for s in seen if s["state"] == "running"]
        assert running, "the page never saw the job running"
        # 100% comes with the job's own "completed" event, the last heartbeat before its record
        assert all(s["pct"] < 100 for s in running[:-1]), [s["pct"] for s in running]
        assert {s["phase"] for s in running} <= {"statistics 1/2", "processing 2/2"}
        assert all(s["pct"] <= 50 for s in running if s["phase"] == "statistics 1/2")  # its equal share
        assert seen[-1]["state"] == "success" and seen[-1]["pct"] == 100 and dialogs == []

        data = page.request.get(airflow.base_url + api_path(job_id)).json()
        series = data["series"]
        pcts = [p["pct"] for p in series if p["pct"] is not None]
        assert (
            pcts == sorted(pcts) and pcts[-1] == 100 and pcts.count(100) <= 2
        )  # the end alone (and its beat)
        assert {"statistics", "processing"} <= {p["phase"] for p in series}
        assert all(p["pct"] <= 50 for p in series if p["phase"] == "statistics" and p["pct"] is not None)
        assert data["job"]["rows_in"] == PROFILE_ROWS and data["job"]["state"] == "success"
    finally:
        context.close()
