"""Deprecated location: storage lives in :mod:`airflow_batch_provider.storage` (the bottom layer, which the
processors may use too). This name is the same module object, so existing imports and patches keep working."""

from __future__ import annotations

import sys

from airflow_batch_provider import storage as _storage

sys.modules[__name__] = _storage
