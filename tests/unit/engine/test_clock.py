"""Records, statistics, alerts and retention under faked clocks: just before and after midnight UTC, at a month
end, a leap day and a year end, in the time zones farthest from UTC (UTC+14 and UTC-10). Day folders come from
the record's own UTC timestamp and every age from an explicit ``now``, so no outcome depends on when or where
the suite runs."""

from __future__ import annotations

import calendar
import os
import time

import pytest

from airflow_batch_provider.engine.records import (
    FailureRecords,
    cleanup_old_records,
    get_failure_statistics,
    get_job_failure_history,
)
from airflow_batch_provider.engine.retention import RetentionPolicy, apply_retention
from airflow_batch_provider.monitoring.dashboard import get_monitoring_dashboard_data

HOUR, DAY = 3600.0, 86400.0


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


CLOCKS = {
    "before_midnight": utc(2026, 12, 7, 23, 59, 59) + 0.5,
    "after_midnight": utc(2026, 12, 8, 0, 0, 0) + 0.5,
    "month_end": utc(2026, 4, 30, 23, 59, 59),
    "leap_day": utc(2028, 2, 29, 0, 0, 1),
    "year_end": utc(2026, 12, 31, 23, 59, 59) + 0.999,
    "new_year": utc(2027, 1, 1, 0, 0, 0),
}
ZONES = ["UTC", "Pacific/Kiritimati", "America/Adak"]


@pytest.fixture(params=ZONES)
def zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


@pytest.mark.parametrize("clock", list(CLOCKS))
def test_records_statistics_and_cleanup_follow_the_given_clock(tmp_path, zone, clock):
    now = CLOCKS[clock]
    assert os.environ["TZ"] == zone
    store = FailureRecords(tmp_path / "_records")
    ages_h = (0.0001, 0.5, 1, 23.9, 24.1, 25, 24 * 7 + 1)
    uris = [store.add({"class": "network", "attempt": i, "job_id": "j", "ts": now - a * HOUR}) for i, a in
            enumerate(ages_h)]  # fmt: skip
    for uri, age in zip(uris, ages_h, strict=True):
        assert f"/failures/{_day(now - age * HOUR)}/" in uri  # the record's own UTC day, in any zone
    assert [r["attempt"] for r in store.iter_records()] == list(range(len(ages_h)))[::-1]
    stats = get_failure_statistics(tmp_path / "_records", hours=24, now=now)
    assert stats["total"] == 4 and stats["by_class"] == {"network": 4}
    assert get_failure_statistics(tmp_path / "_records", hours=24 * 7, now=now)["total"] == 6
    history = get_job_failure_history(tmp_path / "_records", job_id="j", hours=1.5, now=now)
    assert [r["attempt"] for r in history] == [0, 1, 2]
    dry = cleanup_old_records(tmp_path / "_records", days=1, dry_run=True, now=now)
    assert dry["removed"] == 3 and all(os.path.exists(u.removeprefix("file://")) for u in uris)
    done = cleanup_old_records(tmp_path / "_records", days=1, now=now)
    assert sorted(done["uris"]) == sorted(uris[4:])
    assert [r["attempt"] for r in store.iter_records()] == [3, 2, 1, 0]  # oldest first


@pytest.mark.parametrize("clock", list(CLOCKS))
def test_dashboard_alert_window_and_retention_follow_the_given_clock(tmp_path, zone, clock):
    now = CLOCKS[clock]
    alerts = tmp_path / "_records" / "alerts"
    for title, age_h in (("fresh", 0.01), ("edge", 23.99), ("old", 24.01), ("ancient", 24 * 40)):
        ts = now - age_h * HOUR
        folder = alerts / _day(ts)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{int(ts * 1000)}-0000abcd.json").write_text(f'{{"title": "{title}", "time": {ts}}}')
    data = get_monitoring_dashboard_data(tmp_path, hours=24, now=now)
    assert [a["title"] for a in data["recent_alerts"]] == ["fresh", "edge"]
    policy = RetentionPolicy(output_days=30, work_days=7, records_days=30)
    summary = apply_retention(tmp_path, policy, now=now)
    assert [p for p in alerts.rglob("*.json")] and not (alerts / _day(now - 24 * 40 * HOUR)).exists()
    assert sorted(a["title"] for a in get_monitoring_dashboard_data(tmp_path, hours=24 * 41, now=now)[
        "recent_alerts"]) == ["edge", "fresh", "old"]  # fmt: skip
    assert summary is not None
