"""A job started from a daemonic process still gets its chunk worker pool.

Under CeleryExecutor a task process is forked from a Celery prefork pool process and inherits its daemon flag;
multiprocessing then refuses to start children ("daemonic processes are not allowed to have children").
"""

from __future__ import annotations

import multiprocessing

from tests.conftest import sample_frame


def _job(source: str, output: str, queue) -> None:
    from airflow_batch_provider.engine import run_batch_job

    try:
        result = run_batch_job(
            source, "passthrough", config={"batch_size": 250, "max_concurrent_batches": 2}, output_path=output
        )
        queue.put(("ok", result.rows_out, result.chunks_processed))
    except BaseException as e:  # reported to the test, which shows it
        queue.put(("error", f"{type(e).__name__}: {e}", 0))


def test_job_in_a_daemonic_process_runs_its_chunks_in_worker_processes(make_parquet, tmp_path):
    source = make_parquet(sample_frame(1000, seed=3))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_job, args=(str(source), str(tmp_path / "out"), queue), daemon=True)
    proc.start()
    status, detail, chunks = queue.get(timeout=120)
    proc.join(timeout=30)
    assert status == "ok", detail
    assert (detail, chunks) == (1000, 4)
    assert proc.exitcode == 0
