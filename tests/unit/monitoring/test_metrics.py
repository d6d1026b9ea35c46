"""Airflow metrics from a real job's progress events, through a stats object given to the callback (the
statsd package is not installed here, so the seam is the ``stats`` constructor parameter)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.operators.metrics import BatchMetricsCallback
from tests.conftest import sample_frame


class RecordingStats:
    """The three calls of ``airflow.sdk.observability.stats`` we use, recorded."""

    def __init__(self):
        self.counters = defaultdict(int)
        self.gauges = {}
        self.timings = defaultdict(list)
        self.tags = set()

    def incr(self, stat, count=None, rate=None, *, tags=None):
        self.counters[stat] += 1 if count is None else count
        self.tags.add(tuple(sorted((tags or {}).items())))

    def gauge(self, stat, value, rate=None, delta=None, *, tags=None):
        self.gauges[stat] = value

    def timing(self, stat, dt, *, tags=None):
        assert isinstance(dt, timedelta)  # a bare float would be read as milliseconds
        self.timings[stat].append(dt.total_seconds())


def test_counters_add_up_to_the_job(tmp_path, make_parquet):
    source = make_parquet(sample_frame(1500, seed=5), row_group_size=100)
    stats = RecordingStats()
    metrics = BatchMetricsCallback({"dag_id": "d"}, stats=stats)
    result = run_batch_job(
        source,
        "passthrough",
        config={"batch_size": 100, "max_concurrent_batches": 1, "progress_interval_seconds": 0},
        output_path=tmp_path / "out",
        progress_callbacks=[metrics],
    )
    assert stats.counters["batch_provider.rows_processed"] == result.rows_in == 1500
    assert stats.counters["batch_provider.chunks_processed"] == result.chunks_total == 15
    assert stats.counters["batch_provider.jobs_completed"] == 1
    assert stats.counters["batch_provider.chunk_failures"] == 0
    assert (
        stats.timings["batch_provider.chunk_seconds"]
        and min(stats.timings["batch_provider.chunk_seconds"]) > 0
    )
    assert stats.gauges["batch_provider.peak_memory_mb"] > 10
    assert stats.tags == {(("dag_id", "d"),)}


def test_resumed_rows_are_not_counted_again_and_retries_count_as_failures():
    stats = RecordingStats()
    metrics = BatchMetricsCallback(stats=stats)
    base = {"progress_percentage": 0, "rows_total": 1000, "chunks_total": 10, "rows_per_second": 1.0}
    events = [
        {**base, "event_type": "started", "rows_processed": 600, "chunks_done": 6, "timestamp": 10.0},
        {**base, "event_type": "retry", "rows_processed": 600, "chunks_done": 6, "timestamp": 11.0},
        {**base, "event_type": "progress", "rows_processed": 800, "chunks_done": 8, "timestamp": 12.0,
         "extra": {"rows_skipped": 5}},
        {**base, "event_type": "failed", "rows_processed": 900, "chunks_done": 9, "timestamp": 13.0},
    ]  # fmt: skip
    for event in events:
        metrics(event)
    assert stats.counters["batch_provider.rows_processed"] == 300
    assert stats.counters["batch_provider.chunks_processed"] == 3
    assert stats.counters["batch_provider.chunk_failures"] == 2
    assert stats.counters["batch_provider.rows_skipped"] == 5
    assert stats.counters["batch_provider.jobs_failed"] == 1
    assert stats.timings["batch_provider.chunk_seconds"] == [0.5, 1.0]
