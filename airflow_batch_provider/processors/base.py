"""The processor contract (scikit-learn style) and the adapter for plain callables.

A processor is a plain object whose ``__init__`` only stores parameters:

- ``validate(schema)`` (optional): checks against the source's schema, once per job, after the plan and
  before any chunk (column names, expressions); raise a ``ConfigError``.
- ``fit(sample)`` (optional): learn global state from a deterministic, chunking-independent sample.
- ``process(chunk, ctx) -> ChunkResult(rows=DataFrame | None, state=JSON-safe partial | None)``.
- ``merge(states) -> state`` and ``finalize(state) -> report`` for aggregations; ``merge`` receives
  the partial states in source order.
- ``get_state()`` / ``set_state()``: the fitted state as JSON-safe data (never pickle).

No Airflow imports here.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.catalog import did_you_mean
from airflow_batch_provider.processors.frames import check_input_format


@dataclass(frozen=True)
class ProcessingProfile:
    """What a processor costs, for sizing batches and concurrency."""

    processor_name: str
    cpu_intensive: bool = True
    memory_intensive: bool = False
    io_intensive: bool = False
    #: the processor's outputs must be committed in source order: forces ``BatchConfig.preserve_order``
    #: (partial states are always merged in source order)
    requires_order: bool = False
    estimated_processing_time_per_row_ms: float = 0.01
    #: copies of a chunk's DataFrame (its in-memory bytes) alive in a worker at the chunk's peak
    memory_overhead_factor: float = 3.0
    #: further copies of the chunk's numeric (and date, boolean) columns: sorted copies for exact quantiles,
    #: the float array a model scores
    numeric_copies: float = 0.0
    #: copies of the chunk's encoded (file) bytes: read buffers, the part written and its copy (None: the
    #: engine's ``sizing.ENCODED_COPIES``)
    encoded_copies: float | None = None
    #: further copies of the chunk's string columns (None: ``sizing.STRING_COPIES``)
    string_copies: float | None = None
    #: bytes per string value (cell) of a chunk, whatever its length: hashes, codes, parse attempts
    string_value_bytes: float = 0.0
    #: MB each chunk worker holds beyond its chunk (pages it copies from the parent, module state)
    worker_memory_mb: float = 0.0
    #: MB the processor adds to the job's parent whatever the chunk size (imports, merged statistics) ...
    parent_memory_mb: float = 0.0
    #: ... and per column of the source (per-column merged states: histograms, sketches, vocabularies)
    parent_memory_per_column_mb: float = 0.0
    #: copies of the source's numeric columns, all rows, that the parent holds at its peak (what a fit over
    #: the whole source keeps: the fit sample's reads, per-chunk fit states merged)
    parent_numeric_copies: float = 0.0
    #: ... of its mostly-distinct numeric columns only (exact medians and quantiles keep an entry per distinct
    #: value: few for a small-range integer, one per row for measurements)
    parent_distinct_numeric_copies: float = 0.0
    #: ... and of its string columns (vocabularies counted over every row)
    parent_string_copies: float = 0.0


@dataclass(frozen=True)
class ChunkContext:
    """What a processor knows about the chunk it is given. Also readable as a mapping."""

    job_id: str
    chunk_index: int
    file_index: int
    file: str
    start_row: int
    stop_row: int
    attempt: int
    output_uri: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: this output generation's own folder (``{output_uri}/gNNNN``): scratch files a processor keeps here
    #: are replaced with the generation, never read by a downstream job
    work_uri: str = ""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class ChunkResult:
    """A chunk's output: rows to write (a part file), a small JSON-safe partial state, and rows to
    quarantine (written under ``quarantine/``, listed apart, never read by a downstream job)."""

    rows: Any = None  # a pandas or polars DataFrame or a pyarrow Table
    state: Any = None
    quarantine: Any = None


class BaseProcessor:
    """Base class for processors. Subclasses override ``process`` and, to aggregate, ``merge``/``finalize``."""

    name: ClassVar[str] = "processor"
    version: ClassVar[str] = "1"
    #: True when results do not depend on how rows are split into chunks (lets auto-tuning resize chunks).
    chunk_invariant: ClassVar[bool] = False
    #: rows of the deterministic sample handed to ``fit``; 0 means ``fit`` is not called.
    fit_sample_size: int = 0
    #: True: before processing, a full pass computes ``partial_stats`` per chunk, ``merge_stats`` in source
    #: order, then ``fit_stats(merged)`` (exact global statistics, e.g. scaler moments, histogram edges).
    stats_pass: bool = False
    profile: ClassVar[ProcessingProfile | None] = None
    #: the frame ``process``/``partial_stats`` receive: ``"pandas"`` (a DataFrame), ``"arrow"`` (a
    #: ``pyarrow.Table``, no conversion at all) or ``"polars"`` (a ``polars.DataFrame`` built from Arrow, no
    #: pandas copy). Row outputs may be any of the three.
    input_format: str = "pandas"

    def validate(self, schema: Any) -> None:
        """Pre-flight checks against the source's ``pyarrow.Schema``: called once per job, after the plan and
        before any chunk (statistics pass, fit sample or main pass). Raise ``ConfigError`` (no retry), naming the
        processor, the parameter and what is wrong. The default checks nothing."""

    def fit(self, sample: pd.DataFrame) -> None:  # pragma: no cover - optional hook
        """Learn global state from a chunking-independent sample."""

    def process(self, chunk: pd.DataFrame, ctx: ChunkContext) -> ChunkResult:
        raise NotImplementedError

    def merge(self, states: list[Any]) -> Any:
        return None

    def finalize(self, state: Any) -> dict[str, Any] | None:
        return state if isinstance(state, dict) else None

    def partial_stats(self, chunk: pd.DataFrame, ctx: ChunkContext) -> Any:
        """Statistics pass: a JSON-safe partial state of one chunk."""
        raise NotImplementedError

    def merge_stats(self, states: list[Any]) -> Any:
        """Statistics pass: merge partial states (given in source order)."""
        raise NotImplementedError

    def fit_stats(self, state: Any) -> None:
        """Statistics pass: learn from the merged statistics (called once, before processing)."""

    def get_state(self) -> Any:
        return None

    def set_state(self, state: Any) -> None:
        """Restore what ``fit`` learned (from ``get_state``)."""

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, scikit-learn style (used in the job fingerprint)."""
        sig = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name, None)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def identity(self) -> dict[str, Any]:
        """What identifies this processor in a job fingerprint (batch size never does)."""
        return {"name": self.name, "version": self.version, "params": self.get_params()}


