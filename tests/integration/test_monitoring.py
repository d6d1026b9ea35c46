"""Monitoring end to end through BatchJobOperator: each alert driven by a real condition, delivered to an
``alert_callbacks`` callable and to a ``BatchAlertNotifier`` bound to the task context, once per condition;
metrics reaching Airflow's stats object; the UI plugin's dashboard under a real scheduler."""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.monitoring import (
    Alert,
    AlertRules,
    ResourceSampler,
    get_monitoring_dashboard_data,
)
from airflow_batch_provider.notifications.alert import BatchAlertNotifier
from airflow_batch_provider.operators.batch import BatchJobOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"cpu_saturation_percent": None, "throughput_drop_ratio": None, "failure_rate": None}


@pytest.fixture
def source(make_parquet):
    return make_parquet(sample_frame(2000, seed=3), row_group_size=100)


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


@dataclass
class Run:
    summary: dict
    alerts: list[Alert]
    delivered: list[str]
    recorded: list[dict]

    def of(self, condition: str) -> list[Alert]:
        return [a for a in self.alerts if a.condition == condition]


def run_operator(base, source, processor, config, alert_rules, task_id="job", **kwargs) -> Run:
    """op.execute with alerts going to a list and to a notifier (its target another list)."""
    alerts: list[Alert] = []
    delivered: list[str] = []
    notifier = BatchAlertNotifier(
        message="{{ alert.level }}|{{ alert.condition }}|{{ ti.dag_id }}.{{ ti.task_id }}",
        target=delivered.append,
    )
    op = BatchJobOperator(
        task_id=task_id,
        source=str(source),
        processor=processor,
        config=config,
        alert_rules=alert_rules,
        alert_callbacks=[alerts.append, notifier],
        retries=0,
        **kwargs,
    )
    summary = op.execute(context(FakeTI(task_id=task_id)))
    recorded = [r for r in get_monitoring_dashboard_data(base)["recent_alerts"] if r["task_id"] == task_id]
    return Run(summary, alerts, delivered, recorded)


def run_isolated(*args, **kwargs) -> Run:
    """:func:`run_operator` in a spawned process: its process tree is the task's and its chunk workers only, not
    this test process's (which also holds the servers other tests started: schedulers, a dag-processor,
    Celery workers, whose CPU would count as the job's)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_operator, *args, **kwargs).result(timeout=600)


def assert_delivered_once(run: Run, condition: str, task_id: str = "job") -> Alert:
    """One alert for the condition, the same one in the notifier's messages and the alert records."""
    (alert,) = run.of(condition)
    assert run.delivered.count(f"{alert.level}|{condition}|batch_dag.{task_id}") == 1
    assert [r["condition"] for r in run.recorded].count(condition) == 1
    assert alert.job_id == f"batch_dag/manual__2026-11-28T10:00:00+00:00/{task_id}/-1"
    return alert


