"""``data_profiling``: a per-column and dataset-level profile whose numbers do not depend on chunking.

Two passes. The statistics pass finds each numeric column's exact finite min and max and its values per
power of two, from which the histogram edges are fixed (``bins`` equal-width bins, or log/quantile bins for
skewed data: :mod:`~airflow_batch_provider.processors.histogram_bins`); the main pass computes everything else. Per chunk
the state is compact (moments, value or bucket counts, 8-byte keys), merged exactly in source order; key sets
and value distributions that grow with the data go to binary side files under the job folder (``_keys/``).
Chunks are read as Arrow tables (``input_format = "arrow"``) and computed with pyarrow.compute and numpy over
the Arrow buffers (:mod:`~airflow_batch_provider.processors.profiling_kernels`); column types without an
Arrow kernel there (decimals, lists, dates, ...) go through the pandas kernels of this module.

Report (``format_version`` 1), also written to ``_report.json`` in the job folder:

==========================  ==============================================================================
key                         meaning
==========================  ==============================================================================
``format_version``          1
``rows``                    rows read
``column_count``            columns profiled
``memory_bytes_estimate``   in-memory size estimate: fixed-width columns itemsize x rows (+1 byte per row
                            for nullable masks); text/object 8 bytes per row + characters of the values;
                            categorical its codes
``duplicate_rows``          rows equal (all columns, nulls equal) to an earlier row; exact up to 64-bit
                            hash collisions (``None`` with ``duplicates=False``)
``duplicate_ratio``         ``duplicate_rows / rows``
``settings``                the parameters that shape the numbers (bins, quantiles, limits)
``columns``                 ``{name: column report}``, in source column order
==========================  ==============================================================================

Column report:

========================  ================================================================================
key                       meaning
========================  ================================================================================
``type``                  ``integer``, ``float``, ``boolean``, ``datetime``, ``text``, ``categorical``,
                          ``other``
``dtype``                 the pandas dtype of the source column (from the schema, the same for every chunk)
``count``                 non-null values
``nulls``                 null values (NaN/None/NaT); ``null_ratio`` = nulls / rows
``distinct``              distinct non-null values, exact: numbers, timestamps and booleans by their own
                          64 bits, text by a 64-bit hash of its bytes (exact up to hash collisions)
``min``, ``max``          numeric: finite min/max (ints exact); datetime: ISO timestamps; else null
``mean``, ``std``         numeric, over finite values; std with ddof=1, null below 2 values, 0 when
                          constant
``quantiles``             numeric: ``{"0.01": .., "0.05": .., "0.25": .., "0.5": .., "0.75": ..,
                          "0.95": .., "0.99": ..}`` with pandas' linear interpolation, over finite values
``quantiles_exact``       true when computed from exact value counts (at most ``exact_quantile_limit``
                          distinct finite values); else each is within ``2**-quantile_bits`` relative
                          error of the exact value (see ``column_stats.Distribution``)
``histogram``             numeric: ``{"edges": [...], "counts": [...]}``; ``bins`` bins over the exact finite
                          [min, max] (bins ``[e_i, e_i+1)``, the last closed); one bin for a constant
                          column; null when there is no finite value. Equal-width, except when one such bin
                          would hold most values spread over many orders of magnitude: then geometric (all
                          values positive) or quantile edges (``processors/histogram_bins.py``)
``histogram_scale``       ``linear``, ``log`` or ``quantile``: how the edges were chosen
``top_values``            text/categorical/boolean/other: ``[[value, count], ...]``, ``top_k`` most frequent
                          by count then value text
``top_values_exact``      true when at most ``top_values_capacity`` distinct values; else counts are lower
                          bounds and ``top_values_error_bound`` bounds the undercount
``nan_count``,            float columns: NaN and +/-infinite values (infinities count as non-null and
``inf_count``             distinct, and are excluded from min/max/mean/std/quantiles/histogram)
``date_range``            datetime: ``{"start", "end", "days"}``
========================  ================================================================================

NaN and infinities in the report are written as null. No Airflow imports.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.machine import usable_cpus
from airflow_batch_provider.processors import histogram_bins as hb
from airflow_batch_provider.processors import nested_profiling as nested
from airflow_batch_provider.processors import profiling_kernels as pk
from airflow_batch_provider.processors import quantile_selection as qsel
from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult, check_columns
from airflow_batch_provider.processors.column_stats import (
    Distribution,
    Histogram,
    Moments,
    TopValues,
)
from airflow_batch_provider.processors.frames import to_arrow
from airflow_batch_provider.processors.hashing import (
    HashSet,
    hash_strings,
    hash_values,
    spill_folder,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
NUMERIC = ("integer", "float")


def column_type(dtype: Any) -> str:
    """The profile type of a pandas dtype."""
    types = pd.api.types
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_integer_dtype(dtype):
        return "integer"
    if types.is_float_dtype(dtype):
        return "float"
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if types.is_string_dtype(dtype):
        return "text"
    return "other"


_KINDS: dict[str, str] = {}


def kind_of(dtype: Any) -> str:
    """:func:`column_type`, cached by dtype name (wide frames repeat few dtypes)."""
    key = str(dtype)
    if key not in _KINDS or isinstance(dtype, pd.CategoricalDtype):
        _KINDS[key] = column_type(dtype)
    return _KINDS[key]


def quantile_key(q: float) -> str:
    return repr(float(q))


def memory_estimate(dtype: Any, kind: str, rows: int) -> int:
    """Bytes a fixed-width or categorical column takes in memory (text columns: see ``_counted_states``)."""
    if kind == "categorical":
        return int(np.min_scalar_type(-max(len(dtype.categories), 1)).itemsize * rows)
    masked = isinstance(dtype, pd.api.extensions.ExtensionDtype) and kind in ("integer", "float", "boolean")
    return int(getattr(dtype, "itemsize", 8) * rows + (rows if masked else 0))


class DataProfilingProcessor(BaseProcessor):
    """Profile every column (or ``columns``): counts, nulls, exact distinct, moments, quantiles, histograms,
    top values, date ranges; and the dataset's rows, memory estimate and duplicate rows.

    :param columns: columns to profile (default: all).
    :param bins: histogram bins for numeric columns (equal width over the exact finite min/max).
    :param top_k: top values reported for text/categorical/boolean columns.
    :param quantiles: quantile levels in [0, 1] (keys are ``repr(float(q))``, e.g. ``"0.5"``).
    :param duplicates: count duplicate rows (keeps one 8-byte hash per distinct row).
    :param exact_quantile_limit: quantiles are exact up to this many distinct finite values per column.
    :param quantile_bits: mantissa bits kept per bucket above that limit: relative error <= 2**-bits.
    :param top_values_capacity: distinct values counted exactly per column (and kept per chunk state).
    """

    name = "data_profiling"
    version = "5"  # 2: Arrow/polars kernels, value-bit distinct keys, polars row hashes; 3: log/quantile histogram bins; 4: nested columns, dates as timestamps; 5: numeric states flag value-bit keys ("vk"), quantiles selected at the merge
    chunk_invariant = True
    stats_pass = True
    #: chunks arrive as Arrow tables: the kernels read Arrow buffers (numpy views, polars), never a pandas copy
    input_format = "arrow"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        bins: int = 20,
        top_k: int = 10,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        duplicates: bool = True,
        exact_quantile_limit: int = 10_000,
        quantile_bits: int = 10,
        top_values_capacity: int = 10_000,
    ) -> None:
        self.columns = columns
        self.bins = bins
        self.top_k = top_k
        self.quantiles = quantiles
        self.duplicates = duplicates
        self.exact_quantile_limit = exact_quantile_limit
        self.quantile_bits = quantile_bits
        self.top_values_capacity = top_values_capacity

    # -- parameters --------------------------------------------------------------------------------
    def _validate(self) -> None:
        for param, value, low in (
            ("bins", self.bins, 1),
            ("top_k", self.top_k, 0),
            ("exact_quantile_limit", self.exact_quantile_limit, 1),
            ("top_values_capacity", self.top_values_capacity, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"data_profiling: {param}={value!r} must be an integer >= {low}")
        if not isinstance(self.quantile_bits, int) or not 1 <= self.quantile_bits <= 52:
            raise ConfigError(
                f"data_profiling: quantile_bits={self.quantile_bits!r} must be an integer in 1..52"
            )
        try:
            qs = [float(q) for q in self.quantiles]
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"data_profiling: quantiles={self.quantiles!r} must be numbers in [0, 1]"
            ) from err
        if not all(0.0 <= q <= 1.0 for q in qs):
            raise ConfigError(f"data_profiling: quantiles={self.quantiles!r} must be numbers in [0, 1]")
        if self.columns is not None and (
            isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns)
        ):
            raise ConfigError(f"data_profiling: columns={self.columns!r} must be a list of column names")

    def validate(self, schema: Any) -> None:
        """The parameters, and the ``columns`` asked for exist in the source."""
        self._validate()
        if self.columns is not None:
            check_columns(self.name, "columns", self.columns, schema)

    def _select(self, chunk: pd.DataFrame) -> pd.DataFrame:
        self._validate()
        if self.columns is None:
            return chunk
        missing = [c for c in self.columns if c not in chunk.columns]
        if missing:
            raise ConfigError(
                f"data_profiling: columns={missing!r} not in the source; it has "
                f"{[str(c) for c in chunk.columns][:50]!r}"
            )
        return chunk[list(self.columns)]

    def _select_table(self, table: Any) -> Any:
        """The profiled columns of an Arrow table (``ConfigError`` naming the missing ones)."""
        self._validate()
        if self.columns is None:
            return table
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"data_profiling: columns={missing!r} not in the source; it has {table.column_names[:50]!r}"
            )
        return table.select(list(self.columns))

    def _kinds(self, schema: Any) -> list[tuple[str, Any]]:
        """``(kind, pandas dtype)`` per field of ``schema`` (cached: every chunk of a job has one schema)."""
        cached = self.__dict__.get("_kinds_cache")
        if cached is not None and cached[0].equals(schema, check_metadata=True):
            return cached[1]
        kinds = pk.arrow_kinds(schema, column_type)
        self.__dict__["_kinds_cache"] = (schema, kinds)
        return kinds

    @staticmethod
    def _numeric(frame: pd.DataFrame) -> list[Any]:
        return [c for c, d in frame.dtypes.items() if column_type(d) in NUMERIC]

    # -- statistics pass: exact finite min/max -> histogram edges ----------------------------------
    def stats_columns(self, schema: Any) -> list[str] | None:
        """The statistics pass reads only the profiled numeric columns (the engine projects the source)."""
        try:
            frame = self._select(schema.empty_table().to_pandas())
        except (ConfigError, KeyError, TypeError, ValueError):
            return None  # read everything: partial_stats reports the problem
        if self.columns is not None:
            return [str(c) for c in self.columns]  # partial_stats selects them all
        cols = [str(c) for c in self._numeric(frame)] + nested.stats_columns(schema, None)
        if not cols:
            return [str(frame.columns[0])] if len(frame.columns) else None
        return cols

    def partial_stats(self, chunk: Any, ctx: ChunkContext) -> Any:
        import pyarrow as pa

        table = self._select_table(to_arrow(chunk))
        ranges: dict[str, Any] = {}
        octaves: dict[str, Any] = {}  # finite values per power of two: log/quantile bins for skewed columns
        for name, col, (kind, _) in zip(
            table.column_names, table.columns, self._kinds(table.schema), strict=True
        ):
            if nested.is_nested(col.type):  # numeric leaves of lists/structs/maps: their histogram edges
                ranges.update(nested.ranges(name, col))
                continue
            if kind not in NUMERIC:
                continue
            if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
                ranges[name], octaves[name] = hb.finite_range_and_octaves(col)
            else:  # a numeric pandas dtype over another Arrow type: through pandas, as the main pass
                block = col.to_pandas().to_numpy(dtype="float64", na_value=np.nan).reshape(-1, 1)
                ranges.update(finite_ranges(block, [name]))
                octaves[name] = hb.octave_counts(block[np.isfinite(block)])
        return {"ranges": ranges, "octaves": octaves}

    def merge_stats(self, states: list[Any]) -> Any:
        ranges: dict[str, Any] = {}
        for state in states:
            for col, rng in (state or {}).get("ranges", {}).items():
                old = ranges.get(col)
                ranges[col] = (
                    rng
                    if old is None
                    else (old if rng is None else [min(old[0], rng[0]), max(old[1], rng[1])])
                )
        names = {c for state in states for c in (state or {}).get("octaves", {})}
        octaves = {c: hb.merge_octaves([(s or {}).get("octaves", {}).get(c) for s in states]) for c in names}
        return {"ranges": ranges, "octaves": octaves}

    def fit_stats(self, state: Any) -> None:
        self._validate()
        octaves = (state or {}).get("octaves", {})
        self.edges_ = {
            col: hb.choose_edges(rng[0], rng[1], octaves.get(col), self.bins)
            for col, rng in (state or {}).get("ranges", {}).items()
            if rng is not None
        }

    def get_state(self) -> Any:
        return {"edges": self.edges_}

    def set_state(self, state: Any) -> None:
        self.edges_ = (state or {}).get("edges") or {}

    # -- main pass ---------------------------------------------------------------------------------
    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        """The chunk's state from its Arrow columns (numpy views and polars); column types the Arrow kernels do
        not cover (decided by the schema, so for every chunk alike) go through the pandas kernels below."""
        table = self._select_table(to_arrow(chunk))
        folder = spill_folder(getattr(ctx, "work_uri", "") or getattr(ctx, "output_uri", None), "profile")
        self._spill = (
            f"{folder}/f{ctx.file_index:05d}-r{ctx.start_row:012d}-{ctx.stop_row:012d}" if folder else None
        )
        rows = table.num_rows
        kinds = self._kinds(table.schema)
        names = list(table.column_names)
        cols: dict[str, Any] = {}
        legacy = []
        self._row_parts: dict[int, np.ndarray] = {}  # per-row value hashes the text kernels computed
        for j, (name, col, (kind, dtype)) in enumerate(zip(names, table.columns, kinds, strict=True)):
            if nested.handles(col.type):  # lists, structs, maps, dates, times: processors/nested_profiling.py
                cols[name], self._row_parts[j] = nested.column_state(self, j, name, col)
                continue
            col_state = self._arrow_state(j, name, col, kind, dtype, rows)
            if col_state is None:
                legacy.append(j)
            else:
                cols[name] = col_state
        if legacy:
            cols.update(self._pandas_states(table.select(legacy).to_pandas()))
        for name, (kind, dtype) in zip(names, kinds, strict=True):
            cols[name].setdefault("mem", memory_estimate(dtype, kind, rows))
        state: dict[str, Any] = {"rows": rows, "cols": {name: cols[name] for name in names}}
        if self.duplicates:
            hashes = pk.row_hashes(table, self._row_parts)
            state["rowset"] = hash_set(hashes).to_state(spill_to=self._spill_to("rows"))
        return ChunkResult(state=state)

    def _arrow_state(
        self, j: int, name: str, col: Any, kind: str, dtype: Any, rows: int
    ) -> dict[str, Any] | None:
        """One column's state by the Arrow kernels, or None when its Arrow type has none."""
        import pyarrow as pa

        t, spill = col.type, self._spill_to(f"a{j}")
        if kind in NUMERIC and (pa.types.is_integer(t) or pa.types.is_floating(t)):
            edges = (getattr(self, "edges_", None) or {}).get(name)
            return pk.numeric_state(
                col, kind, dtype, edges, self.quantile_bits, self.exact_quantile_limit, spill
            )
        if kind == "datetime" and pa.types.is_timestamp(t):
            return pk.datetime_state(col, dtype, spill)
        if kind == "boolean" and pa.types.is_boolean(t):
            return pk.boolean_state(col, dtype, spill, self.top_values_capacity)
        if kind in ("text", "categorical", "other"):
            text = pk.as_text(col)
            if text is None:
                return None
            memory = None
            if kind == "categorical":
                size = len(pk._single(col).dictionary) if pa.types.is_dictionary(t) else 1
                memory = int(np.min_scalar_type(-max(size, 1)).itemsize * rows)
            state, self._row_parts[j] = pk.text_state(
                text, kind, dtype, rows, spill, self.top_values_capacity, memory
            )
            if memory is not None:
                state["mem"] = memory
            return state
        return None

    def _pandas_states(self, frame: pd.DataFrame) -> dict[str, Any]:
        """The pandas kernels (column types without an Arrow kernel here, e.g. decimals, lists, dates)."""
        kinds = {str(c): kind_of(d) for c, d in frame.dtypes.items()}
        names = [str(c) for c in frame.columns]
        cols: dict[str, Any] = {}
        numeric = [c for c, k in zip(frame.columns, kinds.values(), strict=False) if k in NUMERIC]
        counted = [
            c
            for c, k in zip(frame.columns, kinds.values(), strict=False)
            if k not in NUMERIC and k != "datetime"
        ]
        if numeric:
            cols.update(self._numeric_states(frame[numeric]))
        if counted:
            cols.update(self._counted_states(frame[counted]))
        for j, (name, dtype) in enumerate(zip(names, frame.dtypes.tolist(), strict=False)):
            if kinds[name] == "datetime":
                cols[name] = self._datetime_state(frame.iloc[:, j], f"d{j}")
            cols[name].setdefault("mem", memory_estimate(dtype, kinds[name], len(frame)))
        return cols

    def _numeric_states(self, frame: pd.DataFrame) -> dict[str, Any]:
        """All numeric columns at once: one float64 block, sorted per column (NaN last)."""
        block = frame.to_numpy(dtype="float64", na_value=np.nan) + 0.0  # -0.0 -> 0.0
        moments = Moments.of_block(block)
        ordered = np.sort(block, axis=0)
        edges_of = getattr(self, "edges_", None) or {}
        out = {}
        uniques = []
        for j, (name, dtype) in enumerate(frame.dtypes.items()):
            kind = kind_of(dtype)
            m = moments[j]
            present = ordered[: m.n + m.inf, j]  # non-NaN values, sorted
            keep = np.ones(len(present), dtype=bool)
            keep[1:] = present[1:] != present[:-1]
            values = present[keep]
            counts = np.diff(np.append(np.flatnonzero(keep), len(present)))
            finite = np.isfinite(values)
            dist = Distribution.of_sorted(
                values[finite], counts[finite], self.quantile_bits, self.exact_quantile_limit
            )
            uniques.append(self._integer_uniques(frame.iloc[:, j]) if kind == "integer" else values)
            if kind == "integer" and m.n:
                m.min, m.max = int(uniques[-1][0]), int(uniques[-1][-1])
            edges = edges_of.get(str(name))
            out[str(name)] = {
                "t": kind,
                "dtype": str(dtype),
                "nulls": m.nan,
                "m": m.to_state(),
                "d": dist.to_state(),
                "h": Histogram.of(present[: m.n + m.inf], edges).to_state() if edges else None,
            }
        for j, (name, hashes) in enumerate(zip(out, hashes_by_group(uniques), strict=False)):
            out[name]["hs"] = hash_set(hashes).to_state(spill_to=self._spill_to(f"n{j}"))
        return out

    def _spill_to(self, what: str) -> str | None:
        spill = getattr(self, "_spill", None)
        return f"{spill}-{what}" if spill else None

    @staticmethod
    def _integer_uniques(series: pd.Series) -> np.ndarray:
        """Exact sorted distinct integers (float64 would merge integers above 2**53)."""
        dtype = getattr(series.dtype, "numpy_dtype", series.dtype)
        values = series.to_numpy() if series.dtype == dtype else series.dropna().to_numpy(dtype=dtype)
        return sorted_unique(values)

    def _counted_states(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Text/categorical/boolean/other columns: Arrow-backed text columns one by one (factorized in Arrow,
        no Python objects per row), the others at once with one factorize over all their values."""
        arrow_text = [j for j, d in enumerate(frame.dtypes) if _arrow_text(d)]
        out = {str(frame.columns[j]): self._arrow_text_state(frame.iloc[:, j], f"s{j}") for j in arrow_text}
        rest = [j for j in range(frame.shape[1]) if j not in set(arrow_text)]
        if rest:
            out.update(self._object_states(frame.iloc[:, rest]))
        return {str(c): out[str(c)] for c in frame.columns}

    def _arrow_text_state(self, series: pd.Series, spill_key: str) -> dict[str, Any]:
        """One Arrow-backed string column: the same state as :meth:`_object_states` gives it."""
        import pyarrow as pa
        import pyarrow.compute as pc

        codes, uniques = pd.factorize(series.array, use_na_sentinel=True)
        present = codes >= 0
        counts = np.bincount(codes[present], minlength=len(uniques)).astype(np.int64)
        arrow = pa.array(uniques, type=pa.large_string())
        values = np.asarray(arrow.to_pylist(), dtype=object) if len(uniques) else np.empty(0, dtype=object)
        hashes = hash_strings(values)
        lengths = pc.utf8_length(arrow).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = len(series)
        return {
            "t": "text",
            "dtype": str(series.dtype),
            "nulls": int(rows - present.sum()),
            "hs": hash_set(hashes).to_state(spill_to=self._spill_to(spill_key)),
            "tv": top_values_of(values, counts, self.top_values_capacity, arrow).to_state(),
            "mem": int(8 * rows + (lengths * counts).sum()),
        }

    def _object_states(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Text/categorical/boolean/other columns at once: one factorize over all their values."""
        rows, width = frame.shape
        values = frame.to_numpy(dtype=object).ravel(order="F")
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        col_ids = np.repeat(np.arange(width), rows)
        present = codes >= 0
        pair = col_ids[present].astype(np.int64) * max(len(uniques), 1) + codes[present]
        pairs, counts = np.unique(pair, return_counts=True)
        pair_col, pair_code = pairs // max(len(uniques), 1), pairs % max(len(uniques), 1)
        unique_hashes = (
            hash_values(pd.Series(uniques, dtype=object)) if len(uniques) else np.empty(0, np.uint64)
        )
        lengths = np.fromiter((len(str(u)) for u in uniques), dtype=np.int64, count=len(uniques))
        bounds = np.searchsorted(pair_col, np.arange(width + 1))
        nulls = np.bincount(col_ids[~present], minlength=width)
        out = {}
        for j, (name, dtype) in enumerate(frame.dtypes.items()):
            lo, hi = bounds[j], bounds[j + 1]
            code, count = pair_code[lo:hi], counts[lo:hi]
            kind = kind_of(dtype)
            out[str(name)] = {
                "t": kind,
                "dtype": str(dtype),
                "nulls": int(nulls[j]),
                "hs": hash_set(unique_hashes[code]).to_state(spill_to=self._spill_to(f"c{j}")),
                "tv": top_values_of(uniques[code], count, self.top_values_capacity).to_state(),
            }
            if kind in ("text", "other"):
                out[str(name)]["mem"] = int(8 * rows + (lengths[code] * count).sum())
        return out

    def _datetime_state(self, series: pd.Series, spill_key: str) -> dict[str, Any]:
        ints = series.dropna().array.asi8
        unique = sorted_unique(np.asarray(ints))
        return {
            "t": "datetime",
            "dtype": str(series.dtype),
            "nulls": int(series.isna().sum()),
            "hs": hash_set(hash_values(pd.Series(unique))).to_state(spill_to=self._spill_to(spill_key)),
            "dt": [int(unique[0]), int(unique[-1])] if len(unique) else None,
            "unit": series.dt.unit,
            "tz": str(series.dt.tz) if series.dt.tz is not None else None,
        }

    # -- merge and report --------------------------------------------------------------------------
    def merge(self, states: list[Any]) -> Any:
        states = [s for s in states if s]
        if not states:
            return None
        merged: dict[str, Any] = {"rows": sum(s["rows"] for s in states)}
        # columns merge independently, and their heavy parts (sorting key runs) release the GIL: threads
        # keep the cores busy while the parent merges (the chunk workers are done by then)
        with ThreadPoolExecutor(max_workers=merge_threads(), thread_name_prefix="profile-merge") as pool:
            rowset = (
                pool.submit(HashSet.count_distinct_runs, [s.get("rowset") for s in states])
                if self.duplicates
                else None
            )
            qs = [float(q) for q in self.quantiles]
            futures = {
                name: pool.submit(merge_column, [s["cols"][name] for s in states], qs)
                for name in states[0]["cols"]
            }
            merged["cols"] = {name: future.result() for name, future in futures.items()}
            if rowset is not None:
                merged["rowset"] = {"n": rowset.result()}
        return merged

    def finalize(self, state: Any) -> dict[str, Any]:
        self._validate()
        state = state or {"rows": 0, "cols": {}}
        rows = int(state["rows"])
        dups = None
        if self.duplicates:
            dups = rows - HashSet.state_len(state.get("rowset"))
        qs = [float(q) for q in self.quantiles]
        columns = {name: column_report(col, rows, qs, self.top_k) for name, col in state["cols"].items()}
        report = {
            "format_version": FORMAT_VERSION,
            "processor": self.name,
            "rows": rows,
            "column_count": len(columns),
            "memory_bytes_estimate": sum(int(c["mem"]) for c in state["cols"].values()),
            "duplicate_rows": dups,
            "duplicate_ratio": (dups / rows if rows and dups is not None else None),
            "settings": {
                "bins": self.bins,
                "top_k": self.top_k,
                "quantiles": qs,
                "exact_quantile_limit": self.exact_quantile_limit,
                "quantile_relative_error": 2.0**-self.quantile_bits,
                "top_values_capacity": self.top_values_capacity,
            },
            "columns": columns,
        }
        log.info("profile: %d rows, %d columns, %s duplicate rows", rows, len(columns), dups)
        return report


def merge_threads() -> int:
    """Threads for the final merge: one per usable core, at most 4."""
    cores = usable_cpus()
    return max(1, min(4, cores))


def finite_ranges(block: np.ndarray, cols: list[Any]) -> dict[str, list[float] | None]:
    """Per column of a float64 block: ``[finite min, finite max]``, or None without a finite value."""
    finite = np.isfinite(block)
    present = finite.any(axis=0)
    if not present.any():
        return {str(c): None for c in cols}
    lo = np.where(finite, block, np.inf).min(axis=0)
    hi = np.where(finite, block, -np.inf).max(axis=0)
    return {str(c): [float(lo[j]), float(hi[j])] if present[j] else None for j, c in enumerate(cols)}


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values by a plain sort (numpy 2's hash-based ``unique`` is ~5x slower on 64-bit ints)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def hash_set(hashes: np.ndarray) -> HashSet:
    """A :class:`HashSet` of ``hashes`` (built with :func:`sorted_unique`)."""
    out = HashSet()
    out.values = sorted_unique(np.asarray(hashes, dtype=np.uint64))
    return out


def hashes_by_group(groups: list[np.ndarray]) -> list[np.ndarray]:
    """Hash the values of several arrays with one call per dtype (keeps wide frames fast)."""
    out: list[np.ndarray] = [np.empty(0, np.uint64)] * len(groups)
    by_dtype: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_dtype.setdefault(str(g.dtype), []).append(i)
    for members in by_dtype.values():
        sizes = [len(groups[i]) for i in members]
        if not sum(sizes):
            continue
        hashes = hash_values(pd.Series(np.concatenate([groups[i] for i in members])))
        for i, part in zip(members, np.split(hashes, np.cumsum(sizes)[:-1]), strict=False):
            out[i] = part
    return out


def _arrow_text(dtype: Any) -> bool:
    """A pandas string dtype stored in Arrow (pandas 3's default ``str``): factorized without Python objects."""
    return isinstance(dtype, pd.StringDtype) and getattr(dtype, "storage", "") == "pyarrow"


def _top_positions(values: np.ndarray, counts: np.ndarray, capacity: int, arrow: Any) -> np.ndarray:
    """Positions of the ``capacity`` first values ordered by (count descending, text), in that order.

    ``arrow``: the values as an Arrow string array (distinct strings): text order is UTF-8 byte order, which
    is code-point order, i.e. Python's ``str`` order; only values tied at the cut-off count are text-sorted.
    """
    import pyarrow.compute as pc

    cut = np.partition(counts, len(counts) - 1 - capacity)[
        len(counts) - 1 - capacity
    ]  # count at rank capacity
    sure = np.flatnonzero(counts > cut)
    tied = np.flatnonzero(counts == cut)
    need = capacity - len(sure)
    tied = tied[pc.sort_indices(arrow.take(tied)).to_numpy()[:need]] if need else tied[:0]
    keep = np.concatenate([sure, tied])
    rank = np.empty(len(keep), dtype=np.int64)
    rank[pc.sort_indices(arrow.take(keep)).to_numpy()] = np.arange(len(keep))
    return keep[np.lexsort((rank, -counts[keep]))]


def top_values_of(values: np.ndarray, counts: np.ndarray, capacity: int, arrow: Any = None) -> TopValues:
    """A chunk's value counts as :class:`TopValues`, pre-truncated with numpy when over capacity.

    ``arrow``: the same values as an Arrow string array, when they are all text (a faster selection).
    """
    if len(values) > capacity:
        if arrow is not None:
            keep = _top_positions(values, counts, capacity, arrow)
            order = None
        else:
            text = np.array([str(v) for v in values], dtype=object)
            order = np.lexsort((text, -counts))
            keep = order[:capacity]
        out = TopValues.of_counts(list(values[keep]), counts[keep].tolist(), capacity)
        rest = np.ones(len(counts), dtype=bool)
        rest[keep] = False
        out.error = int(counts[order[capacity]]) if order is not None else int(counts[rest].max())
        return out
    return TopValues.of_counts(list(values), counts.tolist(), capacity)


def merge_column(parts: list[dict[str, Any]], qs: list[float]) -> dict[str, Any]:
    """Merge one column's chunk states (in source order) into the column's final state: the chunk state's
    shape, except that the value distribution ``d`` becomes its quantiles at ``qs``
    (:func:`quantile_selection.merged_quantiles`: ``{"exact", "n", "quantiles"}``)."""
    first = parts[0]
    if first["t"] in nested.KINDS:
        return nested.merge(parts, functools.partial(merge_column, qs=qs))
    out: dict[str, Any] = {k: first[k] for k in ("t", "dtype", "unit", "tz") if k in first}
    out["nulls"] = sum(p["nulls"] for p in parts)
    out["mem"] = sum(p.get("mem", 0) for p in parts)
    out["hs"] = {"n": HashSet.count_distinct_runs([p["hs"] for p in parts])}
    if "m" in first:
        out["m"] = Moments.merge([Moments.from_state(p["m"]) for p in parts]).to_state()
        _pin_integer_bounds(out, parts)
        out["d"] = qsel.merged_quantiles([p["d"] for p in parts], qs, _finite_distinct(out, parts))
        hists = [Histogram.from_state(p["h"]) for p in parts if p.get("h")]
        merged = Histogram.merge(hists)
        out["h"] = merged.to_state() if merged else None
    if "tv" in first:
        out["tv"] = TopValues.merge([TopValues.from_state(p["tv"]) for p in parts]).to_state()
    if "dt" in first:
        bounds = [p["dt"] for p in parts if p.get("dt")]
        out["dt"] = [min(b[0] for b in bounds), max(b[1] for b in bounds)] if bounds else None
    return out


#: the order keys of +inf and -inf in a numeric column's distinct keys (the values' own bits)
_INFINITY_KEYS = (0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000)


def _finite_distinct(out: dict[str, Any], parts: list[dict[str, Any]]) -> int | None:
    """The merged column's distinct finite values (as float64) from its exact distinct keys, when those are
    the values' own bits (``"vk"``, the Arrow kernels' states): minus the infinities for floats; integers only
    within +/-2**53 (beyond, distinct integers can share a float64). None when not known this way."""
    if not all(p.get("vk") for p in parts):
        return None
    distinct = int(out["hs"]["n"])
    moments = out["m"]  # [n, mean, m2, min, max, nan, inf]
    if out["t"] == "integer":
        exact = not moments[0] or max(abs(int(moments[3])), abs(int(moments[4]))) <= 2**53
        return distinct if exact else None
    if moments[6]:
        states = [p["hs"] for p in parts]
        distinct -= sum(HashSet.states_contain(states, key) for key in _INFINITY_KEYS)
    return distinct


def _pin_integer_bounds(out: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    """Integer min/max stay exact Python ints (float moments would round above 2**53)."""
    if out["t"] != "integer":
        return
    lows = [p["m"][3] for p in parts if p["m"][0]]
    highs = [p["m"][4] for p in parts if p["m"][0]]
    if lows:
        out["m"][3], out["m"][4] = min(lows), max(highs)


def column_report(col: dict[str, Any], rows: int, qs: list[float], top_k: int) -> dict[str, Any]:
    if col["t"] in nested.KINDS:
        return nested.report(col, rows, qs, top_k, column_report)
    nulls = int(col["nulls"])
    report: dict[str, Any] = {
        "type": col["t"],
        "dtype": col["dtype"],
        "count": rows - nulls,
        "nulls": nulls,
        "null_ratio": nulls / rows if rows else None,
        "distinct": HashSet.state_len(col["hs"]),
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": None,
        "histogram": None,
        "top_values": None,
    }
    if "m" in col:
        report.update(_numeric_report(col, qs))
    if "tv" in col:
        tv = TopValues.from_state(col["tv"])
        report.update(top_values=tv.top(top_k), top_values_exact=tv.exact, top_values_error_bound=tv.error)
    if "dt" in col:
        report.update(_date_report(col))
    return report


def _numeric_report(col: dict[str, Any], qs: list[float]) -> dict[str, Any]:
    m = Moments.from_state(col["m"])
    dist = col["d"]  # merged: {"exact", "n", "quantiles"} (merge_column)
    out: dict[str, Any] = {
        "min": m.min,
        "max": m.max,
        "mean": m.mean if m.n else None,
        "std": m.std(ddof=1),
        "quantiles": (
            {quantile_key(q): v for q, v in zip(qs, dist["quantiles"], strict=False)} if dist["n"] else None
        ),
        "quantiles_exact": dist["exact"],
        "histogram": ({"edges": col["h"]["edges"], "counts": col["h"]["counts"]} if col.get("h") else None),
        "histogram_scale": hb.scale_of(col["h"]["edges"]) if col.get("h") else None,
    }
    if col["t"] == "float":
        out.update(nan_count=m.nan, inf_count=m.inf)
    return out


def _timestamp(value: int, unit: str, tz: str | None) -> pd.Timestamp:
    ts = pd.Timestamp(np.datetime64(int(value), unit))  # type: ignore[call-overload]
    return ts.tz_localize("UTC").tz_convert(tz) if tz else ts


def _date_report(col: dict[str, Any]) -> dict[str, Any]:
    if not col.get("dt"):
        return {"date_range": None}
    start, end = (_timestamp(v, col["unit"], col.get("tz")) for v in col["dt"])
    # from the integer values: a Timedelta of far-apart dates overflows nanoseconds on pandas 2
    per_day = 86_400 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}.get(col["unit"], 10**9)
    days = (int(col["dt"][1]) - int(col["dt"][0])) / per_day
    return {
        "min": start.isoformat(),
        "max": end.isoformat(),
        "date_range": {"start": start.isoformat(), "end": end.isoformat(), "days": float(days)},
    }


def compact_summary(report: dict[str, Any] | None, limit: int = 20) -> dict[str, Any]:
    """A small summary for XCom: dataset numbers and the columns with the most nulls."""
    if not report:
        return {}
    cols = report.get("columns", {})
    by_nulls = sorted(cols.items(), key=lambda kv: (-(kv[1].get("nulls") or 0), kv[0]))[:limit]
    return {
        "rows": report.get("rows"),
        "column_count": report.get("column_count"),
        "duplicate_rows": report.get("duplicate_rows"),
        "memory_bytes_estimate": report.get("memory_bytes_estimate"),
        "constant_columns": sum(1 for c in cols.values() if c.get("distinct") == 1),
        "all_null_columns": sum(1 for c in cols.values() if c.get("count") == 0),
        "most_nulls": {name: c.get("nulls") for name, c in by_nulls if c.get("nulls")},
    }
