"""The HTML reports in a real browser (Debian's chromium driven by Playwright) against a real Airflow started
here on 127.0.0.1 (scripts/local_airflow.py): a DAG is triggered through the REST API; when it ends, a user logs
in through Airflow's login page, opens the task's Details tab, clicks the "Report" extra link and the report's
DOM shows every column / rule with the counts of ``_report.json``; the "Output" and "Batch job" links open;
a user whose team does not own the DAG gets 403 from the same URL, and no token gets 401.

Per-DAG authorization is Airflow's SimpleAuthManager in multi-team mode: the DAG bundle belongs to team
``alpha``; ``alice`` (viewer, team alpha) may read its runs, ``bob`` (viewer, team beta) may not.

Skipped with a reason when Playwright or chromium is missing (``make test`` on a machine without a browser);
``.ci/run`` installs chromium when it can and then requires these tests. Screenshots go to
``$BATCH_PROVIDER_SCREENSHOTS`` (default: a pytest temporary folder).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from tests.integration.browser import login, skip_without_browser, team_airflow

DAG_ID = "report_links"

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

skip_without_browser()

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.data_quality import DataQualityOperator

RULES = [
    {"type": "not_null", "column": "amount", "threshold": 0.2},
    {"type": "min", "column": "amount", "value": 0},
    {"type": "allowed_values", "column": "<script>alert(1)</script>", "values": ["a", "b"]},
    {"type": "unique", "column": "customer", "severity": "warning", "name": "one row per customer"},
]

with DAG(dag_id="report_links", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def data() -> str:
        import numpy as np
        import pandas as pd

        from airflow_batch_provider.operators.batch import base_path

        rng = np.random.default_rng(5)
        n = 5_000
        frame = pd.DataFrame(
            {
                "id": np.arange(n),
                "amount": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(3, 1.5, n) - 2),
                "customer": rng.integers(0, 4_000, n),
                "<script>alert(1)</script>": rng.choice(["a", "b", "c"], n),
                "constant": "same",
            }
        )
        path = f"{base_path()}/report-links-data.parquet"
        frame.to_parquet(path)
        return path

    src = data()
    DataProfilingOperator(task_id="profile", source=src, config=BatchConfig(batch_size=1_000), bins=20)
    DataQualityOperator(task_id="quality", source=src, rules=RULES, config=BatchConfig(batch_size=1_000))
"""


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    with team_airflow(tmp_path_factory.mktemp("browser-home"), {"report_links.py": DAG_FILE}) as af:
        yield af


@pytest.fixture(scope="module")
def finished_run(airflow) -> str:
    airflow.wait_for_dag(DAG_ID)
    run_id = airflow.trigger(DAG_ID)  # POST /api/v2/dags/report_links/dagRuns
    assert airflow.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
    return run_id


def report_of(airflow, run_id: str, task_id: str) -> dict:
    from airflow_batch_provider.operators.batch import _segment

    folder = Path(airflow.env["AIRFLOW__BATCH_PROVIDER__BASE_PATH"]).joinpath(
        *(_segment(v) for v in (DAG_ID, run_id, task_id, -1))
    )
    return json.loads((folder / "_report.json").read_text())


def open_extra_link(page, airflow, run_id: str, task_id: str, name: str, screens: Path | None = None) -> str:
    """Open the task instance's Details tab in the Airflow UI and click one of its extra links."""
    run = urllib.parse.quote(run_id, safe="")
    page.goto(f"{airflow.base_url}/dags/{DAG_ID}/runs/{run}/tasks/{task_id}", wait_until="networkidle")
    page.get_by_text("Details", exact=True).click()  # the task instance's tab (a link in the 3.3 UI)
    link = page.get_by_role("link", name=name, exact=True)
    link.wait_for(timeout=60_000)
    if screens is not None:
        page.screenshot(path=str(screens / f"airflow-{task_id}-extra-links.png"))
    href = link.get_attribute("href")
    assert href == f"/batch-provider/jobs/{DAG_ID}/{run}/{task_id}/-1/{name.lower().replace('batch ', '')}"
    with page.expect_navigation():
        link.click()
    return href


