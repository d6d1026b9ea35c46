#!/usr/bin/env python
"""Fail CI when a required test did not run and pass: missing, skipped, failed or errored.

Usage::

    python scripts/check_required_tests.py results.xml [more.xml ...] [--required .ci/required-tests.txt]
        [--required .ci/required-browser-tests.txt ...]

``results.xml`` is what ``pytest --junitxml=results.xml`` writes. The required list has one entry per line
(``#`` starts a comment). An entry is

* a pytest node id: ``tests/unit/engine/test_fencing.py::test_a_newer_attempt_fences_out_a_running_older_one``
  (``::Class::test`` works too). Without a ``[param]`` part it covers every parametrization of the test;
* a test file: ``tests/integration/test_scheduler_kill.py`` (every test in it);
* a pattern with ``*`` or ``?`` matched against node ids: ``tests/unit/*::test_fault_matrix*`` (``[`` and ``]``
  are literal characters).

Each entry must match at least one test case of the report, and every test case it matches must have passed
(an expected failure, ``xfail``, counts as skipped). Exit code 0: all required tests passed; 1: some did not
(each one is named, with the reason); 2: bad input (a missing or unreadable file, an empty list). Only the
standard library is used.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REQUIRED = Path(__file__).resolve().parents[1] / ".ci" / "required-tests.txt"
EXIT_OK, EXIT_MISSING, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """An input file is missing, unreadable or empty."""


@dataclass(frozen=True)
class Case:
    """One ``<testcase>`` of a JUnit report: its dotted name and what happened."""

    dotted: str  # classname + "." + name, e.g. tests.unit.engine.test_fencing.test_x[a]
    status: str  # passed, skipped, failed, error
    message: str = ""


def dotted(node_id: str) -> str:
    """A pytest node id (``tests/a/test_b.py::Class::test_c[x]``) in JUnit's dotted form
    (``tests.a.test_b.Class.test_c[x]``); the ``[...]`` part is kept as it is."""
    head, bracket, param = node_id.strip().partition("[")
    head = head.replace("\\", "/")
    if head.endswith(".py"):
        head = head[:-3]
    head = head.replace(".py::", "::").replace("::", ".").replace("/", ".").strip(".")
    return head + bracket + param


def read_cases(path: Path) -> list[Case]:
    """The test cases of one JUnit XML file (``<testsuites>`` or a bare ``<testsuite>``)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such JUnit report; run pytest with --junitxml={path}") from None
    except (ET.ParseError, OSError) as err:
        raise BadInput(f"{path}: not a readable JUnit XML report ({err})") from None
    cases = []
    for case in root.iter("testcase"):
        name = case.get("name") or ""
        classname = case.get("classname") or ""
        status, message = "passed", ""
        for tag in ("error", "failure", "skipped"):
            found = case.find(tag)
            if found is not None:
                status = {"error": "error", "failure": "failed", "skipped": "skipped"}[tag]
                message = (found.get("message") or found.text or "").strip().splitlines()[0:1]
                message = message[0][:200] if message else ""
                break
        cases.append(Case(f"{classname}.{name}" if classname else name, status, message))
    return cases


def read_required(path: Path) -> list[str]:
    """The entries of the required list: one per line, ``#`` comments and blank lines ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BadInput(f"{path}: cannot read the required-test list ({err})") from None
    entries = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    entries = [e for e in entries if e]
    if not entries:
        raise BadInput(f"{path}: lists no required tests; add one pytest node id or pattern per line")
    return entries


def _glob(pattern: str) -> re.Pattern[str]:
    """``*``/``?`` glob over dotted names, with ``[`` and ``]`` taken literally."""
    escaped = pattern.replace("[", "\0").replace("]", "[]]").replace("\0", "[[]")
    return re.compile(fnmatch.translate(escaped))


def matches(entry: str, case: Case) -> bool:
    """Whether the required ``entry`` (node id, file or pattern) covers ``case``."""
    want = dotted(entry)
    if any(ch in entry for ch in "*?"):
        return bool(_glob(want).match(case.dotted))
    if case.dotted == want:
        return True
    if "[" not in want and case.dotted.startswith(want + "["):  # every parametrization of the test
        return True
    return entry.strip().endswith(".py") and case.dotted.startswith(want + ".")  # every test in the file


def check(required: list[str], cases: list[Case]) -> list[str]:
    """One line per problem: ``MISSING entry`` or ``SKIPPED/FAILED/ERROR entry -> test: message``."""
    problems = []
    for entry in required:
        hits = [c for c in cases if matches(entry, c)]
        if not hits:
            problems.append(f"MISSING  {entry}: no test case of the report matches it")
            continue
        for case in hits:
            if case.status != "passed":
                detail = f": {case.message}" if case.message else ""
                problems.append(f"{case.status.upper():8} {entry} -> {case.dotted}{detail}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "reports", nargs="+", type=Path, help="JUnit XML file(s) written by pytest --junitxml"
    )
    parser.add_argument(
        "--required",
        type=Path,
        action="append",
        help="a required-test list (repeat for several; default .ci/required-tests.txt)",
    )
    args = parser.parse_args(argv)
    lists = args.required or [DEFAULT_REQUIRED]
    try:
        required = [entry for path in lists for entry in read_required(path)]
        cases = [case for report in args.reports for case in read_cases(report)]
    except BadInput as err:
        print(f"check_required_tests: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = check(required, cases)
    if problems:
        names = ", ".join(str(p) for p in lists)
        print(f"{len(problems)} required test(s) did not pass (list: {names}):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return EXIT_MISSING
    print(
        f"all {len(required)} required test entr{'y' if len(required) == 1 else 'ies'} passed "
        f"({len(cases)} test cases in the report)"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
