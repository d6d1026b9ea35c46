"""Numbers about running jobs: resource samples, alerts, heartbeats and the dashboard data built from them.

Imports nothing from Airflow except :mod:`.notifier` (import it explicitly).
"""

from __future__ import annotations

from airflow_batch_provider.monitoring.alerts import Alert, AlertRules
from airflow_batch_provider.monitoring.dashboard import get_active_alerts, get_monitoring_dashboard_data
from airflow_batch_provider.monitoring.monitor import JobMonitor, records_root
from airflow_batch_provider.monitoring.sampler import ResourceSample, ResourceSampler
from airflow_batch_provider.monitoring.status import (
    cleanup_old_records,
    get_failure_statistics,
    get_job_failure_history,
    get_job_status,
    get_system_status,
)

__all__ = [
    "Alert",
    "AlertRules",
    "JobMonitor",
    "ResourceSample",
    "ResourceSampler",
    "cleanup_old_records",
    "get_active_alerts",
    "get_failure_statistics",
    "get_job_failure_history",
    "get_job_status",
    "get_monitoring_dashboard_data",
    "get_system_status",
    "records_root",
]
