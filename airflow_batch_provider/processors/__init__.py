"""Processors: plain objects (no Airflow imports) that turn chunks into rows and partial states."""

from airflow_batch_provider.processors.base import (
    BaseProcessor,
    ChunkContext,
    ChunkResult,
    ProcessingProfile,
)
from airflow_batch_provider.processors.registry import register_processor, registered_processors

__all__ = [
    "BaseProcessor",
    "ChunkContext",
    "ChunkResult",
    "ProcessingProfile",
    "register_processor",
    "registered_processors",
]
