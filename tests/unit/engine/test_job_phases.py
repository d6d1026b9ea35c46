"""One progress per job: a job with a statistics pass reports "statistics 1/2" then "processing 2/2" with one
percentage over both, under one job id, with one ``started`` and one ``completed``; never 100% before it ends."""

from __future__ import annotations

import logging

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.monitoring import JobMonitor
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore, context

CONFIG = BatchConfig(batch_size=150, max_concurrent_batches=1, progress_interval_seconds=0)


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    return tmp_path / "src"


def _events(source, out, processor="data_profiling", **params):
    got = []
    run_batch_job(
        str(source), processor, config=CONFIG, output_path=str(out), progress_callbacks=[got.append], **params
    )
    return got


def test_a_statistics_pass_is_phase_one_of_one_progress(source, tmp_path):
    events = _events(source, tmp_path / "out")
    kinds = [e.event_type for e in events]
    assert kinds.count("started") == 1 and kinds.count("completed") == 1
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert {e.job_id for e in events} == {events[0].job_id}  # the statistics pass reports under the job's id
    labels = [e.phase_label for e in events]
    first_processing = labels.index("processing 2/2")
    assert set(labels[:first_processing]) == {"statistics 1/2"}
    assert set(labels[first_processing:]) == {"processing 2/2"}
    assert "phase_completed" in kinds[:first_processing]  # the statistics pass ended, the job did not
    percents = [e.progress_percentage for e in events]
    assert percents == sorted(percents)  # one percentage over both phases, never going back
    assert all(p < 100 for p in percents[:-1]) and percents[-1] == 100.0
    statistics = [e for e in events if e.phase == "statistics"]
    assert max(e.progress_percentage for e in statistics) == 50.0  # each phase reads every row: equal shares
    assert all(e.eta_seconds is None for e in statistics)  # the processing phase's speed is not known yet
    processing = [e for e in events if e.phase == "processing" and e.event_type == "progress"]
    assert processing and all(50.0 < e.progress_percentage < 100 for e in processing)
    assert all(
        e.phase_percentage == pytest.approx(100.0 * e.rows_processed / e.rows_total, abs=0.01)
        for e in processing
    )


def test_a_job_without_a_statistics_pass_has_one_phase(source, tmp_path):
    events = _events(source, tmp_path / "out", processor=lambda batch, context: batch)
    assert {(e.phase, e.phase_index, e.phases_total) for e in events} == {("processing", 1, 1)}
    assert all(e.phase_label == "" and "phase_" not in e.event_type for e in events)
    assert events[-1].event_type == "completed" and events[-1].progress_percentage == 100.0


def test_a_resumed_job_whose_statistics_pass_is_done_starts_in_phase_two(source, tmp_path):
    out = tmp_path / "out"
    calls = []

    def stop_after_two(event):
        calls.append(event)
        if event.phase == "processing" and event.event_type == "checkpoint" and event.chunks_done >= 2:
            raise KeyboardInterrupt  # the task is killed after the statistics pass and two chunks

    with pytest.raises(KeyboardInterrupt):
        run_batch_job(
            str(source), "data_profiling", config=CONFIG.with_overrides({"checkpoint_interval": 1}),
            output_path=str(out), progress_callbacks=[stop_after_two],
        )  # fmt: skip
    events = _events(source, out)
    assert events[0].event_type == "started" and events[0].phase_label == "processing 2/2"
    assert events[0].progress_percentage > 50.0  # the resumed chunks count
    assert "statistics" not in {e.phase for e in events}


def test_the_log_and_the_task_state_store_show_the_phase(source, tmp_path, caplog):
    written = []

    class Recording(StateStore):
        def set(self, key, value, *, retention=None):
            super().set(key, value, retention=retention)
            if key == "progress":
                written.append(dict(value))

    op = DataProfilingOperator(
        task_id="profile",
        source=str(source),
        output_path=str(tmp_path / "out"),
        config=CONFIG,
        allow_any_output_path=True,
    )
    store = Recording()
    with caplog.at_level(logging.INFO, logger="airflow_batch_provider.progress"):
        op.execute(context(FakeTI(task_id="profile"), store))
    assert [w["phase"] for w in written][0] == "statistics" and written[-1]["phase"] == "processing"
    assert written[-1]["state"] == "completed" and written[-1]["percent"] == 100.0
    assert all(w["percent"] < 100 for w in written[:-1])
    assert [w["percent"] for w in written] == sorted(w["percent"] for w in written)
    assert store["checkpoint"]["status"] == "succeeded"
    lines = [r.getMessage() for r in caplog.records]
    assert any("| statistics 1/2 (" in line for line in lines)
    assert any(line.startswith("phase_completed:  50.0% | statistics 1/2 (100.0%)") for line in lines)
    assert any("| processing 2/2 (" in line for line in lines)


def test_the_heartbeat_carries_one_progress(source, tmp_path):
    seen = []
    with JobMonitor(
        "job-1", output_uri=str(tmp_path / "out"), records_path=str(tmp_path / "records")
    ) as monitor:

        class Recording:  # every heartbeat the dashboard would read, as written
            def __init__(self, location):
                self.location = location

            def __getattr__(self, name):
                return getattr(self.location, name)

            def write_json(self, value, **kwargs):
                seen.append(value["progress"])
                return self.location.write_json(value, **kwargs)

        monitor.heartbeat = Recording(monitor.heartbeat)
        run_batch_job(str(source), "data_profiling", config=CONFIG, output_path=str(tmp_path / "out"),
                      progress_callbacks=[monitor.on_event])  # fmt: skip
    phases = [(p.get("phase"), p.get("event_type")) for p in seen if p]
    assert ("statistics", "phase_completed") in phases and phases[-1] == ("processing", "completed")
    assert all(p["progress_percentage"] < 100 for p in seen[:-1] if p)
