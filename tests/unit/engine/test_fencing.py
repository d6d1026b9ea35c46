"""Zombie safety: a newer attempt on the same job folder fences out an older one that still runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.checkpoints import Fence
from airflow_batch_provider.exceptions import StaleAttemptError
from airflow_batch_provider.storage import Location

SLOW_JOB = """
import sys, time
from airflow_batch_provider.engine import run_batch_job

def slow(batch, ctx):
    time.sleep(0.4)
    return batch

run_batch_job(sys.argv[1], slow, output_path=sys.argv[2], epoch=1,
              config={"batch_size": 100, "max_concurrent_batches": 1, "checkpoint_interval": 1})
"""


def _wait_for_checkpoint(out, timeout=60.0):
    deadline = time.monotonic() + timeout
    path = out / "g0001" / "_checkpoint.json"
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text()).get("segments", 0) >= 1:
            return
        time.sleep(0.05)
    raise AssertionError("the first attempt never checkpointed")


def test_a_newer_attempt_fences_out_a_running_older_one(two_files, tmp_path):
    out = tmp_path / "out"
    old = subprocess.Popen(
        [sys.executable, "-c", SLOW_JOB, str(two_files), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_checkpoint(out)
        result = run_batch_job(
            two_files, "passthrough", output_path=out, epoch=2, config=BatchConfig(batch_size=100)
        )
        _, err = old.communicate(timeout=120)
    finally:
        old.kill()
    assert old.returncode != 0
    assert "StaleAttemptError" in err and "newer attempt" in err
    clean = run_batch_job(
        two_files, "passthrough", output_path=tmp_path / "clean", config=BatchConfig(batch_size=100)
    )
    pd.testing.assert_frame_equal(read_output(result.output_uri), read_output(clean.output_uri))
    assert result.rows_out == 1777


def test_an_older_epoch_cannot_take_a_folder_a_running_attempt_owns(tmp_path):
    out = Location.of(tmp_path / "job")
    newer = Fence.acquire(out, 5)
    out.child("g0001", "_checkpoint.json").write_json({"status": "running"})
    with pytest.raises(StaleAttemptError, match="newer attempt"):
        Fence.acquire(out, 3)
    newer.check()  # still the owner
    assert Fence.acquire(out, None).epoch == 6
    with pytest.raises(StaleAttemptError):
        newer.check()
