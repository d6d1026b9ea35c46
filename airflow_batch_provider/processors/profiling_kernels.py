"""``data_profiling``'s chunk kernels on Arrow buffers, pyarrow.compute and numpy (no pandas copy of the chunk).

Each function turns one Arrow column into the column state :func:`data_profiling.merge_column` merges. The
kind of a column (integer, float, boolean, datetime, text, categorical, other) comes from the source schema
alone, never from a chunk's values, so every chunk of a job takes the same path and the states merge
exactly. Distinct sets hold exact 64-bit keys: the value's own bits for numbers and timestamps (no hash, no
collision), a 64-bit hash of the UTF-8 bytes for text (:mod:`arrow_hashing`: numpy over the Arrow buffers, no
thread pool, so safe in forked workers). No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from airflow_batch_provider.processors.arrow_hashing import NULL_HASH, column_hashes
from airflow_batch_provider.processors.arrow_hashing import row_hashes as arrow_row_hashes
from airflow_batch_provider.processors.column_stats import Distribution, Histogram, Moments, TopValues
from airflow_batch_provider.processors.hashing import HashSet, sorted_unique


def arrow_kinds(schema: Any, column_type: Callable[[Any], str]) -> list[tuple[str, Any]]:
    """``(kind, pandas dtype)`` per field, as the pandas path classifies it (from the schema, pandas metadata
    included, so a nullable ``Int64`` stays integer whatever a chunk holds)."""
    empty = schema.empty_table().to_pandas()
    return [(column_type(d), d) for d in empty.dtypes.tolist()]


def _single(col: Any) -> Any:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def sorted_set(uniq: np.ndarray) -> HashSet:
    """The :class:`HashSet` of the bit patterns of sorted, distinct int64/float64 values, without a sort:
    non-negative values keep their order as uint64; negative ints follow them in the same order, negative
    floats in reverse order (sign-magnitude)."""
    out = HashSet()
    if not len(uniq):
        return out
    k = int(np.searchsorted(uniq, 0, side="left"))
    neg = uniq[:k] if uniq.dtype.kind in "iu" else uniq[:k][::-1]
    out.values = np.concatenate([uniq[k:].view(np.uint64), neg.view(np.uint64)])
    return out


def _uniques(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(ordered):
        return ordered, np.empty(0, np.int64)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    starts = np.flatnonzero(keep)
    return ordered[starts], np.diff(np.append(starts, len(ordered))).astype(np.int64)


def _sorted_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sorted values, distinct values, their counts)`` of int64/uint64 values: by counting when their range
    is small (at most ``max(4096, len // 2)`` wide: one pass, no sort), else by a sort. Both give the same
    arrays."""
    if len(values) and values.dtype == np.int64:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= max(4096, len(values) // 2):
            counts = np.bincount(values - lo, minlength=hi - lo + 1)
            at = np.flatnonzero(counts)
            uniq, counts = at.astype(np.int64) + lo, counts[at].astype(np.int64)
            return np.repeat(uniq, counts), uniq, counts
    ordered = np.sort(values)
    return (ordered, *_uniques(ordered))


def moments_of_sorted(finite: np.ndarray, nan: int, inf: int) -> Moments:
    """:meth:`Moments.of_block`'s corrected two-pass moments of sorted, finite float64 values."""
    n = len(finite)
    if not n:
        return Moments(nan=nan, inf=inf)
    mean = finite.sum() / n
    dev = finite - mean
    mean = mean + dev.sum() / n
    dev = finite - mean
    m2 = float((dev * dev).sum() - dev.sum() ** 2 / n)
    return Moments(n, float(mean), max(0.0, m2), float(finite[0]), float(finite[-1]), nan, inf).pin_constant()


def histogram_of_sorted(finite: np.ndarray, edges: list[float]) -> Histogram:
    """:meth:`Histogram.of` of sorted finite values by binary search of the edges (bins ``[e_i, e_i+1)``, the
    last closed; values outside the edges in ``outside``)."""
    e = np.asarray(edges, dtype=np.float64)
    nbins = max(len(e) - 1, 1)
    lo = int(np.searchsorted(finite, e[0], side="left"))
    hi = int(np.searchsorted(finite, e[-1], side="right"))
    inner = finite[lo:hi]
    # a value is in bin i when e_i <= x < e_i+1: the values below each inner edge close a bin
    cuts = np.searchsorted(inner, e[1:-1], side="left") if nbins > 1 else np.empty(0, np.int64)
    bounds = np.concatenate([[0], cuts, [len(inner)]]).astype(np.int64)
    counts = np.diff(bounds)
    return Histogram(edges, counts.astype(np.int64), int(len(finite) - len(inner)))


def numeric_state(
    col: Any, kind: str, dtype: Any, edges: list[float] | None, bits: int, limit: int, spill: str | None
) -> dict[str, Any]:
    """An integer or float column: moments, distribution, histogram and exact distinct keys."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _single(col)
    ints = pa.types.is_integer(arr.type)
    if ints:
        present = pc.drop_null(arr).to_numpy(zero_copy_only=False)
        ordered, uniq, counts = _sorted_integers(
            present.astype(np.uint64 if arr.type == pa.uint64() else np.int64)
        )
        nan = arr.null_count
        keys = sorted_set(uniq)
        finite = ordered.astype(np.float64)  # monotone, so still sorted (ints above 2**53 may merge)
        fuf, fcf = _uniques(finite)
        inf = 0
    else:
        values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
        isnan = np.isnan(values)
        nan = int(isnan.sum())
        present = (values[~isnan] if nan else values) + 0.0  # -0.0 -> 0.0
        ordered = np.sort(present)
        lo = int(np.searchsorted(ordered, -np.inf, side="right"))
        hi = int(np.searchsorted(ordered, np.inf, side="left"))
        finite, inf = ordered[lo:hi], len(ordered) - (hi - lo)
        uniq, counts = _uniques(ordered)
        keys = sorted_set(uniq)
        flo = int(np.searchsorted(uniq, -np.inf, side="right"))
        fhi = int(np.searchsorted(uniq, np.inf, side="left"))
        fuf, fcf = uniq[flo:fhi], counts[flo:fhi]
    m = moments_of_sorted(finite, nan, inf)
    if ints and m.n:
        m.min, m.max = int(uniq[0]), int(uniq[-1])
    dist = Distribution.of_sorted(fuf, fcf, bits, limit)
    return {
        "t": kind,
        "dtype": str(dtype),
        "nulls": m.nan,
        "m": m.to_state(),
        "d": dist.to_state(spill_to=f"{spill}-d" if spill else None),
        "h": histogram_of_sorted(finite, edges).to_state() if edges else None,
        "hs": keys.to_state(spill_to=spill),
        "vk": True,  # the distinct keys are the values' own bits (the merge counts distinct finite values)
    }


def datetime_state(col: Any, dtype: Any, spill: str | None) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _single(col)
    unit, tz = arr.type.unit, arr.type.tz
    ints = pc.drop_null(arr).cast(pa.int64()).to_numpy(zero_copy_only=False)
    uniq, _ = _uniques(np.sort(ints))
    return {
        "t": "datetime",
        "dtype": str(dtype),
        "nulls": int(arr.null_count),
        "hs": sorted_set(uniq).to_state(spill_to=spill),
        "dt": [int(uniq[0]), int(uniq[-1])] if len(uniq) else None,
        "unit": unit,
        "tz": str(tz) if tz else None,
    }


def boolean_state(col: Any, dtype: Any, spill: str | None, capacity: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    arr = _single(col)
    present = pc.drop_null(arr).to_numpy(zero_copy_only=False).astype(bool)
    true = int(present.sum())
    false = len(present) - true
    keys = HashSet()
    keys.values = np.array([k for k, c in ((0, false), (1, true)) if c], dtype=np.uint64)
    return {
        "t": "boolean",
        "dtype": str(dtype),
        "nulls": int(arr.null_count),
        "hs": keys.to_state(spill_to=spill),
        "tv": TopValues.of_counts([False, True], [false, true], capacity).to_state(),
    }


def as_text(col: Any) -> Any:
    """A string-like Arrow column as one string array (dictionaries decoded), or None when it is not text."""
    import pyarrow as pa

    arr = _single(col)
    t = arr.type
    if pa.types.is_dictionary(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            return None
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    return arr.cast(pa.large_string()) if pa.types.is_string_view(t) else None


def top_of(values: Any, counts: np.ndarray, capacity: int) -> TopValues:
    """The ``capacity`` first (count descending, text ascending) of distinct ``values`` (an Arrow string
    array); the largest count left out is the error bound (as :func:`data_profiling.top_values_of`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(counts) <= capacity:
        return TopValues.of_counts(values.to_pylist(), counts.tolist(), capacity)
    frame = pa.table({"n": pa.array(-counts), "v": values})
    keep = pc.select_k_unstable(frame, capacity, sort_keys=[("n", "ascending"), ("v", "ascending")])
    kept = frame.take(keep)
    out = TopValues.of_counts(kept["v"].to_pylist(), (-kept["n"].to_numpy()).tolist(), capacity)
    out.error = int(-np.partition(-counts, capacity)[capacity])
    return out


def text_state(
    text: Any, kind: str, dtype: Any, rows: int, spill: str | None, capacity: int, memory: int | None
) -> tuple[dict[str, Any], np.ndarray]:
    """A text or categorical column (``text``: its values as an Arrow string array), and the hash of every row's
    value (reused for the duplicate-row hashes)."""
    import pyarrow.compute as pc

    valid = pc.is_valid(text).to_numpy(zero_copy_only=False) if text.null_count else None
    counted = _dictionary_counts(text, valid) if _few_distinct(text) else None
    keys = HashSet()
    if counted is None:
        hashes = column_hashes(text)
        keys.values = sorted_unique(hashes if valid is None else hashes[valid])
    else:
        values, counts, hashes, unique_hashes = counted
        keys.values = sorted_unique(unique_hashes)
    present = rows - text.null_count
    if len(keys) == present:  # every value distinct (e.g. ids): each counts 1, the top are the smallest texts
        smallest = pc.select_k_unstable(text, min(capacity, present), sort_keys=[("dummy", "ascending")])
        top = TopValues.of_counts(pc.take(text, smallest).to_pylist(), [1] * len(smallest), capacity)
        top.error = 1 if present > capacity else 0
    elif counted is not None:
        top = top_of(values, counts, capacity)
    else:
        pairs = pc.value_counts(pc.drop_null(text) if text.null_count else text)
        counts = pairs.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
        top = top_of(pairs.field("values"), counts, capacity)
    state = {
        "t": kind,
        "dtype": str(dtype),
        "nulls": int(text.null_count),
        "hs": keys.to_state(spill_to=spill),
        "tv": top.to_state(),
    }
    if memory is None:  # text/other: 8 bytes per row + the characters of the values
        chars = pc.sum(pc.utf8_length(text)).as_py() or 0
        state["mem"] = int(8 * rows + chars)
    return state, hashes


#: values a text column's first distinct count looks at (:func:`_few_distinct`)
PROBE = 4096


def _few_distinct(text: Any) -> bool:
    """Whether a text chunk looks low-cardinality (its first ``PROBE`` values at most half distinct): then it
    is dictionary-encoded and only its distinct values are hashed. Only the speed depends on this guess:
    both paths give the same state."""
    import pyarrow.compute as pc

    probe = text.slice(0, min(len(text), PROBE))
    return len(probe) > 0 and 2 * len(pc.unique(probe)) <= len(probe)


def _dictionary_counts(text: Any, valid: np.ndarray | None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """A text column by its distinct values (first-occurrence order, as ``pc.value_counts``): ``(values,
    counts, every row's hash, the values' hashes)``; the hashes are :func:`column_hashes`' (null rows too)."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(text)
    values = encoded.dictionary
    unique_hashes = column_hashes(values)
    codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.intp)
    hashes = unique_hashes[codes] if len(values) else column_hashes(text)
    present = codes if valid is None else codes[valid]
    if valid is not None:
        hashes[~valid] = NULL_HASH
    counts = np.bincount(present, minlength=len(values)).astype(np.int64)
    return values, counts, hashes, unique_hashes


def row_hashes(table: Any, known: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """One uint64 per row over all columns (nulls equal, NaN as null, -0.0 as 0.0, dictionaries decoded);
    ``known``: column position -> the per-row hashes already computed for it."""
    return arrow_row_hashes(table, known=known)


def finite_range(col: Any) -> list[float] | None:
    """``[finite min, finite max]`` of a numeric Arrow column, or None without a finite value."""
    import pyarrow as pa

    values = _single(col).cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)  # ints > 2**53 round
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    return [float(finite.min()), float(finite.max())]
