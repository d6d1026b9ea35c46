"""Deprecated location: this notifier lives in :mod:`airflow_batch_provider.notifications.alert`. This name is the same
module object, so existing imports keep working."""

from __future__ import annotations

import sys

from airflow_batch_provider.notifications import alert as _module

sys.modules[__name__] = _module
