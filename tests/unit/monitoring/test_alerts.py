"""Each alert threshold driven by a real job (or, for CPU, by samples), delivered once to a callback and a
notifier, and able to fire again after it clears. (Memory and CPU from real processes, and delivery through
the operator: tests/integration/test_monitoring.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import JobTimeoutError
from airflow_batch_provider.monitoring import Alert, AlertRules, JobMonitor, ResourceSampler
from airflow_batch_provider.notifications.alert import BatchAlertNotifier
from tests.conftest import sample_frame


@pytest.fixture
def source(make_parquet):
    return make_parquet(sample_frame(2000, seed=3), row_group_size=100)


def run_monitored(tmp_path, source, processor, config, rules, alerts):
    """A job with run_batch_job's own monitor: alerts go to a list and to a notifier whose target is another
    list; returns the notifier's messages."""
    delivered: list[str] = []
    notifier = BatchAlertNotifier(
        message="{{ alert.level }}|{{ alert.condition }}|{{ alert.job_id }}",
        target=delivered.append,
    )
    run_batch_job(
        source,
        processor,
        config=config,
        output_path=tmp_path / "out",
        job_id="job-1",
        records_path=tmp_path / "base" / "_records",
        alert_rules=rules,
        alert_callbacks=[alerts.append, notifier.alert_callback({"run": "r"})],
    )
    return delivered


def slow_chunk(batch, context):
    if context.chunk_index == 12:
        time.sleep(1.5)
    else:
        time.sleep(0.02)
    return batch


def test_throughput_alert_on_a_slow_chunk(tmp_path, source):
    alerts: list[Alert] = []
    rules = AlertRules(cpu_saturation_percent=None, throughput_drop_ratio=0.3)
    config = BatchConfig(batch_size=100, max_concurrent_batches=1, progress_interval_seconds=0)
    delivered = run_monitored(tmp_path, source, slow_chunk, config, rules, alerts)
    throughput = [a for a in alerts if a.condition == "throughput"]
    assert len(throughput) == 1
    assert throughput[0].value < throughput[0].threshold
    assert delivered == ["warning|throughput|job-1"]


def fail_once(batch, context, marker_dir):
    marker = Path(marker_dir) / f"chunk-{context.chunk_index}"
    if context.chunk_index % 3 == 0 and not marker.exists():
        marker.touch()
        raise ConnectionError("flaky store")
    return batch


def test_failure_rate_alert_from_retried_chunks(tmp_path, source):
    alerts: list[Alert] = []
    rules = AlertRules(cpu_saturation_percent=None, failure_rate=0.1, min_failures=2)
    config = BatchConfig(batch_size=200, max_concurrent_batches=1, retry_delay_seconds=0)
    markers = tmp_path / "markers"
    markers.mkdir()

    def processor(batch, context):
        return fail_once(batch, context, markers)

    delivered = run_monitored(tmp_path, source, processor, config, rules, alerts)
    failures = [a for a in alerts if a.condition == "failures"]
    assert len(failures) == 1 and failures[0].metric == "retry_rate" and failures[0].value > 0.1
    assert delivered == ["warning|failures|job-1"]


def test_timeout_alert_before_the_job_times_out(tmp_path, source):
    alerts: list[Alert] = []
    config = BatchConfig(
        batch_size=100, max_concurrent_batches=1, progress_interval_seconds=0, timeout_seconds=1.5
    )
    rules = {"cpu_saturation_percent": None, "throughput_drop_ratio": None}  # the timeout: the config's

    def slow(batch, context):
        time.sleep(0.2)  # 20 chunks x 0.2 s: projected 4 s against a 1.5 s timeout
        return batch

    with pytest.raises(JobTimeoutError):
        run_monitored(tmp_path, source, slow, config, rules, alerts)
    timeout = [a for a in alerts if a.condition == "timeout"]
    assert len(timeout) == 1 and timeout[0].level == "critical" and timeout[0].value > 1.5


def test_cpu_alert_needs_a_sustained_period_and_fires_again_after_clearing():
    alerts: list[Alert] = []
    rules = AlertRules("j", cpu_saturation_percent=90, cpu_sustained_s=10, callbacks=[alerts.append])
    busy = [{"time": t, "cpu_saturation": 99.0, "rss_mb": 1.0} for t in (0, 5, 9)]
    for sample in busy:
        rules.on_sample(sample)
    assert alerts == []  # saturated for 9 s only
    for t in (10, 15, 20):
        rules.on_sample({"time": t, "cpu_saturation": 97.0})
    assert len(alerts) == 1 and alerts[0].condition == "cpu" and "cpu" in rules.active
    rules.on_sample({"time": 21, "cpu_saturation": 10.0})
    assert "cpu" not in rules.active
    for t in (22, 40):
        rules.on_sample({"time": t, "cpu_saturation": 99.0})
    assert len(alerts) == 2


def test_a_failing_callback_does_not_stop_delivery():
    got: list[Alert] = []

    def broken(alert):
        raise RuntimeError("boom")

    rules = AlertRules("j", memory_limit_mb=100, callbacks=[broken, got.append])
    rules.on_sample({"time": 1, "rss_mb": 500.0})
    rules.on_sample({"time": 2, "rss_mb": 600.0})
    assert [a.level for a in got] == ["critical"]
    assert got[0].to_dict()["threshold"] == 85.0


