"""The chunk engine: plan, run, checkpoint and resume. Imports nothing from Airflow."""

from airflow_batch_provider.engine.progress import ProgressEvent
from airflow_batch_provider.engine.runner import JobResult, read_output, run_batch_job

__all__ = ["JobResult", "ProgressEvent", "read_output", "run_batch_job"]
