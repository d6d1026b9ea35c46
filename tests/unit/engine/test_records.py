"""Failure records on real files: store, read back, statistics, history, retention, message scrubbing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from airflow_batch_provider.engine.records import (
    FailureRecords,
    cleanup_old_records,
    get_failure_statistics,
    get_job_failure_history,
    scrub_message,
)

HOUR = 3600.0
DAY = 86400.0


def record(**over):
    base = {
        "job_id": "dag/run/task/-1",
        "dag_id": "dag",
        "run_id": "run",
        "task_id": "task",
        "map_index": -1,
        "try_number": 1,
        "chunk": [0, 0, 100],
        "chunk_label": "f0:0-100",
        "class": "processing",
        "error_type": "ValueError",
        "error": "boom",
        "attempt": 1,
        "strategy": "retry",
        "recovered": True,
        "time_lost_s": 1.5,
    }
    base.update(over)
    return base


def test_add_writes_one_small_json_object_per_record_in_a_day_folder(tmp_path):
    store = FailureRecords(tmp_path / "_records")
    ts = time.time()
    uri = store.add(record(ts=ts))
    files = list((tmp_path / "_records" / "failures").rglob("*.json"))
    assert [str(f) for f in files] == [uri]
    assert files[0].parent.name == time.strftime("%Y-%m-%d", time.gmtime(ts))
    assert files[0].name.startswith(f"{int(ts * 1000)}-")
    doc = json.loads(files[0].read_text())
    assert doc["class"] == "processing" and doc["ts"] == ts and doc["time"].endswith("+00:00")
    assert len(files[0].read_bytes()) < 600


def test_add_fills_time_and_scrubs_the_error(tmp_path):
    store = FailureRecords(str(tmp_path))
    before = time.time()
    store.add({"class": "data_corruption", "error": "could not convert string to float: 'Alice Smith'"})
    (doc,) = store.iter_records()
    assert doc["ts"] >= before and doc["time"]
    assert "Alice" not in doc["error"] and doc["error"].endswith("<text:11>")


def test_iter_records_is_chronological_and_honours_since_and_skips_junk(tmp_path):
    store = FailureRecords(tmp_path)
    now = time.time()
    for age_h in (72, 30, 5, 1):
        store.add(record(ts=now - age_h * HOUR, attempt=age_h))
    newest = store.add(record(ts=now - 1 * HOUR, attempt=0))  # the folder of a record, whatever the hour
    day = Path(newest).parent
    Path(newest).unlink()
    (day / "1-deadbeef.json").write_text("{not json")  # torn/garbage object: skipped, not fatal
    (day / "notes.txt").write_text("x")
    (tmp_path / "failures" / "not-a-day").mkdir()
    assert [r["attempt"] for r in store.iter_records()] == [72, 30, 5, 1]
    assert [r["attempt"] for r in store.iter_records(since=now - 24 * HOUR)] == [5, 1]


def test_concurrent_writers_never_lose_a_record(tmp_path):
    store = FailureRecords(tmp_path)
    threads = [threading.Thread(target=lambda: [store.add(record()) for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(store.iter_records())) == 100


def test_memory_uri_works(tmp_path):
    store = FailureRecords("memory://abp-records-test")
    try:
        uri = store.add(record(**{"class": "network"}))
        assert uri.startswith("memory://abp-records-test/failures/")
        assert get_failure_statistics("memory://abp-records-test")["by_class"] == {"network": 1}
    finally:
        store.root.remove(recursive=True)


def test_statistics_agree_with_the_records(tmp_path):
    store = FailureRecords(tmp_path)
    now = time.time()
    injected = [
        ("processing", "retry", True, 2.0, "a"),
        ("processing", "retry", True, 1.0, "a"),
        ("network", "retry_jitter", True, 0.5, "b"),
        ("memory", "split", True, 4.0, "b"),
        ("data_corruption", "quarantine", True, 0.0, "c"),
        ("system", "checkpoint_and_fail", False, 10.0, "c"),
        ("processing", "fail", False, 3.0, "a"),
    ]
    for cls, strategy, ok, lost, job in injected:
        store.add(record(**{"class": cls}, strategy=strategy, recovered=ok, time_lost_s=lost, job_id=job))
    store.add(record(**{"class": "timeout"}, ts=now - 48 * HOUR))  # outside the window
    store.add({"ts": now - 60})  # minimal record: missing keys are tolerated

    stats = get_failure_statistics(tmp_path, hours=24)
    assert stats["total"] == 8
    assert stats["by_class"] == {
        "processing": 3,
        "network": 1,
        "memory": 1,
        "data_corruption": 1,
        "system": 1,
        "unknown": 1,
    }
    assert stats["by_strategy"]["retry"] == 2 and stats["by_strategy"]["unknown"] == 1
    assert stats["recovered"] == 5
    assert stats["recovery_rate"] == pytest.approx(5 / 8)
    assert stats["most_common"] == "processing"
    assert stats["time_lost_s"] == pytest.approx(20.5)
    assert stats["jobs"] == {"a": 3, "b": 2, "c": 2, "unknown": 1}
    assert stats["classes"]["processing"] == {"failures": 3, "recovered": 2, "time_lost_s": 6.0}
    assert stats["classes"]["system"] == {"failures": 1, "recovered": 0, "time_lost_s": 10.0}
    assert get_failure_statistics(tmp_path, hours=72)["by_class"]["timeout"] == 1


def test_statistics_of_an_empty_or_missing_store(tmp_path):
    stats = get_failure_statistics(tmp_path / "nothing-here")
    assert stats["total"] == 0 and stats["recovery_rate"] is None and stats["most_common"] is None


def test_history_filters_newest_first_and_limits(tmp_path):
    store = FailureRecords(tmp_path)
    now = time.time()
    for i in range(5):
        store.add(record(ts=now - (10 - i), attempt=i, run_id="r1"))
    store.add(record(ts=now - 1, attempt=99, run_id="r2", job_id="other"))
    store.add(record(ts=now - 30 * HOUR, attempt=-1, run_id="r1"))

    hist = get_job_failure_history(tmp_path, dag_id="dag", run_id="r1")
    assert [r["attempt"] for r in hist] == [4, 3, 2, 1, 0, -1]
    assert [r["attempt"] for r in get_job_failure_history(tmp_path, run_id="r1", limit=2)] == [4, 3]
    assert [r["attempt"] for r in get_job_failure_history(tmp_path, run_id="r1", hours=24)] == [4, 3, 2, 1, 0]
    assert [r["attempt"] for r in get_job_failure_history(tmp_path, job_id="other")] == [99]
    assert get_job_failure_history(tmp_path, task_id="nope") == []


def test_cleanup_removes_old_days_and_old_files_of_the_boundary_day(tmp_path):
    store = FailureRecords(tmp_path)
    now = time.time()
    old = [store.add(record(ts=now - age * DAY)) for age in (30, 9, 8)]
    boundary = now - 7 * DAY - 60  # just past the cutoff: same day folder as newer records maybe
    old.append(store.add(record(ts=boundary)))
    kept = [store.add(record(ts=now - age)) for age in (7 * DAY - 3600, 2 * DAY, 60)]

    dry = cleanup_old_records(tmp_path, days=7, dry_run=True)
    assert dry["dry_run"] and sorted(dry["uris"]) == sorted(old)
    assert len(list(store.iter_records())) == 7  # nothing deleted

    done = cleanup_old_records(tmp_path, days=7)
    assert done["removed"] == 4
    remaining = sorted(str(p) for p in (tmp_path / "failures").rglob("*.json"))
    assert remaining == sorted(kept)
    days_left = {p.name for p in (tmp_path / "failures").iterdir()}
    assert time.strftime("%Y-%m-%d", time.gmtime(now - 30 * DAY)) not in days_left
    assert cleanup_old_records(tmp_path, days=7)["removed"] == 0


def test_cleanup_rejects_negative_days(tmp_path):
    with pytest.raises(ValueError):
        cleanup_old_records(tmp_path, days=-1)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("could not convert string to float: 'Alice Smith'", "could not convert string to float: <text:11>"),
        (
            'invalid literal for int() with base 10: "12ab"',
            "invalid literal for int() with base 10: <text:4>",
        ),
        ("KeyError: b'\\x00\\xff'", "KeyError: <bytes:8>"),
        ("value 1234567 out of range 3.14159", "value <number:7> out of range <number:7>"),
        ("chunk 53/84 failed after 3 attempts", "chunk 53/84 failed after 3 attempts"),
        ("row {'name': 'Bob', 'ssn': '123-45-6789'}", "row {<text:4>: <text:3>, <text:3>: <text:11>}"),
        ("multi\nline\t message", "multi line message"),
        ("column x_2026 is bad", "column x_2026 is bad"),
        (None, ""),
    ],
)
def test_scrub_message_removes_row_values(raw, expected):
    assert scrub_message(raw) == expected


def test_scrub_message_truncates_to_500_chars():
    out = scrub_message("word " * 500)
    assert len(out) == 500 and out.endswith("...")
