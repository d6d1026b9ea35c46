"""Deprecated location: this notifier lives in :mod:`airflow_batch_provider.notifications.failure`. This name is the same
module object, so existing imports keep working."""

from __future__ import annotations

import sys

from airflow_batch_provider.notifications import failure as _module

sys.modules[__name__] = _module