# -- memory ---------------------------------------------------------------------------------------
def allocate(batch, context, megabytes):
    if megabytes and context.chunk_index == 1:
        block = np.ones(megabytes * 2**20 // 8)  # touched: really resident
        time.sleep(1.5)  # held across many 0.1 s samples: one alert, not one per sample
        del block
    return batch


def test_memory_alert_from_a_processor_that_allocates(base, source):
    config = BatchConfig(batch_size=500, max_concurrent_batches=1, progress_interval_seconds=0)
    samples = []
    sampler = ResourceSampler(0.05, callbacks=[samples.append], measure_pss=True).start()
    try:  # the tree's peak without the allocation
        run_operator(
            base, source, allocate, config, {**QUIET, "memory_limit_mb": None}, task_id="base", megabytes=0
        )
    finally:
        sampler.stop()
    peak_pss = max(s.pss_mb for s in samples)
    limit = 2 * (peak_pss + 150)  # threshold: the tree's real peak + 150 MB; the allocation is 400 MB
    rules = {**QUIET, "memory_limit_mb": limit, "memory_fraction": 0.5, "sample_interval_s": 0.1}
    control = run_operator(base, source, allocate, config, rules, task_id="control", megabytes=0)
    assert control.alerts == [] and control.delivered == []  # decided on PSS, though the RSS sum may pass it
    run = run_operator(base, source, allocate, config, rules, megabytes=400)
    alert = assert_delivered_once(run, "memory")
    assert alert.metric == "memory_mb" and alert.level == "warning"
    assert alert.value > alert.threshold == pytest.approx(limit / 2)
    assert run.summary["rows_out"] == 2000


# -- CPU ------------------------------------------------------------------------------------------
def busy(batch, context, seconds, spin):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not spin:
            time.sleep(0.05)
    return batch


def test_cpu_alert_from_busy_workers_and_none_from_sleeping_ones(base, source):
    config = BatchConfig(batch_size=500, max_concurrent_batches=4, progress_interval_seconds=0)
    # 10% of the usable cores: four spinning workers stay above it even on a machine shared with other jobs
    rules = {**QUIET, "memory_limit_mb": None, "cpu_saturation_percent": 10, "cpu_sustained_s": 1.0,
             "sample_interval_s": 0.2}  # fmt: skip
    idle = run_isolated(base, source, busy, config, rules, task_id="idle", seconds=3.0, spin=False)
    assert idle.alerts == [] and idle.delivered == []
    run = run_isolated(base, source, busy, config, rules, seconds=3.0, spin=True)
    alert = assert_delivered_once(run, "cpu")  # saturated for ~3 s of 0.2 s samples: one alert
    assert alert.metric == "cpu_saturation" and alert.value >= 10


# -- throughput -----------------------------------------------------------------------------------
def slow_chunks(batch, context, slow):
    time.sleep(2.0 if context.chunk_index in slow else 0.15)  # 0.15 s: a loaded machine's hiccups stay small
    return batch


def test_throughput_alert_on_slow_chunks_once_while_they_last(base, source):
    config = BatchConfig(batch_size=100, max_concurrent_batches=1, progress_interval_seconds=0)
    rules = {**QUIET, "memory_limit_mb": None, "throughput_drop_ratio": 0.3}
    steady = run_operator(base, source, slow_chunks, config, rules, task_id="steady", slow=[])
    assert steady.alerts == []
    run = run_operator(base, source, slow_chunks, config, rules, slow=[10, 11])  # two slow in a row
    alert = assert_delivered_once(run, "throughput")
    assert alert.metric == "rows_per_second" and alert.value < alert.threshold


# -- failure rate ---------------------------------------------------------------------------------
def fail_once(batch, context, marker_dir, every):
    marker = Path(marker_dir) / f"chunk-{context.chunk_index}"
    if context.chunk_index % every == 0 and not marker.exists():
        marker.touch()
        raise ConnectionError("flaky store")
    return batch


def test_failure_rate_alert_from_chunks_that_retry(base, source, tmp_path):
    config = BatchConfig(batch_size=200, max_concurrent_batches=1, retry_delay_seconds=0)
    rules = {**QUIET, "memory_limit_mb": None, "failure_rate": 0.1, "min_failures": 2}
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    rare = run_operator(base, source, fail_once, config, rules, task_id="rare", marker_dir=str(tmp_path / "m1"),
                        every=100)  # fmt: skip
    assert len(list((tmp_path / "m1").iterdir())) == 1 and rare.alerts == []  # one retry: under min_failures
    run = run_operator(base, source, fail_once, config, rules, marker_dir=str(tmp_path / "m2"), every=3)
    assert len(list((tmp_path / "m2").iterdir())) == 4  # chunks 0, 3, 6, 9 retried once each
    alert = assert_delivered_once(run, "failures")  # the rate stays above 10% to the end: still one alert
    assert alert.metric == "retry_rate" and alert.value > 0.1
    assert run.summary["rows_out"] == 2000


# -- timeout --------------------------------------------------------------------------------------
def sleepy(batch, context, seconds):
    time.sleep(seconds)
    return batch


def test_timeout_alert_when_the_job_is_projected_to_miss_it(base, source):
    config = BatchConfig(batch_size=100, max_concurrent_batches=1, progress_interval_seconds=0)
    rules = {**QUIET, "memory_limit_mb": None, "timeout_seconds": 60}
    fine = run_operator(base, source, sleepy, config, rules, task_id="fine", seconds=0.1)
    assert fine.alerts == []
    rules["timeout_seconds"] = 1.0  # 20 chunks x 0.1 s cannot finish in 1 s
    run = run_operator(base, source, sleepy, config, rules, seconds=0.1)
    alert = assert_delivered_once(run, "timeout")  # projected over 1 s at every event: one alert
    assert alert.level == "critical" and alert.metric == "projected_seconds" and alert.value > 1.0
    assert run.summary["rows_out"] == 2000  # an alert, not a failure: only config.timeout_seconds stops it


def test_an_alert_rules_object_is_copied_per_run_and_bad_thresholds_fail_at_parse(base, source):
    rules = AlertRules(**{**QUIET, "timeout_seconds": 0.5})
    config = BatchConfig(batch_size=500, max_concurrent_batches=1, progress_interval_seconds=0)
    first = run_operator(base, source, sleepy, config, rules, task_id="first", seconds=0.3)
    second = run_operator(base, source, sleepy, config, rules, task_id="second", seconds=0.3)
    assert [a.condition for a in first.alerts] == [a.condition for a in second.alerts] == ["timeout"]
    assert rules.active == {} and rules.callbacks == []  # the user's object keeps no run's state
    with pytest.raises(ValueError, match=r"unknown threshold\(s\) \['memory_limit'\]"):
        BatchJobOperator(task_id="bad", source="/x", processor="count", alert_rules={"memory_limit": 100})
    with pytest.raises(ValueError, match="failure_rate='high' is not a number"):
        BatchJobOperator(task_id="bad", source="/x", processor="count", alert_rules={"failure_rate": "high"})
    with pytest.raises(ValueError, match="sample_interval_s=0 must be a number of seconds above 0"):
        BatchJobOperator(task_id="bad", source="/x", processor="count", alert_rules={"sample_interval_s": 0})


# -- metrics --------------------------------------------------------------------------------------
class RecordingStats:
    """Stands in for ``airflow.sdk.observability.stats`` (no StatsD here): records incr/gauge/timing."""

    def __init__(self):
        self.counters = defaultdict(int)
        self.gauges: dict[str, float] = {}
        self.timings = defaultdict(list)
        self.tags: set[tuple] = set()

    def incr(self, stat, count=None, rate=None, *, tags=None):
        self.counters[stat] += 1 if count is None else count
        self.tags.add(tuple(sorted((tags or {}).items())))

    def gauge(self, stat, value, rate=None, delta=None, *, tags=None):
        self.gauges[stat] = value

    def timing(self, stat, dt, *, tags=None):
        assert isinstance(dt, timedelta)
        self.timings[stat].append(dt.total_seconds())


@pytest.fixture
def stats(monkeypatch):
    import airflow.sdk.observability.stats  # noqa: F401 - the attribute the callback imports

    recorder = RecordingStats()
    monkeypatch.setattr("airflow.sdk.observability.stats", recorder)
    return recorder


def test_metrics_reach_airflow_stats_through_the_operator(base, source, tmp_path, stats):
    (tmp_path / "m").mkdir()
    config = BatchConfig(batch_size=200, max_concurrent_batches=2, retry_delay_seconds=0,
                         progress_interval_seconds=0)  # fmt: skip
    run = run_operator(base, source, fail_once, config, None, marker_dir=str(tmp_path / "m"), every=4)
    assert run.summary["rows_in"] == 2000
    assert stats.counters["batch_provider.rows_processed"] == 2000
    assert stats.counters["batch_provider.chunks_processed"] == run.summary["chunks_total"] == 10
    assert stats.counters["batch_provider.chunk_failures"] == 3  # chunks 0, 4, 8 failed once
    assert (
        stats.counters["batch_provider.jobs_completed"] == 1
        and "batch_provider.jobs_failed" not in stats.counters
    )
    assert (
        stats.timings["batch_provider.chunk_seconds"]
        and min(stats.timings["batch_provider.chunk_seconds"]) > 0
    )
    assert stats.gauges["batch_provider.peak_memory_mb"] > 10
    assert stats.tags == {(("dag_id", "batch_dag"), ("task_id", "job"))}


def test_no_metrics_when_emit_metrics_is_off(base, source, stats):
    config = BatchConfig(batch_size=500, max_concurrent_batches=1)
    run = run_operator(base, source, "passthrough", config, None, emit_metrics=False)
    assert run.summary["rows_out"] == 2000 and stats.counters == {} and stats.gauges == {}


# -- the dashboard under a real scheduler ----------------------------------------------------------
def _launcher():
    spec = importlib.util.spec_from_file_location("local_airflow", ROOT / "scripts" / "local_airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MONITORED_DAG = """
import time
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchJobOperator


def slow_double(batch, context, seconds):
    time.sleep(seconds)
    return batch.assign(double=batch["amount"] * 2)


with DAG(dag_id="monitored_batch_job", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def data() -> str:
        from airflow_batch_provider.demo import ensure_demo_dataset
        from airflow_batch_provider.operators.batch import base_path

        return ensure_demo_dataset(f"{base_path()}/monitored-data", rows=20_000, files=2)

    BatchJobOperator(
        task_id="slow",
        source=data(),
        processor=slow_double,
        seconds=0.4,
        config=BatchConfig(batch_size=1_000, max_concurrent_batches=2, progress_interval_seconds=0),
        # every task process is over 16 MB: a memory alert while it runs; fresh heartbeats for the test
        alert_rules={"memory_limit_mb": 16, "sample_interval_s": 0.5, "heartbeat_interval_s": 0.5},
    )
"""


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    home = tmp_path_factory.mktemp("monitoring-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "monitored_batch_job.py").write_text(MONITORED_DAG)
    env = {"AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch")}
    with _launcher().LocalAirflow(home, dags, parallelism=4, extra_env=env) as af:
        yield af


@pytest.mark.integration
@pytest.mark.slow
def test_the_plugin_dashboard_lists_the_running_job(airflow):
    import requests

    assert requests.get(f"{airflow.base_url}/batch-provider/api/dashboard", timeout=30).status_code == 401
    airflow.wait_for_dag("monitored_batch_job")
    run_id = airflow.trigger("monitored_batch_job")
    seen: list[float] = []
    alerts: list[dict] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        data = airflow._json("GET", "/batch-provider/api/dashboard")
        jobs = [j for j in data["active_jobs"] if j["run_id"] == run_id]
        if jobs:
            (job,) = jobs
            assert job["dag_id"] == "monitored_batch_job" and job["task_id"] == "slow"
            assert job["progress"].get("rows_total") in (None, 20_000) and job["resources"]["processes"] >= 1
            seen.append(job["progress"].get("progress_percentage") or 0.0)
            alerts = airflow._json("GET", "/batch-provider/api/alerts")["active_alerts"] or alerts
        if airflow.dag_run("monitored_batch_job", run_id)["state"] in ("success", "failed"):
            break
        time.sleep(0.3)
    assert airflow.dag_run("monitored_batch_job", run_id)["state"] == "success"
    assert any(0 < p < 100 for p in seen) and max(seen) > min(seen), seen  # progress moved while it ran
    assert [(a["condition"], a["level"]) for a in alerts] == [("memory", "critical")]
    after = airflow._json("GET", "/batch-provider/api/dashboard")
    assert [j for j in after["active_jobs"] + after["stale_jobs"] if j["run_id"] == run_id] == []
    assert airflow._json("GET", "/batch-provider/api/alerts") == {"active_alerts": []}
    assert [(a["condition"], a["dag_id"]) for a in after["recent_alerts"]] == [
        ("memory", "monitored_batch_job")
    ]
    assert after["failure_statistics"]["total"] == 0
