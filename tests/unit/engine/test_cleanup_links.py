"""Cleanup never follows a symbolic link and deletes only the names the engine writes (issue #18, finding 1).

Every deletion path: ``cleanup_old_records`` (what ``airflow-batch cleanup`` runs), ``apply_retention`` (what
``BatchCleanupOperator`` runs) and the CLI itself, each with a symlinked ``_records``, ``failures``, ``alerts``,
day folder and record file pointing at a folder outside the base that looks like records.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from airflow_batch_provider.cli import main
from airflow_batch_provider.engine.records import cleanup_old_records
from airflow_batch_provider.engine.retention import RetentionPolicy, apply_retention

DAY = 86400.0
NOW = 1_800_000_000.0  # a fixed clock: 2027-01-15 08:00 UTC
OLD = NOW - 40 * DAY
POLICY = RetentionPolicy(output_days=30, work_days=7, records_days=30, live_grace_s=3600)


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def record_name(ts: float, tag: str = "deadbeef") -> str:
    return f"{int(ts * 1000)}-{tag}.json"


def fill_like_records(folder: Path) -> None:
    """What a records folder holds (old day folders of record files), plus files the engine never writes."""
    for ts in (OLD, OLD - DAY):
        day = folder / day_of(ts)
        day.mkdir(parents=True, exist_ok=True)
        (day / record_name(ts)).write_text("{}")
        (day / "sibling.txt").write_text("not a record")
    (folder / "keep.txt").write_text("keep")


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def outside(tmp_path):
    target = tmp_path / "outside"
    fill_like_records(target)
    (target / "failures").mkdir()
    fill_like_records(target / "failures")  # in case a link points at a records root
    return target


@pytest.fixture
def base(tmp_path):
    folder = tmp_path / "base"
    (folder / "_records").mkdir(parents=True)
    return folder


def link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=target.is_dir())
    return path


def cases(base: Path, outside: Path) -> dict[str, tuple[Path, list[str]]]:
    """Where a link goes in the records tree -> (the link, the record kinds cleaned)."""
    records = base / "_records"
    return {
        "failures folder": (records / "failures", ["failures"]),
        "alerts folder": (records / "alerts", ["failures", "alerts"]),
        "whole-old day folder": (records / "failures" / day_of(OLD), ["failures"]),
        "partly-old day folder": (records / "failures" / day_of(NOW - 30 * DAY), ["failures"]),
        "record file": (records / "failures" / day_of(OLD) / record_name(OLD, "0badf00d"), ["failures"]),
    }


def make_case(base: Path, outside: Path, case: str) -> Path:
    path, _ = cases(base, outside)[case]
    if case == "record file":
        return link(path, outside / day_of(OLD) / record_name(OLD))
    if case == "partly-old day folder":
        day = outside / day_of(NOW - 30 * DAY)  # the cutoff falls inside this day (08:00 UTC)
        day.mkdir()
        (day / record_name(NOW - 30 * DAY - 4 * 3600)).write_text(
            "{}"
        )  # older than 30 days: would be deleted
        (day / "sibling.txt").write_text("not a record")
        return link(path, day)
    if "day folder" in case:
        return link(path, outside / day_of(OLD))
    return link(path, outside)


CASES = ["failures folder", "alerts folder", "whole-old day folder", "partly-old day folder", "record file"]


@pytest.mark.parametrize("case", CASES)
def test_cleanup_old_records_never_follows_a_link(base, outside, case):
    made = make_case(base, outside, case)
    before = tree(outside)
    kinds = cases(base, outside)[case][1]
    result = cleanup_old_records(base / "_records", days=30, folders=kinds, now=NOW)
    assert tree(outside) == before
    assert made.is_symlink()  # the link itself is left alone too
    assert result["refused"] == [str(made)]
    assert all(not uri.startswith(str(outside)) for uri in result["uris"])


@pytest.mark.parametrize("case", CASES)
def test_retention_never_follows_a_link_in_the_records_tree(base, outside, case):
    made = make_case(base, outside, case)
    before = tree(outside)
    for dry_run in (False, True):
        summary = apply_retention(base, POLICY, dry_run=dry_run, now=NOW)
        assert tree(outside) == before
        assert str(made) in summary["refused"]
        assert all(not d["uri"].startswith(str(outside)) for d in summary["deleted"])
    assert made.is_symlink()


def test_a_records_root_that_is_a_link_is_refused_by_every_cleanup(tmp_path, outside, capsys):
    base = tmp_path / "base"
    base.mkdir()
    records = link(base / "_records", outside)
    before = tree(outside)
    assert cleanup_old_records(records, days=7, now=NOW)["refused"] == [str(records)]
    assert apply_retention(base, POLICY, now=NOW)["refused"] == [str(records)]
    assert main(["cleanup", "--base", str(base), "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert (
        "deleted 0 failure records" in out
        and f"symbolic link; cleanup never follows links): {records}" in out
    )
    assert tree(outside) == before and records.is_symlink()


def test_cli_cleanup_with_a_symlinked_failures_folder(base, outside, capsys):
    before = tree(outside)
    link(base / "_records" / "failures", outside)
    assert main(["cleanup", "--base", str(base), "--days", "7", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["removed"] == 0 and payload["refused"] == [str(base / "_records" / "failures")]
    assert tree(outside) == before


def test_only_record_names_are_deleted_and_a_day_folder_with_other_files_stays(base):
    failures = base / "_records" / "failures"
    fill_like_records(failures)
    only_records = failures / day_of(OLD - 2 * DAY)
    only_records.mkdir()
    (only_records / record_name(OLD - 2 * DAY)).write_text("{}")
    result = cleanup_old_records(base / "_records", days=30, now=NOW)
    assert result["removed"] == 3 and result["refused"] == []
    assert not only_records.exists()  # emptied by the cleanup: removed
    left = tree(failures)
    assert left == {
        f"{day_of(OLD)}/sibling.txt": "not a record",
        f"{day_of(OLD - DAY)}/sibling.txt": "not a record",
        "keep.txt": "keep",
    }


def test_batch_cleanup_operator_never_follows_a_link(tmp_path):
    """The operator runs retention with the real clock: records from the year 2000 are old whatever it says."""
    from airflow_batch_provider.operators.cleanup import BatchCleanupOperator
    from tests.unit.operators.task_context import context

    ancient = 946_684_800.0  # 2000-01-01 UTC
    target = tmp_path / "outside"
    day = target / day_of(ancient)
    day.mkdir(parents=True)
    (day / record_name(ancient)).write_text("{}")
    (day / "sibling.txt").write_text("not a record")
    base = tmp_path / "base"
    link(base / "_records" / "failures", target)
    link(base / "_records" / "alerts", target)
    before = tree(target)
    summary = BatchCleanupOperator(task_id="cleanup", base_path=str(base)).execute(context())
    assert tree(target) == before and summary["counts"]["records"] == 0
    assert sorted(summary["refused"]) == [
        str(base / "_records" / "alerts"),
        str(base / "_records" / "failures"),
    ]
