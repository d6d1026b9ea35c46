"""HTML reports (airflow_batch_provider/reports): written next to _report.json by the operators, built from
the aggregates only, size-capped, escaped, compared with the previous run of the same task.

Data values are unique marker strings, so "a value from the data" is a substring search: every marker on a
page must also be in _report.json (top values are aggregates), and a values-free quarantine shows none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.data_quality import DataQualityFailure, DataQualityOperator
from airflow_batch_provider.reports import render, write_html_report
from airflow_batch_provider.reports.publish import exchange_history
from tests.unit.operators.task_context import FakeTI, context

MARKER = re.compile(r"M\d+x\d+Z")


def markers(text: str) -> set[str]:
    return set(MARKER.findall(text))


def wide_frame(rows: int, cols: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for j in range(cols):
        kind = j % 4
        name = f"c{j:04d}"
        if kind == 0:  # text: a marker per row, a few repeated (those are top values, aggregates)
            data[name] = [f"M{i % (rows // 2)}x{j}Z" for i in range(rows)]
        elif kind == 1:
            data[name] = rng.lognormal(0, 2, rows)
        elif kind == 2:
            data[name] = rng.integers(0, 50, rows)
        else:
            data[name] = np.where(rng.random(rows) < 0.6, np.nan, rng.normal(0, 1, rows))
    return pd.DataFrame(data)


def test_a_1000_column_profile_stays_under_2_mb_and_holds_only_aggregates(tmp_path):
    frame = wide_frame(120, 1000)
    frame.to_parquet(tmp_path / "wide.parquet")
    out = tmp_path / "out"
    run_batch_job(tmp_path / "wide.parquet", "data_profiling", config={"batch_size": 50}, output_path=out)
    uri = write_html_report(out)
    page = Path(uri).read_text(encoding="utf-8")
    report_text = (out / "_report.json").read_text(encoding="utf-8")
    report = json.loads(report_text)
    assert len(page.encode()) < 2_000_000
    assert set(re.findall(r'data-column="([^"]+)"', page)) == set(report["columns"])  # every column listed
    in_data = {v for c in frame.columns[::4] for v in frame[c]}
    shown, aggregated = markers(page) & in_data, markers(report_text) & in_data
    assert shown and shown <= aggregated  # top values appear; nothing the report does not hold
    assert in_data - aggregated  # most row values are in neither (so the check above can fail)
    for tag in ("<script", "<link", "<img", "http://", "https://", "@import", "url("):
        assert tag not in page.lower(), tag  # self-contained: nothing fetched


def test_counts_on_the_page_are_the_reports(tmp_path):
    frame = wide_frame(200, 12, seed=3)
    frame.to_parquet(tmp_path / "d.parquet")
    out = tmp_path / "out"
    run_batch_job(tmp_path / "d.parquet", "data_profiling", output_path=out)
    page = Path(write_html_report(out)).read_text()
    report = json.loads((out / "_report.json").read_text())
    rows = dict(re.findall(r'data-column="([^"]+)"[^>]*data-nulls="(\d+)"', page))
    assert rows == {name: str(col["nulls"]) for name, col in report["columns"].items()}
    distinct = dict(re.findall(r'data-column="([^"]+)"[^>]*data-distinct="(\d+)"', page))
    assert distinct == {name: str(col["distinct"]) for name, col in report["columns"].items()}
    assert "mostly null" in page and "skewed" in page  # c0003... are 60% null, c0001... lognormal
    assert 'data-scale="log"' in page  # the lognormal columns' histograms use log bins


def test_untrusted_names_and_values_are_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    frame = pd.DataFrame(
        {evil: ["<img src=x onerror=alert(1)>"] * 30 + ["b"] * 10, "x": range(40), 'q"uote': ["a&b"] * 40}
    )
    frame.to_parquet(tmp_path / "d.parquet")
    for processor, kwargs in (
        ("data_profiling", {}),
        ("data_quality", {"rules": [{"type": "allowed_values", "column": evil, "values": ["b"]}]}),
    ):
        out = tmp_path / processor
        run_batch_job(tmp_path / "d.parquet", processor, output_path=out, **kwargs)
        page = Path(write_html_report(out)).read_text()
        assert "<script" not in page and "<img" not in page and 'q"uote' not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        assert (
            "&lt;img src=x onerror=alert(1)&gt;" in page
        )  # top value (profile) or failing example (quality)


def quality_frame(rows: int = 300) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(rows),
            "secret": [f"M{i}x1Z" for i in range(rows)],
            "amount": [(-1.0 if i % 7 == 0 else float(i)) for i in range(rows)],
        }
    )


QUALITY_RULES = [
    {"type": "min", "column": "amount", "value": 0},
    {"type": "regex", "column": "secret", "pattern": r"M\d*0x1Z"},
    {"type": "not_null", "column": "id"},
    {"type": "max", "column": "id", "value": 10, "severity": "warning", "threshold": 0.5},
]


@pytest.mark.parametrize("values", [True, False])
def test_quality_page_examples_only_when_the_quarantine_stores_values(tmp_path, values):
    frame = quality_frame()
    frame.to_parquet(tmp_path / "d.parquet")
    out = tmp_path / "out"
    run_batch_job(
        tmp_path / "d.parquet",
        "data_quality",
        output_path=out,
        rules=QUALITY_RULES,
        quarantine_values=values,
        config={"batch_size": 70},
    )
    page = Path(write_html_report(out)).read_text()
    report = json.loads((out / "_report.json").read_text())
    failed = dict(re.findall(r'data-rule="([^"]+)" data-failed="(\d+)"', page))
    assert failed == {r["name"]: str(r["failed"]) for r in report["rules"]}
    assert "g0001/quarantine" in page  # the quarantine's location
    if values:
        assert markers(page) and 'data-examples="regex(secret)"' in page
        assert "Rows are stored with their values" in page
    else:
        assert not markers(page)  # no value from the data at all
        assert "data-examples" not in page and "-1" not in re.sub(r"<[^>]+>", " ", page).split()
        assert "quarantine_values=False" in page


def test_operators_write_the_page_and_compare_with_the_previous_run(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    src = tmp_path / "src.parquet"

    def run(frame, run_id, **kwargs):
        frame.to_parquet(src)
        op = DataQualityOperator(
            task_id="dq", source=str(src), rules=QUALITY_RULES, config=BatchConfig(batch_size=100), **kwargs
        )
        ti = FakeTI(run_id=run_id, task_id="dq")
        try:
            summary = op.execute(context(ti))
        except DataQualityFailure:
            summary = None
        folder = dict(ti.xcoms)["batch_job"]["output_uri"]  # pushed before the job ran
        return summary, Path(folder) / "_report.html"

    summary, first = run(quality_frame(300), "r1", fail_on="error")
    assert summary is None and first.exists()  # a failed task still writes its page
    assert "Since the previous" not in first.read_text() and "since previous" not in first.read_text()
    bigger = quality_frame(420)
    summary, second = run(bigger, "r2")
    assert summary["report_html_uri"] == str(second)
    page = second.read_text()
    assert "compared with run r1" in page and "failed 43 \u2192 60" in page  # min(amount): every 7th row
    _, again = run(bigger, "r2")  # a retry of run r2 still compares with r1
    assert "compared with run r1" in again.read_text()


def test_history_keeps_the_run_before_for_reruns(tmp_path):
    hist = tmp_path / "h.json"
    a, b = {"kind": "data_quality", "n": 1}, {"kind": "data_quality", "n": 2}
    assert exchange_history(hist, "r1", a) == (None, "")
    assert exchange_history(hist, "r2", b) == (a, "r1")
    assert exchange_history(hist, "r2", b) == (a, "r1")
    assert exchange_history(hist, "r3", {"kind": "data_profiling"}) == (None, "")  # another processor


def test_size_budget_caps_a_huge_profile():
    col = {
        "type": "text",
        "dtype": "str",
        "count": 10,
        "nulls": 0,
        "null_ratio": 0.0,
        "distinct": 10,
        "top_values": [["v" * 500, 1]] * 10,
    }
    report = {"processor": "data_profiling", "rows": 10, "column_count": 20_000, "columns": {}}
    report["columns"] = {f"col{i}": col for i in range(20_000)}
    page = render.render_profile(report)
    assert len(page.encode()) < render.MAX_BYTES
    assert "more columns are in _report.json" in page


def test_profile_page_shows_the_changes_since_the_previous_run(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    src = tmp_path / "src.parquet"
    pages = []
    for run_id, frame in (
        ("r1", pd.DataFrame({"a": np.arange(100.0), "gone": 1})),
        ("r2", pd.DataFrame({"a": np.where(np.arange(100) < 40, np.nan, np.arange(100.0)), "added": "x"})),
    ):
        frame.to_parquet(src)
        ti = FakeTI(run_id=run_id, task_id="profile")
        summary = DataProfilingOperator(task_id="profile", source=str(src)).execute(context(ti))
        pages.append(Path(summary["report_html_uri"]).read_text())
    assert "Since the previous run" not in pages[0]
    assert "compared with run r1" in pages[1] and "nulls 0% \u2192 40.0%" in pages[1]
    assert "1 removed: gone" in pages[1] and '<span class="warn">new</span>' in pages[1]