ROWS_JS = """(rows) => rows.map((r) => ({
  name: r.dataset.column ?? r.dataset.rule, nulls: r.dataset.nulls, distinct: r.dataset.distinct,
  failed: r.dataset.failed, evaluated: r.dataset.evaluated, cells: [...r.cells].map((c) => c.innerText.trim())}))"""


def test_the_report_links_open_reports_whose_dom_matches_the_json(airflow, finished_run, browser, screens):
    context, page, dialogs = login(browser, airflow, "alice")
    try:
        open_extra_link(page, airflow, finished_run, "profile", "Report", screens)
        assert page.title() == f"{DAG_ID} / profile"
        page.screenshot(path=str(screens / "profile-report.png"), full_page=True)
        profile = report_of(airflow, finished_run, "profile")
        rows = page.locator("#columns tr[data-column]").evaluate_all(ROWS_JS)
        assert [r["name"] for r in rows] == list(profile["columns"])  # every column, the report's order
        for row in rows:
            col = profile["columns"][row["name"]]
            assert (row["nulls"], row["distinct"]) == (str(col["nulls"]), str(col["distinct"]))
            assert row["cells"][1] == row["name"] and row["cells"][3] == f"{col['count']:,}"
            assert row["cells"][5] == f"{col['distinct']:,}"
        assert rows[0]["name"] == "<script>alert(1)</script>" and dialogs == []  # shown as text, never run
        assert page.locator("section[data-column-detail]").count() == len(profile["columns"])
        assert page.locator('figure[data-scale="quantile"], figure[data-scale="log"]').count() >= 1

        open_extra_link(page, airflow, finished_run, "quality", "Report", screens)
        page.screenshot(path=str(screens / "quality-report.png"), full_page=True)
        quality = report_of(airflow, finished_run, "quality")
        rules = page.locator("#rules tr[data-rule]").evaluate_all(ROWS_JS)
        assert [r["name"] for r in rules] == [r["name"] for r in quality["rules"]]
        for row, rule in zip(rules, quality["rules"], strict=True):
            assert (row["failed"], row["evaluated"]) == (str(rule["failed"]), str(rule["evaluated"]))
            assert row["cells"][7] == f"{rule['failed']:,}"
            assert row["cells"][5] == (
                "pass" if rule["passed"] else "warning" if rule["severity"] == "warning" else "fail"
            )
        assert page.locator('[data-kpi="rows_failed"] b').inner_text() == f"{quality['rows_failed']:,}"
        assert "/quality/-1/g0001/quarantine" in page.locator("[data-quarantine]").get_attribute(
            "data-quarantine"
        )
        assert page.locator("section[data-examples]").count() == sum(
            1 for r in quality["rules"] if r["failed"]
        )
        assert dialogs == []

        open_extra_link(page, airflow, finished_run, "quality", "Output")
        assert page.locator("main").inner_text().count(f"{quality['rows_failed']}") >= 1
        page.screenshot(path=str(screens / "quality-output.png"))
        open_extra_link(page, airflow, finished_run, "profile", "Batch job")
        assert page.locator("[data-status]").inner_text() == "succeeded"
    finally:
        context.close()


def test_a_user_who_may_not_read_the_dag_gets_403(airflow, finished_run, browser, screens):
    run = urllib.parse.quote(finished_run, safe="")
    url = f"{airflow.base_url}/batch-provider/jobs/{DAG_ID}/{run}/profile/-1/report"
    context, page, _ = login(browser, airflow, "bob")
    try:
        response = page.goto(url)
        assert response.status == 403
        assert "Forbidden" in page.locator("body").inner_text()
        page.screenshot(path=str(screens / "bob-403.png"))
        api = page.request.get(f"{airflow.base_url}/api/v2/dags/{DAG_ID}")  # the REST API agrees
        assert api.status == 403
    finally:
        context.close()
    anonymous = browser.new_context()
    try:
        assert anonymous.new_page().goto(url).status == 401
    finally:
        anonymous.close()
