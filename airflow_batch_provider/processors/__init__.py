"""Processors: plain objects (no Airflow imports) that turn chunks into rows and partial states.

The names below load on first use, so importing ``airflow_batch_provider.processors.catalog`` (what a DAG file
needs to check processor keywords while it is parsed) imports no pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BaseProcessor": "base",
    "ChunkContext": "base",
    "ChunkResult": "base",
    "ProcessingProfile": "base",
    "register_processor": "registry",
    "registered_processors": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