def check_columns(processor: str, parameter: str, columns: Any, schema: Any) -> None:
    """``ConfigError`` unless every name in ``columns`` is a column of ``schema`` (a ``pyarrow.Schema`` or a list
    of names); the message names the processor, the parameter, the missing columns, a close match and the
    columns there are."""
    available = [str(n) for n in getattr(schema, "names", schema)]
    missing = [str(c) for c in columns if str(c) not in set(available)]
    if not missing:
        return
    what = f"unknown column {missing[0]!r}" if len(missing) == 1 else f"unknown columns {missing}"
    listed = available[:50] + (["..."] if len(available) > 50 else [])
    raise ConfigError(
        f"{processor}: {parameter}: {what} (not in the source){did_you_mean(missing[0], available)}; "
        f"the source has {listed}"
    )


def code_hash(fn: Callable[..., Any]) -> str:
    """A hash of a callable's source (or bytecode), so editing a DAG-file function changes the fingerprint."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = code.co_code + repr(code.co_consts).encode() if code else repr(fn).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def merge_dicts(states: list[Any]) -> dict[str, Any] | None:
    """Merge callables' per-chunk dicts in source order.

    Numbers (not bools) are summed, lists concatenated, nested dicts merged the same way; any other
    value keeps the last chunk's value.
    """
    merged: dict[str, Any] | None = None
    for state in states:
        if not isinstance(state, dict):
            continue
        merged = _merge_two(merged or {}, state)
    return merged


def _merge_two(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    out = dict(left)
    for key, value in right.items():
        if key not in out:
            out[key] = value
            continue
        old = out[key]
        numeric = (int, float)
        if (
            isinstance(old, numeric)
            and isinstance(value, numeric)
            and not isinstance(old, bool)
            and not (isinstance(value, bool))
        ):
            out[key] = old + value
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + value
        elif isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge_two(old, value)
        else:
            out[key] = value
    return out


class CallableProcessor(BaseProcessor):
    """Adapts ``fn(batch_df, context, **params)`` (sync or ``async``) to the processor contract.

    ``fn`` returns a DataFrame (row output), a dict (merged into the report by :func:`merge_dicts`),
    a :class:`ChunkResult`, or None. Processor keyword arguments are passed to ``fn`` and are also in
    ``context.params``. It is chunk-invariant (its batch size may adapt while the job runs) only when ``fn``
    opts in: ``fn.chunk_invariant = True`` or ``register_processor(name, fn, chunk_invariant=True)``.
    """

    name = "callable"

    def __init__(
        self,
        fn: Callable[..., Any],
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        input_format: str | None = None,
    ):
        self.fn = fn
        self.params = dict(params or {})
        self.label = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        self.chunk_invariant = bool(getattr(fn, "chunk_invariant", False))  # type: ignore[misc]
        fmt = input_format or getattr(fn, "input_format", None) or "pandas"
        self.input_format = check_input_format(fmt, f"processor {self.label}: input_format")

    def identity(self) -> dict[str, Any]:
        out = {"name": self.label, "version": code_hash(self.fn), "params": self.params}
        if self.input_format != "pandas":  # the frame type changes what fn computes
            out["input_format"] = self.input_format
        return out

    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        out = self.fn(chunk, ctx, **self.params)
        if inspect.isawaitable(out):
            out = asyncio.run(_await(out))
        if out is None or isinstance(out, ChunkResult):
            return out or ChunkResult()
        if isinstance(out, pd.DataFrame) or _is_frame(out):
            return ChunkResult(rows=out)
        if isinstance(out, Mapping):
            return ChunkResult(state=dict(out))
        raise TypeError(
            f"processor {self.label} returned {type(out).__name__}; return a DataFrame (pandas or polars) or a "
            "pyarrow Table (rows), a dict (report values), a ChunkResult or None"
        )

    def merge(self, states: list[Any]) -> Any:
        return merge_dicts(states)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _is_frame(out: Any) -> bool:
    """A pyarrow Table or a polars DataFrame (checked without importing either)."""
    kind = type(out)
    return (kind.__module__.startswith("pyarrow") and kind.__name__ == "Table") or (
        kind.__module__.startswith("polars") and kind.__name__ == "DataFrame"
    )


class StatsPass(BaseProcessor):
    """Runs a processor's statistics pass as a job of its own (checkpointed and resumable like any job)."""

    chunk_invariant = True

    def __init__(self, processor: BaseProcessor) -> None:
        self.processor = processor
        self.input_format = getattr(processor, "input_format", "pandas")

    def identity(self) -> dict[str, Any]:
        return {"stats_pass_of": self.processor.identity()}

    def process(self, chunk: pd.DataFrame, ctx: ChunkContext) -> ChunkResult:
        return ChunkResult(state=self.processor.partial_stats(chunk, ctx))

    def merge(self, states: list[Any]) -> Any:
        return self.processor.merge_stats(states)

    def finalize(self, state: Any) -> Any:
        return state
