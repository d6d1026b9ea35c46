"""Test DAG for the scheduler kill test (tests/integration/test_scheduler_kill.py).

A 90-chunk job (checkpoint_interval 3, 2 workers, many quick retries) whose processor appends one line per
finished chunk call to a ledger file: ``file start stop worker_pid task_pid try_number unix_time``. The test
SIGKILLs the task process (the ledger's ``task_pid``) while chunks run and reads the ledger to measure the
rework of each resumed try. Processor defined in the DAG file: it runs in forked chunk workers.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchJobOperator

LEDGER_ENV = "KILL_TEST_LEDGER"
CONFIG = BatchConfig(
    batch_size=100, max_concurrent_batches=2, checkpoint_interval=3, progress_interval_seconds=1
)


def ledger_chunk(batch, context, seconds, ledger=None):
    """Sleep ``seconds``, log the call to the ledger (one O_APPEND write per line), add a column."""
    time.sleep(seconds)
    path = ledger or os.environ[LEDGER_ENV]
    line = (
        f"{context.file_index} {context.start_row} {context.stop_row} {os.getpid()} {os.getppid()} "
        f"{os.environ.get('AIRFLOW_CTX_TRY_NUMBER', '-')} {time.time():.3f}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return batch.assign(y=batch["x"] * 2 + batch["id"])


with DAG(
    dag_id="kill_ledger_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"source": Param("", type="string")},
):
    BatchJobOperator(
        task_id="ledger",
        source="{{ params.source }}",
        processor=ledger_chunk,
        seconds=0.15,
        config=CONFIG,
        retries=10,
        retry_delay=timedelta(seconds=1),
    )
