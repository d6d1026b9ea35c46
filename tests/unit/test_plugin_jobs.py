"""The extra links' pages (plugins/jobs.py) without an api-server: the job folder comes from the ids (the
task's recorded folder, else the default layout) and must lie under the output roots; pages read fixed names.
Authorization (401/403 per DAG) runs against a real api-server in tests/integration/test_report_links_browser.py."""

from __future__ import annotations

import json

import pytest
from fastapi import HTTPException

from airflow_batch_provider.plugins import jobs


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


def test_the_default_layout_when_the_task_recorded_nothing(base, monkeypatch):
    monkeypatch.setattr(jobs, "_recorded_folder", lambda *ids: None)
    folder = jobs.job_folder("d", "manual__2026-01-01T00:00:00+00:00", "t", -1)
    assert folder.path == str(base / "d" / "manual__2026-01-01T00%3A00%3A00%2B00%3A00" / "t" / "-1")


def test_a_recorded_folder_is_served_only_under_the_output_roots(base, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "_recorded_folder", lambda *ids: str(base / "explicit" / "out"))
    assert jobs.job_folder("d", "r", "t", 0).path == str(base / "explicit" / "out")
    for outside in ("/etc", str(tmp_path / "elsewhere"), str(base / ".." / "x"), str(base)):
        monkeypatch.setattr(jobs, "_recorded_folder", lambda *ids, o=outside: o)
        with pytest.raises(HTTPException) as err:
            jobs.job_folder("d", "r", "t", 0)
        assert err.value.status_code == 404, outside


def test_pages_of_a_folder_without_output_say_so_and_escape_its_json(base, monkeypatch):
    monkeypatch.setattr(jobs, "_recorded_folder", lambda *ids: None)
    folder = jobs.job_folder("d", "r", "t", -1)
    assert jobs.report_page(folder, "d / r / t").status_code == 404
    assert jobs.output_page(folder, "d / r / t").status_code == 404
    assert jobs.job_page(folder, "d / r / t").status_code == 404
    (base / "d" / "r" / "t" / "-1").mkdir(parents=True)
    (base / "d" / "r" / "t" / "-1" / "_report.json").write_text(json.dumps({"<script>x</script>": 1}))
    page = jobs.report_page(folder, "d / r / t")
    body = page.body.decode()
    assert page.status_code == 200 and "<script>" not in body and "&lt;script&gt;" in body
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
