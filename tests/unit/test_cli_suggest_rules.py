"""``airflow-batch suggest-rules``: the default assessment's rules as JSON, from a source or a saved profile."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from airflow_batch_provider.cli import EXIT_BAD_INPUT, main
from airflow_batch_provider.engine import run_batch_job
from tests.unit.processors.test_quality_defaults import planted_frame, write


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write(planted_frame(), tmp_path_factory.mktemp("cli") / "src")


@pytest.fixture(scope="module")
def generated(source, tmp_path_factory):
    report = run_batch_job(source, "data_quality", output_path=tmp_path_factory.mktemp("dq") / "out").report
    return report["assessment"]["generated_rules"]


def test_prints_the_rules_the_default_assessment_generates(source, generated, capsys, tmp_path):
    assert main(["suggest-rules", source]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert rules == generated
    assert {r["name"] for r in rules} >= {"duplicate_rows", "type_consistency(price)", "outliers(x)"}
    pasted = run_batch_job(source, "data_quality", output_path=tmp_path / "out", rules=rules).report
    assert pasted["rules_failed"] == 4 and "assessment" not in pasted  # valid input, the same findings


def test_from_a_saved_profiling_report(source, generated, capsys, tmp_path):
    run_batch_job(source, "data_profiling", output_path=tmp_path / "p", top_k=1000)
    assert main(["suggest-rules", "--from-profile", str(tmp_path / "p" / "_report.json")]) == 0
    assert json.loads(capsys.readouterr().out) == generated


def test_stdout_is_only_the_json_in_a_real_process(source, generated):
    done = subprocess.run(
        [sys.executable, "-m", "airflow_batch_provider.cli", "suggest-rules", source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == generated


@pytest.mark.parametrize(
    "argv,message",
    [
        (["suggest-rules", "/nonexistent/folder"], "cannot use '/nonexistent/folder'"),
        (["suggest-rules", "--from-profile", "/nonexistent/_report.json"], "_report.json"),
    ],
)
def test_bad_sources_exit_2_naming_them(argv, message, capsys):
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_report_that_is_not_a_profile_is_refused(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps({"rows": 3}))
    assert main(["suggest-rules", "--from-profile", str(tmp_path / "r.json")]) == EXIT_BAD_INPUT
    assert "give a profile with 'columns'" in capsys.readouterr().err
