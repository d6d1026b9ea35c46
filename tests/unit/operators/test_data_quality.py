"""DataQualityOperator through op.execute with an in-memory context: no Airflow DB needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog.testing
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.data_quality import DataQualityFailure, DataQualityOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

RULES = [
    {"type": "unique", "column": "dup", "severity": "warning"},
    {"type": "not_null", "column": "x", "threshold": 0.1},
    {"type": "allowed_values", "column": "cat", "values": ["a", "b", "c", "d e"]},
    {"type": "expression", "expression": "id >= 0"},
]


@pytest.fixture
def source(make_parquet, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return tmp_path / "src"


def op(source, **kwargs):
    return DataQualityOperator(
        task_id="dq",
        source=str(source),
        rules=RULES,
        config=BatchConfig(batch_size=333, max_concurrent_batches=2),
        **kwargs,
    )


def test_reports_and_quarantines_by_default(source):
    summary = op(source).execute(context())
    report = summary["report"]
    assert report["rows"] == 1400 and [e["passed"] for e in report["rules"]] == [False, True, True, True]
    quarantine = read_output(summary["output_uri"], quarantine=True)
    # a row is quarantined when it breaks a rule, even one that passes under its threshold (not_null(x))
    assert len(quarantine) == report["rows_failed"]
    assert set(map(tuple, quarantine["_failed_rules"])) == {  # lists (pd.ArrowDtype) as tuples
        ("unique(dup)",),
        ("not_null(x)",),
        ("unique(dup)", "not_null(x)"),
    }
    by_rule = quarantine["_failed_rules"].explode().value_counts()
    assert [by_rule[e["name"]] for e in report["rules"][:2]] == [e["failed"] for e in report["rules"][:2]]


@pytest.mark.parametrize(
    "fail_on,fails", [(None, False), ("error", False), ("warning", True), ("0.5", False), (0.99, True)]
)
def test_fail_on_turns_failures_into_a_task_failure(source, fail_on, fails):
    task = op(source, fail_on=fail_on)
    if not fails:
        task.execute(context())
        return
    with pytest.raises(DataQualityFailure, match="unique\\(dup\\): .* failed") as err:
        task.execute(context())
    assert isinstance(err.value, AirflowFailException)  # no retries: retrying cannot fix the data


def test_a_large_report_is_read_back_for_fail_on(source):
    rules = [{"type": "not_null", "column": "x", "name": f"x is set #{i} " + "." * 200} for i in range(80)]
    summary_op = DataQualityOperator(task_id="dq", source=str(source), rules=rules, fail_on="error")
    with pytest.raises(DataQualityFailure, match="80 data quality rule"):
        summary_op.execute(context())


def test_bad_rules_and_fail_on_fail_before_reading(source):
    with pytest.raises(BatchInputFailure, match="unknown rule type"):
        DataQualityOperator(task_id="dq", source=str(source), rules=[{"type": "nope"}]).execute(context())
    with pytest.raises(BatchInputFailure, match="fail_on"):
        op(source, fail_on="sometimes").execute(context())


def test_template_fields_exclude_the_rules():
    assert DataQualityOperator.template_fields == (*BatchJobOperator.template_fields, "fail_on")
    assert "rules" not in DataQualityOperator.template_fields


def test_no_rules_runs_the_default_assessment(tmp_path, monkeypatch):
    """Planted problems found through the operator; fail_on="warning" fails on them (the generated rules are
    warnings), and the same operator on clean data succeeds with no finding."""
    from tests.unit.processors.test_quality_defaults import clean_frame, planted_frame

    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    planted, clean = tmp_path / "planted", tmp_path / "clean"
    for folder, frame in ((planted, planted_frame()), (clean, clean_frame())):
        folder.mkdir()
        frame.to_parquet(folder / "a.parquet", row_group_size=500)
    config = BatchConfig(batch_size=333, max_concurrent_batches=2)
    task = DataQualityOperator(task_id="dq", source=str(planted), config=config)
    report = task.execute(context())["report"]
    found = {(f["check"], f["column"]) for f in report["assessment"]["findings"]}
    assert found == {
        ("completeness", "x"),
        ("duplicates", None),
        ("type_consistency", "price"),
        ("stored_as_text", "price"),
        ("outliers", "x"),
    }
    with pytest.raises(DataQualityFailure, match="duplicate_rows: 3/2400 failed"):
        DataQualityOperator(task_id="dq2", source=str(planted), config=config, fail_on="warning").execute(
            context()
        )
    summary = DataQualityOperator(task_id="dq3", source=str(clean), config=config, fail_on="warning").execute(
        context()
    )
    assert summary["report"]["assessment"]["findings"] == [] and summary["report"]["passed"]


def _summary_lines(logs):
    return [e for e in logs if str(e.get("event", "")).startswith("data quality: score")]


def test_a_failed_warning_rule_is_a_warning_line_and_the_task_stays_green(source):
    """RULES' unique(dup) is a warning rule that fails: the summary line is logged at WARNING and names it."""
    with structlog.testing.capture_logs() as logs:
        summary = op(source).execute(context())
    assert not summary["report"]["rules"][0]["passed"]
    (line,) = _summary_lines(logs)
    assert line["log_level"] == "warning", line
    assert "warning rule unique(dup): " in line["event"] % tuple(line.get("positional_args", ()))
    clean = [{"type": "expression", "expression": "id >= 0", "severity": "warning"}]
    with structlog.testing.capture_logs() as logs:
        DataQualityOperator(task_id="dq_clean", source=str(source), rules=clean).execute(
            context(FakeTI(task_id="dq_clean"))
        )
    (line,) = _summary_lines(logs)
    assert line["log_level"] == "info", line


def test_a_task_failed_by_fail_on_writes_no_success_marker(source):
    """fail_on fails the task: report, manifest and quarantine are committed, `_SUCCESS` is not; a later
    generation that passes writes it, and one more that fails removes it again."""
    with pytest.raises(DataQualityFailure) as err:
        op(source, fail_on="warning").execute(context())
    folder = Path(str(err.value).rsplit(" in ", 1)[1])
    assert (folder / "_manifest.json").exists() and (folder / "_report.json").exists()
    assert len(read_output(str(folder), quarantine=True)) > 0
    assert not (folder / "_SUCCESS").exists()
    # the task cleared and run again without fail_on: a new generation, now a successful task
    summary = op(source).execute(context())
    assert summary["output_uri"] == str(folder) and (folder / "_SUCCESS").exists()
    with pytest.raises(DataQualityFailure):
        op(source, fail_on="warning").execute(context())
    assert not (folder / "_SUCCESS").exists()
    assert json.loads((folder / "_manifest.json").read_text())["generation"] == 3
