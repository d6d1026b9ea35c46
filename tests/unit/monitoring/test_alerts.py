"""Each alert threshold driven by a real job (or, for CPU, by samples), delivered once to a callback and a
notifier, and able to fire again after it clears."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import JobTimeoutError
from airflow_batch_provider.monitoring import Alert, AlertRules, JobMonitor
from airflow_batch_provider.monitoring.notifier import BatchAlertNotifier
from tests.conftest import sample_frame


@pytest.fixture
def source(make_parquet):
    return make_parquet(sample_frame(2000, seed=3), row_group_size=100)


def run_monitored(tmp_path, source, processor, config, rules, alerts, **monitor_kwargs):
    """A job inside a JobMonitor: alerts go to a list and to a notifier whose target is another list."""
    delivered: list[str] = []
    notifier = BatchAlertNotifier(
        message="{{ alert.level }}|{{ alert.condition }}|{{ alert.job_id }}",
        target=delivered.append,
    )
    monitor = JobMonitor(
        "job-1",
        base_path=tmp_path / "base",
        rules=rules,
        alert_callbacks=[alerts.append, notifier.alert_callback({"run": "r"})],
        **monitor_kwargs,
    )
    monitor.start()
    try:
        run_batch_job(
            source,
            processor,
            config=config,
            output_path=tmp_path / "out",
            progress_callbacks=[monitor.on_event],
        )
    finally:
        monitor.stop()
    return delivered


def allocate(batch, context):
    if context.chunk_index == 2:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(1.0)  # long enough for the 0.1 s sampler to see it
        del block
    return batch


def test_memory_alert_from_a_processor_that_allocates(tmp_path, source):
    alerts: list[Alert] = []
    rules = AlertRules(memory_limit_mb=200, memory_fraction=0.75, cpu_saturation_percent=None)
    config = BatchConfig(batch_size=500, max_concurrent_batches=1, memory_limit_mb=200)
    delivered = run_monitored(tmp_path, source, allocate, config, rules, alerts, sample_interval_s=0.1)
    memory = [a for a in alerts if a.condition == "memory"]
    assert len(memory) == 1  # one alert for the whole allocation, however many samples saw it
    alert = memory[0]
    assert alert.metric == "memory_mb" and alert.value > alert.threshold == 150
    assert alert["job_id"] == "job-1" and alert.level in ("warning", "critical")
    assert delivered.count(f"{alert.level}|memory|job-1") == 1


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
    rules = AlertRules(cpu_saturation_percent=None, throughput_drop_ratio=None, timeout_seconds=1.5)

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
