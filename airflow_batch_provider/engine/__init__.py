"""The chunk engine: plan, run, checkpoint and resume. Imports nothing from Airflow or monitoring.

``run_batch_job`` (a job run with its monitor) lives in :mod:`airflow_batch_provider.jobs`; it is importable
from here too, where it always was.
"""

from typing import Any

from airflow_batch_provider.engine.progress import ProgressEvent
from airflow_batch_provider.engine.runner import JobResult, read_output

__all__ = ["JobResult", "ProgressEvent", "read_output", "run_batch_job"]


def __getattr__(name: str) -> Any:
    if name == "run_batch_job":
        from airflow_batch_provider.jobs import run_batch_job

        return run_batch_job
    raise AttributeError(name)
