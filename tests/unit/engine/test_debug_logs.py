"""DEBUG logs say what someone debugging a job needs: each chunk (range, worker, rows in/out, seconds, memory),
the sizing inputs, every checkpoint write, the resume decision per row range; and nothing of it below DEBUG."""

from __future__ import annotations

import logging
import os
import re

import pytest

from airflow_batch_provider.engine import run_batch_job
from tests.conftest import sample_frame

LOGGER = "airflow_batch_provider"  # the reference's logging.getLogger(...).setLevel(logging.DEBUG)


def _fail_late(batch, ctx, flag):
    if ctx.start_row >= 300 and not os.path.exists(flag):
        raise ValueError("not yet")
    return batch


def _debug(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]


def test_chunks_checkpoints_and_resume_ranges_at_debug(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    df, out, flag = sample_frame(500, seed=1), tmp_path / "job", str(tmp_path / "flag")
    config = {"batch_size": 100, "max_concurrent_batches": 2, "retry_attempts": 0, "checkpoint_interval": 1}
    with pytest.raises(Exception, match="not yet"):
        run_batch_job(df, _fail_late, config=config, output_path=out, job_id="dbg", flag=flag)
    lines = _debug(caplog)
    chunk = [m for m in lines if m.startswith("job dbg: chunk ")]
    assert len(chunk) == 3, chunk
    pattern = (r"job dbg: chunk .*frame-\w+\.parquet rows (\d+)-(\d+) done by worker pid (\d+): 100 rows in, "
               r"100 rows out, \d+\.\d{3}s, memory peak [\d.]+ MB over the worker's baseline "
               r"\([\d.]+ MB retained before it\)")  # fmt: skip
    ranges = sorted(tuple(map(int, re.match(pattern, m).groups()[:2])) for m in chunk)
    assert ranges == [(0, 100), (100, 200), (200, 300)]
    assert all(int(re.match(pattern, m).group(3)) != os.getpid() for m in chunk)  # the fork workers' pids
    checkpoints = [m for m in lines if m.startswith("checkpoint ") and "generation 1" in m]
    assert any("generation 1 running, segment 0 with 1 new range(s)" in m for m in checkpoints)
    assert any(" failed, " in m and "3 range(s), 300 rows done in all" in m for m in checkpoints)
    assert any("resume decision for" in m and "generations none" in m for m in lines)
    assert not any("resume: " in m for m in lines)  # nothing to resume in the first try

    caplog.clear()
    open(flag, "w").close()
    run_batch_job(df, _fail_late, config=config, output_path=out, job_id="dbg", flag=flag)
    lines = _debug(caplog)
    resume = [re.sub(r".*frame-\w+\.parquet ", "", m) for m in lines if m.startswith("job dbg: resume: ")]
    assert resume == ["rows 0-300 finished in an earlier try: skipped", "rows 300-500 to run"]
    assert any("resume decision for" in m and "generations [1]" in m for m in lines)
    assert any(m.startswith("in-memory source (pandas.DataFrame): 500 rows x 5 columns") for m in lines)


def test_sizing_inputs_at_debug_and_silence_above_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    run_batch_job(sample_frame(300, seed=2), "count", output_path=tmp_path / "a")  # auto-sized
    (sizing,) = [m for m in _debug(caplog) if m.startswith("sizing inputs: ")]
    assert "300 of 300 rows sampled" in sizing and "profile count" in sizing and "CPU(s)" in sizing
    caplog.clear()
    caplog.set_level(logging.INFO, logger=LOGGER)
    run_batch_job(sample_frame(300, seed=2), "count", output_path=tmp_path / "b")
    assert not [r for r in caplog.records if r.levelno < logging.INFO]
