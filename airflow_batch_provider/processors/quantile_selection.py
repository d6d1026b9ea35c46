"""Quantiles of many chunks' :class:`~.column_stats.Distribution` states without merging them.

The final merge of a profile needs, per numeric column, a handful of order statistics (two per quantile
level) of the union of the chunks' value counts, not the merged distribution itself. Merging exact
distributions of high-cardinality columns (a float column of 20 million distinct values) costs a sort of
every value and a copy of every array; this module instead finds each order statistic by bisection over the
values' 64-bit order keys, counting the values at or below a candidate in each chunk's sorted run with one
binary search (the runs' side files are memory-mapped read-only: a search touches a few pages). Memory is
8 bytes per 128 distinct values of a chunk (the sparse sums of its counts), and the result is bit for bit the merged
distribution's (:meth:`Distribution.quantiles`): the same order statistics, interpolated by the same formula.

Which form the merged distribution has (exact or bucketed) depends on the number of distinct finite values of
the union; :func:`merged_quantiles` takes it from the caller (the profile's exact distinct keys) and falls
back to merging when it is unknown. Bucketed unions are merged bucket by bucket (their size is bounded by the
bucket count, not by the rows). No Airflow imports.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from airflow_batch_provider.processors.column_stats import Distribution, _lerp, bucket_keys

#: values per block of the sparse prefix sums of a large run's counts
BLOCK = 128
#: runs of at most this many values keep every prefix sum (8 bytes per value)
WHOLE = 1 << 16
_SIGN = np.uint64(1 << 63)


def order_keys(values: np.ndarray) -> np.ndarray:
    """Monotone uint64 keys of float64 values (IEEE-754 total order; -0.0 just below 0.0)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def from_order_keys(keys: np.ndarray) -> np.ndarray:
    """The float64 values of :func:`order_keys`."""
    keys = np.asarray(keys, dtype=np.uint64)
    return np.where(keys & _SIGN, keys ^ _SIGN, ~keys).view(np.float64)


class SortedRun:
    """One chunk's exact distribution: sorted distinct values and their counts, with sparse prefix sums."""

    __slots__ = ("block", "counts", "ones", "prefix", "total", "values")

    def __init__(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.values, self.counts = values, counts
        n = len(values)
        self.block = 1 if n <= WHOLE else BLOCK  # small runs: every prefix sum (no partial block to add)
        counts = np.asarray(counts[:n], dtype=np.int64)
        sums = np.add.reduceat(counts, np.arange(0, n, self.block)) if self.block > 1 and n else counts
        self.prefix = np.concatenate([[0], np.cumsum(sums)]).astype(np.int64)  # counts before each block
        self.total = int(self.prefix[-1])
        self.ones = self.total == n  # every value once: the count at or below a value is its position

    @classmethod
    def of_state(cls, state: dict[str, Any]) -> SortedRun:
        """An exact distribution state; side files are mapped read-only (counts read once for the sums)."""
        if "file" not in state:
            dist = Distribution.from_state(state)
            return cls(dist.values, dist.counts)
        n = int(state["n"])
        values = _mapped(f"{state['file']}.v.bin", "<f8", n)
        counts = _mapped(f"{state['file']}.c.bin", "<i8", n)
        return cls(values, counts)

    def count_at_most(self, x: np.ndarray) -> np.ndarray:
        """Per candidate in ``x``: how many values of the run are <= it."""
        idx = np.searchsorted(self.values, x, side="right")
        if self.ones:
            return idx.astype(np.int64)
        if self.block == 1:
            return self.prefix[idx]
        block = idx // BLOCK
        base = block * BLOCK
        take = base[:, None] + np.arange(BLOCK)  # each candidate's block, masked past its position
        inside = np.arange(BLOCK) < (idx - base)[:, None]
        gathered = np.asarray(self.counts[np.minimum(take, len(self.values) - 1).ravel()]).reshape(take.shape)
        return self.prefix[block] + np.where(inside, gathered, 0).sum(axis=1)


def _mapped(path: str, dtype: str, n: int) -> np.ndarray:
    from airflow_batch_provider.processors import side_files

    local = side_files.localize(path)
    size = os.path.getsize(local) if local is not None else -1
    if local is None or size != n * np.dtype(dtype).itemsize:
        raise RuntimeError(
            f"distribution side file {path} is missing or does not hold {n} values; the job folder was "
            "changed or moved: rerun the job in a new output folder"
        )
    return np.memmap(local, dtype=dtype, mode="r", shape=(n,))


def select(runs: list[SortedRun], ranks: np.ndarray) -> np.ndarray:
    """The values at 0-based ``ranks`` of the sorted union of ``runs`` (each rank below the total count).

    For each rank, the smallest order key whose value has more than ``rank`` values at or below it, by
    bisection (at most 64 steps, all ranks at once); the key found is a data value's (or -0.0 for 0.0)."""
    runs = [r for r in runs if r.total]
    ranks = np.asarray(ranks, dtype=np.int64)
    lo = np.full(len(ranks), min(order_keys(r.values[:1])[0] for r in runs), dtype=np.uint64)
    hi = np.full(len(ranks), max(order_keys(r.values[-1:])[0] for r in runs), dtype=np.uint64)
    while np.any(lo < hi):
        mid = lo + (hi - lo) // np.uint64(2)
        x = from_order_keys(mid)
        above = sum(r.count_at_most(x) for r in runs) > ranks
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid + np.uint64(1))
    return from_order_keys(lo) + 0.0  # -0.0 -> 0.0, as the data holds it


