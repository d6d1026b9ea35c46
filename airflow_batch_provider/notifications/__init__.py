"""Airflow notifiers of the provider: ``BatchFailureNotifier`` (a failed batch task, with where it stopped and
where it resumes) and ``BatchAlertNotifier`` (a monitoring alert while a job runs)."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchAlertNotifier", "BatchFailureNotifier"]


def __getattr__(name: str) -> Any:  # Airflow is imported on first use, not with the package
    if name == "BatchFailureNotifier":
        from airflow_batch_provider.notifications.failure import BatchFailureNotifier

        return BatchFailureNotifier
    if name == "BatchAlertNotifier":
        from airflow_batch_provider.notifications.alert import BatchAlertNotifier

        return BatchAlertNotifier
    raise AttributeError(name)
