"""BatchFailureNotifier on real job folders: the position from the checkpoint, one message per failure."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from airflow.sdk import DAG, BaseNotifier

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.position import claim_notice, job_position
from airflow_batch_provider.notifications.failure import BatchFailureNotifier
from airflow_batch_provider.operators.batch import BatchJobOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore


def write_checkpoint(folder: Path, gen: int = 1, **counters) -> Path:
    path = folder / f"g{gen:04d}" / "_checkpoint.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "failed", "updated_at": 1.0, "counters": counters}))
    return path


def task(output_path):
    with DAG("notify_dag", schedule=None):
        return BatchJobOperator(task_id="job", source="/x", processor="count", output_path=str(output_path))


def ctx(output_path, try_number=2):
    ti = FakeTI(try_number=try_number)
    return {"ti": ti, "task": task(output_path), "task_state_store": StateStore()}


def test_message_gives_the_position_and_is_sent_once_per_try(tmp_path):
    folder = tmp_path / "job"
    write_checkpoint(folder, 1, rows_done=1_000, chunks_done=1)
    write_checkpoint(folder, 2, rows_done=5_300_000, rows_total=8_400_000, chunks_done=53, chunks_total=84)
    sent = []
    notifier = BatchFailureNotifier(message="{{ ti.task_id }} try {{ ti.try_number }}", target=sent.append)
    notifier(ctx(folder))
    notifier(ctx(folder))  # Airflow ran the callback twice (executor event + heartbeat timeout)
    assert sent == ["job try 2: failed at 63% (chunk 53/84), 5,300,000 rows kept; will resume from chunk 53"]
    assert (folder / "g0002" / "_notified" / "try-2").exists()
    notifier(ctx(folder, try_number=3))  # the next failure is a new message
    assert len(sent) == 2


def test_concurrent_callbacks_in_two_processes_send_one_message(tmp_path):
    folder = tmp_path / "job"
    write_checkpoint(folder, 1, rows_done=10, chunks_done=1, chunks_total=4)
    position = job_position(folder)
    # spawned, not forked: a fork of the test process (threads of earlier tests' servers and loggers) can inherit
    # a lock held by another thread and hang
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        claims = pool.starmap(claim_notice, [(str(folder), position, "try-1")] * 8)
    assert sorted(claims) == [False] * 7 + [True]


def test_without_a_checkpoint_it_says_the_job_starts_over(tmp_path):
    sent = []
    BatchFailureNotifier(message="m", target=sent.append)(ctx(tmp_path / "never-started"))
    assert sent == ["m: failed before its first checkpoint; the next try starts from the beginning"]


def test_output_path_param_and_another_notifier_as_target(tmp_path):
    class Collect(BaseNotifier):
        template_fields = ("text",)

        def __init__(self, text):
            super().__init__()
            self.text = text
            self.got = []

        def notify(self, context):
            self.got.append(self.text)

    folder = tmp_path / "elsewhere"
    write_checkpoint(folder, 3, rows_done=50, rows_total=200, chunks_done=1, chunks_total=4)
    inner = Collect(text=">> {{ batch_failure_message }}")
    notifier = BatchFailureNotifier(message="m", target=inner, output_path=str(folder))
    notifier({"ti": FakeTI(try_number=1)})
    assert inner.got == [">> m: failed at 25% (chunk 1/4), 50 rows kept; will resume from chunk 1"]


def test_logs_when_no_target(tmp_path, capsys):
    write_checkpoint(tmp_path, 1, rows_done=5, chunks_done=1)
    BatchFailureNotifier(message="m")(ctx(tmp_path))  # Airflow's logging is structlog, on stdout here
    assert "m: failed (chunk 1), 5 rows kept; will resume from chunk 1" in capsys.readouterr().out


def test_position_of_a_real_failed_job(tmp_path, make_parquet):
    make_parquet(sample_frame(1000, seed=1), "a.parquet")
    folder = tmp_path / "out"

    def fail_at_600(batch, ctx):
        if ctx.start_row == 600:
            raise RuntimeError("processor bug")
        return batch

    config = BatchConfig(batch_size=200, max_concurrent_batches=1, checkpoint_interval=1, retry_attempts=0)
    with pytest.raises(Exception):  # noqa: B017 - the engine's failure type is not the point here
        run_batch_job(str(tmp_path / "src"), fail_at_600, config=config, output_path=str(folder))
    position = job_position(folder)
    assert (position.generation, position.chunks_done, position.rows_done) == (1, 3, 600)
    sent = []
    notifier = BatchFailureNotifier(message="m", target=sent.append)
    notifier(ctx(folder, try_number=1))
    notifier(ctx(folder, try_number=1))
    assert len(sent) == 1 and "(chunk 3/5), 600 rows kept; will resume from chunk 3" in sent[0]
    assert "failed at 60%" in sent[0]
