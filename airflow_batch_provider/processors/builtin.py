"""The two small built-in processors (``passthrough``, ``count``); the catalog names every built-in."""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult


class PassthroughProcessor(BaseProcessor):
    """Writes every row unchanged (re-chunks or converts a CSV/JSON Lines source to Parquet): the Arrow table
    as read, so every type (nested, decimal, dictionary, large, unsigned, ...) is written back exactly."""

    name = "passthrough"
    chunk_invariant = True
    input_format = "arrow"

    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        return ChunkResult(rows=chunk, state={"rows": len(chunk)})

    def merge(self, states: list[Any]) -> Any:
        return {"rows": sum(s["rows"] for s in states if s)}


class CountProcessor(BaseProcessor):
    """Counts rows and nulls per column; writes no rows."""

    name = "count"
    chunk_invariant = True

    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        nulls = {str(k): int(v) for k, v in chunk.isna().sum().items()}
        return ChunkResult(state={"rows": len(chunk), "nulls": nulls})

    def merge(self, states: list[Any]) -> Any:
        out: dict[str, Any] = {"rows": 0, "nulls": {}}
        for s in states:
            if not s:
                continue
            out["rows"] += s["rows"]
            for k, v in s["nulls"].items():
                out["nulls"][k] = out["nulls"].get(k, 0) + v
        return out
