"""scripts/check_required_tests.py on small JUnit XML reports, in-process and as a real subprocess."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_required_tests.py"
spec = importlib.util.spec_from_file_location("check_required_tests", SCRIPT)
crt = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = crt  # dataclasses look their module up there
spec.loader.exec_module(crt)

# what pytest --junitxml writes (xunit2): one suite, dotted classnames, skipped/failure/error children
REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="8">
<testcase classname="tests.integration.test_scheduler_kill" name="test_kill" time="90.1" />
<testcase classname="tests.unit.engine.test_fencing" name="test_zombie" time="3.0" />
<testcase classname="tests.unit.engine.test_fault_matrix" name="test_matrix[sigkill]" time="1.0" />
<testcase classname="tests.unit.engine.test_fault_matrix" name="test_matrix[disk_full]" time="1.0">
  <failure message="AssertionError: output differs">Traceback ...</failure></testcase>
<testcase classname="tests.integration.test_retry_policy" name="test_network" time="0.0">
  <skipped type="pytest.skip" message="could not start Airflow">skip</skipped></testcase>
<testcase classname="tests.unit.test_ops.TestOps" name="test_method" time="0.1" />
<testcase classname="tests.unit.test_ops.TestOps" name="test_xfail" time="0.1">
  <skipped type="pytest.xfail" message="known bug" /></testcase>
<testcase classname="tests.unit.test_setup" name="test_broken_fixture" time="0.0">
  <error message="failed on setup with &quot;RuntimeError: boom&quot;">RuntimeError</error></testcase>
</testsuite></testsuites>
"""


@pytest.fixture
def report(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(REPORT)
    return path


def required(tmp_path, *lines):
    path = tmp_path / "required.txt"
    path.write_text("# comment line\n\n" + "\n".join(lines) + "\n")
    return path


def run(report, req, capsys):
    code = crt.main([str(report), "--required", str(req)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_all_required_passed(tmp_path, report, capsys):
    req = required(
        tmp_path,
        "tests/integration/test_scheduler_kill.py::test_kill   # trailing comment",
        "tests/unit/engine/test_fencing.py::test_zombie",
        "tests/unit/engine/test_fault_matrix.py::test_matrix[sigkill]",
        "tests/unit/test_ops.py::TestOps::test_method",
        "tests/integration/test_scheduler_*.py::test_k?ll",
    )
    code, out = run(report, req, capsys)
    assert code == 0 and "all 5 required test entries passed (8 test cases" in out


def test_missing_skipped_failed_and_errored_are_each_named(tmp_path, report, capsys):
    req = required(
        tmp_path,
        "tests/unit/engine/test_fencing.py::test_zombie",  # passes: not reported
        "tests/unit/engine/test_fencing.py::test_renamed_away",
        "tests/integration/test_retry_policy.py::test_network",
        "tests/unit/engine/test_fault_matrix.py::test_matrix",  # every parametrization: one failed
        "tests/unit/test_setup.py",
        "tests/unit/test_ops.py::TestOps::test_xfail",
    )
    code, out = run(report, req, capsys)
    assert code == 1
    assert "5 required test(s) did not pass" in out
    assert "MISSING  tests/unit/engine/test_fencing.py::test_renamed_away" in out
    assert "SKIPPED  tests/integration/test_retry_policy.py::test_network -> " in out
    assert "could not start Airflow" in out
    assert "FAILED   tests/unit/engine/test_fault_matrix.py::test_matrix -> " in out
    assert "test_matrix[disk_full]: AssertionError: output differs" in out
    assert "test_matrix[sigkill]" not in out
    assert "ERROR    tests/unit/test_setup.py -> tests.unit.test_setup.test_broken_fixture" in out
    assert "SKIPPED  tests/unit/test_ops.py::TestOps::test_xfail" in out and "known bug" in out
    assert "test_zombie" not in out


@pytest.mark.parametrize(
    ("entry", "hit"),
    [
        ("tests/unit/engine/test_fault_matrix.py::test_matrix[sigkill]", True),
        ("tests/unit/engine/test_fault_matrix.py::test_matrix[sig]", False),  # a param id is exact
        ("tests/unit/engine/test_fault_matrix.py::test_matri", False),  # a test name is not a prefix
        ("tests/unit/engine/test_fault_matrix.py", True),
        ("tests/unit/engine/test_fault_matri.py", False),
        ("tests/unit/engine/*::test_matrix[[]sig*", False),  # [ is literal: "[[]" is two characters
        ("tests/unit/engine/*::test_matrix[sig*", True),
        ("*test_matrix[s?gkill]", True),
    ],
)
def test_entry_forms(entry, hit):
    case = crt.Case("tests.unit.engine.test_fault_matrix.test_matrix[sigkill]", "passed")
    assert crt.matches(entry, case) is hit


def test_bad_input_exits_2_with_a_reason(tmp_path, report, capsys):
    assert run(tmp_path / "nope.xml", required(tmp_path, "a.py::t"), capsys) == (
        2,
        f"check_required_tests: {tmp_path / 'nope.xml'}: no such JUnit report; run pytest with "
        f"--junitxml={tmp_path / 'nope.xml'}\n",
    )
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testcase")
    code, out = run(broken, required(tmp_path, "a.py::t"), capsys)
    assert code == 2 and "not a readable JUnit XML report" in out
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n")
    code, out = run(report, empty, capsys)
    assert code == 2 and "lists no required tests" in out


def test_several_reports_and_a_real_subprocess(tmp_path, report):
    second = tmp_path / "second.xml"
    second.write_text(
        '<testsuite name="pytest"><testcase classname="tests.s3.test_s3" name="test_put" /></testsuite>'
    )
    req = required(
        tmp_path, "tests/s3/test_s3.py::test_put", "tests/unit/engine/test_fencing.py::test_zombie"
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(report), str(second), "--required", str(req)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    req = required(tmp_path, "tests/s3/test_s3.py::test_put")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(report), "--required", str(req)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "MISSING  tests/s3/test_s3.py::test_put" in done.stderr


def test_the_repository_list_names_tests_that_exist():
    entries = crt.read_required(ROOT / ".ci" / "required-tests.txt")
    assert any("test_scheduler_kill" in e for e in entries) and any("test_fencing" in e for e in entries)
    for entry in entries:
        path, _, name = entry.partition("::")
        source = (ROOT / path).read_text()
        if name:
            assert f"def {name.split('[')[0]}(" in source, entry
        else:  # a whole test file
            assert "\ndef test_" in source, entry


def test_several_required_lists_add_up(tmp_path, capsys):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuite><testcase classname="tests.a" name="t1"/>'
        '<testcase classname="tests.b" name="t2"><skipped message="no browser"/></testcase></testsuite>'
    )
    first = tmp_path / "one.txt"
    first.write_text("tests/a.py::t1\n")
    second = tmp_path / "two.txt"
    second.write_text("tests/b.py\n")
    assert crt.main([str(report), "--required", str(first)]) == 0
    assert crt.main([str(report), "--required", str(first), "--required", str(second)]) == 1
    assert "SKIPPED  tests/b.py -> tests.b.t2: no browser" in capsys.readouterr().err