def test_rules_from_a_mapping_an_object_or_none():
    config = BatchConfig(memory_limit_mb=1000, timeout_seconds=60)
    rules = AlertRules.from_value({"memory_fraction": 0.5, "failure_rate": None}, "j", config=config)
    assert (rules.job_id, rules.memory_limit_mb, rules.memory_fraction, rules.timeout_seconds) == (
        "j",
        1000,
        0.5,
        60,
    )
    assert rules.failure_rate is None and rules.cpu_saturation_percent == 95.0
    assert AlertRules.from_value({"memory_limit_mb": None}, config=config).memory_limit_mb is None  # off
    assert AlertRules.from_value(None, config=config).timeout_seconds == 60
    mine = AlertRules("mine", memory_limit_mb=10, callbacks=[print])
    mine.on_sample({"time": 1, "rss_mb": 50.0})
    copy = AlertRules.from_value(mine, "other", config=config, callbacks=[repr])
    assert copy is not mine and copy.active == {} and "memory" in mine.active  # thresholds, not state
    assert (copy.job_id, copy.memory_limit_mb, copy.timeout_seconds, copy.callbacks) == (
        "mine",
        10,
        None,
        [print, repr],
    )
    monitor = JobMonitor(
        "j", rules={"cpu_sustained_s": 5, "sample_interval_s": 0.5, "heartbeat_interval_s": 1}
    )
    assert (monitor.rules.cpu_sustained_s, monitor.sample_interval_s, monitor.heartbeat_interval_s) == (
        5,
        0.5,
        1,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"cpu_percent": 90}, r"unknown threshold\(s\) \['cpu_percent'\]; use memory_limit_mb"),
        ({"memory_fraction": None}, "memory_fraction=None is not a number"),
        ({"failure_rate": float("nan")}, "failure_rate=nan is not a number"),
        ({"min_failures": True}, "min_failures=True is not a number"),
        ({"timeout_seconds": -1}, "timeout_seconds=-1 must not be negative"),
        ({"heartbeat_interval_s": "5"}, "heartbeat_interval_s='5' must be a number of seconds above 0"),
    ],
)
def test_bad_thresholds_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        JobMonitor("j", rules=value)


def test_rules_of_the_wrong_type():
    with pytest.raises(
        TypeError, match="alert_rules must be an AlertRules or a mapping of thresholds, not list"
    ):
        AlertRules.from_value([("failure_rate", 0.5)])


def _hold(ready, done):
    ready.set()
    done.wait(60)


def test_memory_shared_with_forked_workers_is_counted_once(tmp_path):
    """The RSS sum counts the pages a forked child shares with its parent twice; PSS decides the alert."""
    import multiprocessing

    block = np.ones(300 * 2**20 // 8)  # 300 MB, touched, then shared copy-on-write with the child
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(ready, done))
    child.start()
    try:
        assert ready.wait(30)
        sampler = ResourceSampler(measure_pss=True)
        sample = sampler.sample()
        assert sample.rss_mb > sample.pss_mb + 250  # the shared 300 MB once per process in RSS
        between = (sample.rss_mb + sample.pss_mb) / 2  # over the real footprint, under the RSS sum
        outcomes = {}
        for name, threshold in (("between", between), ("under", sample.pss_mb - 100)):
            alerts: list[Alert] = []
            rules = {"memory_limit_mb": threshold, "memory_fraction": 1.0, "cpu_saturation_percent": None}
            with JobMonitor(name, base_path=tmp_path, rules=rules, alert_callbacks=[alerts.append],
                            sample_interval_s=0.1):  # fmt: skip
                time.sleep(0.6)
            outcomes[name] = alerts
        assert outcomes["between"] == []
        (alert,) = outcomes["under"]
        assert "(PSS)" in alert.message and alert.value < sample.rss_mb - 200
    finally:
        done.set()
        child.join(30)
        del block


def test_skip_rate_alert_from_quarantined_rows(tmp_path):
    """Corrupt bytes in 200 rows of one chunk of a CSV file, quarantined row by row under
    ``max_skipped_fraction``: progress events carry ``rows_skipped`` and the failure rule fires once on the
    skip rate (no retries happened)."""
    rows, bad_rows, batch = 40_000, range(10_500, 10_700), 2_000
    frame = sample_frame(rows)[["id", "x", "cat"]]
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    data = bytearray(path.read_bytes())
    lines = data.split(b"\n")
    for bad_row in bad_rows:
        data[sum(len(line) + 1 for line in lines[: bad_row + 1])] = 0xFF
    path.write_bytes(bytes(data))
    alerts: list[Alert] = []
    result = run_batch_job(
        path,
        "passthrough",
        config=BatchConfig(batch_size=batch, max_concurrent_batches=1),
        output_path=tmp_path / "out",
        records_path=tmp_path / "base" / "_records",
        recovery={"max_skipped_fraction": 0.1},
        alert_rules={"failure_rate": 0.004, "cpu_saturation_percent": None, "throughput_drop_ratio": None},
        alert_callbacks=[alerts.append],
    )
    assert result.extra["rows_skipped"] == len(bad_rows) and result.rows_out == rows - len(bad_rows)
    skipped = [a for a in alerts if a.condition == "failures"]
    assert len(skipped) == 1, [a.to_dict() for a in alerts]
    # the rate of the rows processed when it fired: past the rule's rate as the rows were listed one by one
    assert skipped[0].metric == "skip_rate" and 0.004 <= skipped[0].value <= 0.1
    assert "rows skipped" in skipped[0].message