def exact_quantiles(runs: list[SortedRun], qs: list[float]) -> list[float | None]:
    """:meth:`Distribution.quantiles` of the merged exact distribution of ``runs`` (bit for bit)."""
    n = sum(r.total for r in runs)
    if not n:
        return [None for _ in qs]
    h = (n - 1) * np.asarray(qs, dtype=np.float64)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    ranks, where = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    values = select(runs, ranks)[where]
    a, b = values[: len(qs)], values[len(qs) :]
    return [float(v) for v in _lerp(a, b, h - lo)]


def _bucket_part(dist: Distribution) -> tuple[np.ndarray, ...]:
    """A distribution's buckets (an exact one's values reduced to their buckets: keys are monotone)."""
    if not dist.exact:
        return dist.keys, dist.counts, dist.mins, dist.maxs
    keys = bucket_keys(dist.values, dist.bits)
    if not len(keys):
        return keys, dist.counts, dist.values, dist.values
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.append(starts[1:], len(keys)) - 1
    return keys[starts], np.add.reduceat(dist.counts, starts), dist.values[starts], dist.values[ends]


def bucketed(states: list[dict[str, Any]]) -> Distribution:
    """The merged distribution in bucket form, one part in memory at a time (plus the buckets so far)."""
    first = states[0]
    out = Distribution(first["bits"], first["limit"])
    parts = [_bucket_part(Distribution.from_state(s)) for s in states]
    out._to_buckets(*(np.concatenate([p[k] for p in parts]) for k in range(4)))
    return out


#: unions of at most this many entries (all chunks together) are merged: cheaper than the bisection steps
SMALL = 1 << 16


def _entries(state: dict[str, Any]) -> int:
    """Values an exact distribution state holds (inline: from its base64 length)."""
    return int(state["n"]) if "file" in state else len(state["c"]) * 3 // 32


def merged_quantiles(states: list[dict[str, Any]], qs: list[float], distinct: int | None) -> dict[str, Any]:
    """``{"exact", "n", "quantiles"}`` of the merge of Distribution ``states`` (in source order), equal to
    ``Distribution.merge([from_state(s) ...]).quantiles(qs)`` and its ``exact`` and ``n``.

    ``distinct``: the number of distinct finite values of the union when the caller knows it (then large exact
    unions are never merged), else None (the states are merged when all are exact)."""
    if not states:
        return {"exact": True, "n": 0, "quantiles": [None for _ in qs]}
    limit = int(states[0]["limit"])
    if all(s["exact"] for s in states):
        if distinct is None or sum(_entries(s) for s in states) <= SMALL:
            dist = Distribution.merge([Distribution.from_state(s) for s in states])
            return {"exact": dist.exact, "n": dist.n, "quantiles": dist.quantiles(qs)}
        if distinct <= limit:
            runs = [SortedRun.of_state(s) for s in states]
            return {"exact": True, "n": sum(r.total for r in runs), "quantiles": exact_quantiles(runs, qs)}
    dist = bucketed(states)
    return {"exact": False, "n": dist.n, "quantiles": dist.quantiles(qs)}
