"""Mergeable column statistics shared by the profiling and feature-engineering processors.

Every class here has ``to_state()`` (JSON-safe, never pickle), ``from_state()`` and a ``merge`` of
a list of partial results given in source order. Merges are exact where the contract needs it:

- :class:`Moments` - count, mean and M2 merged with Chan's parallel formula (float64, in source order),
  finite min/max, NaN and infinity counts. Means and std agree with a one-piece ``math.fsum`` oracle to
  ~1e-15 relative; a constant column has std exactly 0.
- :class:`ExactMoments` - the exact sum and sum of squares of float64 values as scaled integers, so
  mean and variance are correctly rounded and bit-identical for every chunking (used where fitted
  parameters feed row outputs that must not depend on chunking).
- :class:`Distribution` - quantiles. Exact value counts while a column has at most ``exact_limit``
  distinct finite values (then quantiles equal pandas' linear interpolation); beyond that, counts per
  bucket of values sharing sign, exponent and the top ``bits`` mantissa bits, plus each bucket's
  exact min and max. Both forms are deterministic functions of the multiset of values, so the
  result never depends on chunking. Error bound in bucket form: ``|estimate - exact| <= 2**-bits *
  max(|x_(k)|, |x_(k+1)|)`` where ``x_(k), x_(k+1)`` are the two order statistics pandas interpolates
  between (relative error 2**-10 ~ 1e-3 by default); quantiles at ranks that fall on a bucket's first or
  last value, and every bucket holding one distinct value, are exact.
- :class:`TopValues` - value counts of text/categorical values. Exact while the column has at most
  ``capacity`` distinct values (whatever the chunking). Beyond that each state keeps the ``capacity``
  most frequent values and an error bound ``error``: every reported count is a lower bound and the true
  count is at most ``count + error`` (a Misra-Gries style bound; values not kept have count <= error).
- :class:`Histogram` - counts over fixed edges (bins ``[e_i, e_i+1)``, the last one closed, as numpy).

No Airflow imports.
"""

from __future__ import annotations

import base64
import math
from fractions import Fraction
from typing import Any

import numpy as np

_LIMB = 18
_LIMB_MASK = (1 << _LIMB) - 1
_SLICE = 1 << 24  # rows per exact-sum slice: limb-product sums stay below 2**63


def pack(values: np.ndarray, dtype: str) -> str:
    """Little-endian base64 of an array (JSON-safe)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode()


def unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()


def as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def finite_values(values: np.ndarray) -> np.ndarray:
    """Finite float64 values, with -0.0 normalised to 0.0."""
    x = as_float(values)
    return x[np.isfinite(x)] + 0.0


# --------------------------------------------------------------------------------------------------
# Moments (Chan's parallel merge)
# --------------------------------------------------------------------------------------------------
class Moments:
    """Count, mean, M2 of finite values; finite min/max; NaN and +/-inf counts."""

    __slots__ = ("n", "mean", "m2", "min", "max", "nan", "inf")

    def __init__(
        self,
        n: int = 0,
        mean: float = 0.0,
        m2: float = 0.0,
        lo: float | None = None,
        hi: float | None = None,
        nan: int = 0,
        inf: int = 0,
    ) -> None:
        self.n, self.mean, self.m2, self.min, self.max, self.nan, self.inf = n, mean, m2, lo, hi, nan, inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        return cls.of_block(as_float(values).reshape(-1, 1))[0]

    @classmethod
    def of_block(cls, block: np.ndarray) -> list[Moments]:
        """Moments of every column of a 2-D float64 array (rows x columns), vectorised."""
        nan = np.isnan(block)
        finite = np.isfinite(block)
        n = finite.sum(axis=0)
        safe = np.where(finite, block, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = safe.sum(axis=0) / n
            dev = np.where(finite, block - mean, 0.0)
            mean = mean + dev.sum(axis=0) / n  # one refinement step (corrected two-pass algorithm)
            dev = np.where(finite, block - mean, 0.0)
            m2 = (dev * dev).sum(axis=0) - dev.sum(axis=0) ** 2 / n
        lo = np.where(finite, block, np.inf).min(axis=0) if len(block) else np.full(block.shape[1], np.inf)
        hi = np.where(finite, block, -np.inf).max(axis=0) if len(block) else np.full(block.shape[1], -np.inf)
        nan_n = nan.sum(axis=0)
        inf_n = len(block) - n - nan_n
        out = []
        for j in range(block.shape[1]):
            k = int(n[j])
            if k == 0:
                out.append(cls(nan=int(nan_n[j]), inf=int(inf_n[j])))
                continue
            m = cls(
                k,
                float(mean[j]),
                max(0.0, float(m2[j])),
                float(lo[j]),
                float(hi[j]),
                int(nan_n[j]),
                int(inf_n[j]),
            )
            out.append(m.pin_constant())
        return out

    def pin_constant(self) -> Moments:
        """A constant column: mean is exactly the value and M2 exactly 0."""
        if self.n and self.min == self.max:
            self.mean, self.m2 = float(self.min), 0.0  # type: ignore[arg-type]  # n > 0: min is set
        return self

    @classmethod
    def merge(cls, items: list[Moments]) -> Moments:
        out = cls()
        for b in items:
            out = out._plus(b)
        return out.pin_constant()

    def _plus(self, b: Moments) -> Moments:
        nan, inf = self.nan + b.nan, self.inf + b.inf
        if not b.n:
            return Moments(self.n, self.mean, self.m2, self.min, self.max, nan, inf)
        if not self.n:
            return Moments(b.n, b.mean, b.m2, b.min, b.max, nan, inf)
        n = self.n + b.n
        delta = b.mean - self.mean
        mean = self.mean + delta * (b.n / n)
        m2 = self.m2 + b.m2 + delta * delta * (self.n * b.n / n)
        return Moments(n, mean, m2, min(self.min, b.min), max(self.max, b.max), nan, inf)  # type: ignore[type-var]

    def std(self, ddof: int = 1) -> float | None:
        if self.n - ddof < 1 or self.n < 2:
            return None
        return math.sqrt(self.m2 / (self.n - ddof))

    def to_state(self) -> list[Any]:
        return [self.n, self.mean, self.m2, self.min, self.max, self.nan, self.inf]

    @classmethod
    def from_state(cls, state: list[Any] | None) -> Moments:
        return cls(*state) if state else cls()


# --------------------------------------------------------------------------------------------------
# Exact sums
# --------------------------------------------------------------------------------------------------
def _limb_sums(mant: np.ndarray, exps: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Per distinct exponent: signed sums of the mantissa limbs and of their pairwise products."""
    lo = int(exps.min())
    keys = (exps - lo).astype(
        np.uint16
    )  # float64 exponents span < 2**12: numpy's radix sort, 10x a sort of int64
    order = np.argsort(keys, kind="stable")
    e, m = exps[order], mant[order]
    starts = np.concatenate(
        ([0], np.flatnonzero(e[1:] != e[:-1]) + 1)
    )  # e is sorted: np.unique without a sort
    uniq = e[starts]
    sign = np.sign(m)
    a = np.abs(m)
    limbs = [a & _LIMB_MASK, (a >> _LIMB) & _LIMB_MASK, a >> (2 * _LIMB)]
    lin = [np.add.reduceat(sign * limb, starts) for limb in limbs]
    l0, l1, l2 = limbs
    # a^2 = l0^2 + 2 l0 l1 2^18 + (l1^2 + 2 l0 l2) 2^36 + 2 l1 l2 2^54 + l2^2 2^72
    products = [l0 * l0, 2 * l0 * l1, l1 * l1 + 2 * l0 * l2, 2 * l1 * l2, l2 * l2]
    quad = [np.add.reduceat(p, starts) for p in products]
    return uniq, lin, quad


def _integer_sums(x: np.ndarray) -> tuple[int, int, int] | None:
    """:func:`exact_sums` of values that are all integers below 2**53 in magnitude (an integer column cast to
    float64), with base 0: int64 sums and dot products of 18-bit limbs (only as many limbs as the largest value
    needs), no exponent sort. None for any other values. The sums are the numbers :func:`exact_sums` gives, at
    another base (which a merge lines up)."""
    if not np.all(np.abs(x) < 2.0**53):
        return None
    ints = x.astype(np.int64)
    if not np.array_equal(ints, x):
        return None
    top = int(np.abs(ints).max())
    count = 1 + (top >> _LIMB > 0) + (top >> (2 * _LIMB) > 0)
    s_total, q_total = 0, 0
    for start in range(0, ints.size, _SLICE):
        m = ints[start : start + _SLICE]
        negative = bool(m.min() < 0)
        a = np.abs(m) if negative else m  # non-negative: the sums need no signs
        limbs = [(a >> (k * _LIMB)) & _LIMB_MASK for k in range(count)]
        sign = np.sign(m)
        for k, limb in enumerate(limbs):  # each sum and dot product below 2**63: limbs < 2**18, 2**24 rows
            s_total += int(np.dot(sign, limb) if negative else limb.sum()) << (k * _LIMB)
            for j in range(k + 1):
                q_total += (2 if j != k else 1) * int(np.dot(limbs[j], limb)) << ((j + k) * _LIMB)
    return s_total, q_total, 0


def exact_sums(values: np.ndarray) -> tuple[int, int, int]:
    """``(S, Q, base)`` with ``sum(x) == S * 2**base`` and ``sum(x*x) == Q * 2**(2*base)`` exactly.

    ``values`` must be finite float64.
    """
    x = as_float(values)
    if not x.size:
        return 0, 0, 0
    whole = _integer_sums(x)
    if whole is not None:
        return whole
    frac, exp = np.frexp(x)
    mant = (frac * 2.0**53).astype(np.int64)  # exact: x == mant * 2**(exp - 53)
    exps = exp.astype(np.int64) - 53
    base = int(exps.min())
    s_total, q_total = 0, 0
    for start in range(0, x.size, _SLICE):
        uniq, lin, quad = _limb_sums(mant[start : start + _SLICE], exps[start : start + _SLICE])
        for i, e in enumerate(uniq.tolist()):
            shift = e - base
            s = int(lin[0][i]) + (int(lin[1][i]) << _LIMB) + (int(lin[2][i]) << (2 * _LIMB))
            q = sum(int(quad[k][i]) << (k * _LIMB) for k in range(5))
            s_total += s << shift
            q_total += q << (2 * shift)
    return s_total, q_total, base


class ExactMoments:
    """Exact count, sum and sum of squares of finite values (plus min/max): bit-identical for any chunking."""

    __slots__ = ("n", "s", "q", "base", "min", "max")

    def __init__(
        self,
        n: int = 0,
        s: int = 0,
        q: int = 0,
        base: int = 0,
        lo: float | None = None,
        hi: float | None = None,
    ) -> None:
        self.n, self.s, self.q, self.base, self.min, self.max = n, s, q, base, lo, hi

    @classmethod
    def of(cls, values: np.ndarray) -> ExactMoments:
        x = finite_values(values)
        if not x.size:
            return cls()
        s, q, base = exact_sums(x)
        return cls(int(x.size), s, q, base, float(x.min()), float(x.max()))

    @classmethod
    def of_constant(cls, value: float, count: int) -> ExactMoments:
        """``count`` copies of ``value`` (e.g. imputed values)."""
        if count <= 0 or not math.isfinite(value):
            return cls()
        one = cls.of(np.array([value]))
        return cls(count, one.s * count, one.q * count, one.base, one.min, one.max)

    @classmethod
    def merge(cls, items: list[ExactMoments]) -> ExactMoments:
        items = [i for i in items if i.n]
        if not items:
            return cls()
        base = min(i.base for i in items)
        s = sum(i.s << (i.base - base) for i in items)
        q = sum(i.q << (2 * (i.base - base)) for i in items)
        return cls(
            sum(i.n for i in items),
            s,
            q,
            base,
            min(i.min for i in items),  # type: ignore[type-var]
            max(i.max for i in items),  # type: ignore[type-var]
        )

    def _scaled(self, num: int, den: int, power: int) -> Fraction:
        return Fraction(num * 2 ** max(power, 0), den * 2 ** max(-power, 0))

    def mean(self) -> float | None:
        if not self.n:
            return None
        if self.min == self.max:
            return self.min
        return float(self._scaled(self.s, self.n, self.base))

    def var(self, ddof: int = 1) -> float | None:
        """Correctly rounded variance; exactly 0 for a constant column; None below ``ddof + 1`` values."""
        if self.n <= ddof or self.n < 1:
            return None
        m2_num = self.n * self.q - self.s * self.s  # M2 = m2_num / n * 2**(2 base), exact
        return float(self._scaled(m2_num, self.n * (self.n - ddof), 2 * self.base))

    def std(self, ddof: int = 1) -> float | None:
        v = self.var(ddof)
        return None if v is None else math.sqrt(v)

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "s": hex(self.s),
            "q": hex(self.q),
            "b": self.base,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> ExactMoments:
        if not state or not state.get("n"):
            return cls()
        return cls(
            state["n"], int(state["s"], 16), int(state["q"], 16), state["b"], state["min"], state["max"]
        )


# --------------------------------------------------------------------------------------------------
# Distribution (quantiles)
# --------------------------------------------------------------------------------------------------
def bucket_keys(values: np.ndarray, bits: int) -> np.ndarray:
    """Monotone integer keys: values sharing sign, exponent and the top ``bits`` mantissa bits share a key."""
    raw = as_float(values).view(np.int64)
    shift = 52 - bits
    magnitude = raw & np.int64(0x7FFF_FFFF_FFFF_FFFF)
    return np.where(raw >= 0, raw >> shift, -(magnitude >> shift) - 1)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own linear interpolation formula (so exact quantiles equal pandas bit for bit)."""
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


class Distribution:
    """Counts of finite values: exact (value, count) pairs, or buckets (key, count, min, max)."""

    __slots__ = ("exact", "values", "counts", "keys", "mins", "maxs", "bits", "limit")

    def __init__(self, bits: int = 10, limit: int = 10_000) -> None:
        self.bits, self.limit = bits, limit
        self.exact = True
        self.values = np.empty(0, np.float64)
        self.counts = np.empty(0, np.int64)
        self.keys = np.empty(0, np.int64)
        self.mins = np.empty(0, np.float64)
        self.maxs = np.empty(0, np.float64)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def of(cls, values: np.ndarray, bits: int = 10, limit: int = 10_000) -> Distribution:
        x = finite_values(values)
        out = cls(bits, limit)
        out.values, counts = np.unique(x, return_counts=True)
        out.counts = counts.astype(np.int64)
        return out._maybe_bucket()

    @classmethod
    def of_sorted(
        cls, values: np.ndarray, counts: np.ndarray, bits: int = 10, limit: int = 10_000
    ) -> Distribution:
        """From sorted, distinct, finite values (no -0.0) and their counts."""
        out = cls(bits, limit)
        out.values, out.counts = as_float(values), np.asarray(counts, dtype=np.int64)
        return out._maybe_bucket()

    @classmethod
    def of_counts(
        cls, values: np.ndarray, counts: np.ndarray, bits: int = 10, limit: int = 10_000
    ) -> Distribution:
        out = cls(bits, limit)
        out.values, out.counts = as_float(values), np.asarray(counts, dtype=np.int64)
        return out._normalise()

    def _merge_sorted_runs(self) -> Distribution:
        """:meth:`_normalise` of concatenated sorted runs (the parts' distinct values): a stable sort merges
        the runs in about linear time and equal values are summed per run of equals (no ``np.add.at``)."""
        keep = np.isfinite(self.values) & (self.counts > 0)
        v, c = self.values[keep] + 0.0, self.counts[keep]
        order = np.argsort(v, kind="stable")
        v, c = v[order], c[order]
        if len(v):
            starts = np.empty(len(v), dtype=bool)
            starts[0] = True
            np.not_equal(v[1:], v[:-1], out=starts[1:])
            idx = np.flatnonzero(starts)
            v, c = v[idx], np.add.reduceat(c, idx)
        self.values, self.counts = v, c.astype(np.int64)
        return self._maybe_bucket()

    def _normalise(self) -> Distribution:
        keep = np.isfinite(self.values) & (self.counts > 0)
        v, c = self.values[keep] + 0.0, self.counts[keep]
        self.values, inverse = np.unique(v, return_inverse=True)
        self.counts = np.zeros(len(self.values), np.int64)
        np.add.at(self.counts, inverse, c)
        return self._maybe_bucket()

    def _maybe_bucket(self) -> Distribution:
        if self.exact and len(self.values) > self.limit:
            self._sorted_to_buckets()
        return self

    def _sorted_to_buckets(self) -> None:
        """:meth:`_to_buckets` of sorted, distinct values: their keys are already in order, so the buckets are
        runs of equal keys (the same arrays, without the sort)."""
        keys = bucket_keys(self.values, self.bits)
        starts = np.empty(len(keys), dtype=bool)
        starts[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        idx = np.flatnonzero(starts)
        ends = np.append(idx[1:], len(keys)) - 1
        self.keys = keys[idx]
        self.counts = np.add.reduceat(self.counts, idx) if len(keys) else self.counts
        self.mins, self.maxs = self.values[idx], self.values[ends]
        self.exact = False
        self.values = np.empty(0, np.float64)

    def _to_buckets(self, keys: np.ndarray, counts: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> None:
        order = np.lexsort((mins, keys))
        keys, counts, mins, maxs = keys[order], counts[order], mins[order], maxs[order]
        uniq, starts = np.unique(keys, return_index=True)
        self.keys = uniq
        self.counts = np.add.reduceat(counts, starts) if len(keys) else counts
        self.mins = np.minimum.reduceat(mins, starts) if len(keys) else mins
        self.maxs = np.maximum.reduceat(maxs, starts) if len(keys) else maxs
        self.exact = False
        self.values = np.empty(0, np.float64)

    @classmethod
    def merge(cls, items: list[Distribution], bits: int = 10, limit: int = 10_000) -> Distribution:
        if items:
            bits, limit = items[0].bits, items[0].limit
        out = cls(bits, limit)
        if all(i.exact for i in items):
            if items:
                out.values = np.concatenate([i.values for i in items])
                out.counts = np.concatenate([i.counts for i in items])
            return out._merge_sorted_runs()
        parts = [i._bucket_arrays() for i in items]
        out._to_buckets(*(np.concatenate([p[k] for p in parts]) for k in range(4)))
        return out

    def _bucket_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.exact:
            return bucket_keys(self.values, self.bits), self.counts, self.values, self.values
        return self.keys, self.counts, self.mins, self.maxs

    def add_constant(self, value: float, count: int) -> Distribution:
        """``count`` more copies of ``value`` (imputed values)."""
        if count <= 0 or not math.isfinite(value):
            return self
        extra = Distribution.of_counts(np.array([value]), np.array([count]), self.bits, self.limit)
        return Distribution.merge([self, extra])

    def order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """The values at 0-based ``ranks`` of the sorted data (estimated within a bucket when bucketed)."""
        cum = np.cumsum(self.counts)
        idx = np.searchsorted(cum, ranks, side="right")
        if self.exact:
            return self.values[idx]
        before = np.where(idx > 0, cum[idx - 1], 0)
        within = (ranks - before).astype(np.float64)
        span = np.maximum(self.counts[idx] - 1, 1).astype(np.float64)
        lo, hi = self.mins[idx], self.maxs[idx]
        return np.where(within >= self.counts[idx] - 1, hi, lo + (hi - lo) * (within / span))

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """Quantiles with pandas' default linear interpolation (exact in exact form)."""
        n = self.n
        if not n:
            return [None for _ in qs]
        h = (n - 1) * np.asarray(qs, dtype=np.float64)
        lo = np.floor(h).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        a, b = self.order_statistics(lo), self.order_statistics(hi)
        return [float(v) for v in _lerp(a, b, h - lo)]

    def mode(self) -> float | None:
        """The most frequent value (smallest on ties); a bucket's smallest value when bucketed."""
        if not len(self.counts):
            return None
        i = int(np.argmax(self.counts))
        return float(self.values[i] if self.exact else self.mins[i])

    def _arrays(self) -> dict[str, tuple[np.ndarray, str]]:
        if self.exact:
            return {"v": (self.values, "<f8"), "c": (self.counts, "<i8")}
        return {
            "k": (self.keys, "<i8"),
            "c": (self.counts, "<i8"),
            "lo": (self.mins, "<f8"),
            "hi": (self.maxs, "<f8"),
        }

    def to_state(self, spill_to: str | None = None) -> dict[str, Any]:
        """JSON-safe state: arrays inline (base64), or, with ``spill_to`` (a local path without suffix) and more
        than ``SPILL_MIN_VALUES`` entries, in raw little-endian side files ``{spill_to}.<array>.bin`` (written
        atomically) referenced as ``{"file": spill_to, "n": entries}``."""
        state: dict[str, Any] = {"exact": self.exact, "bits": self.bits, "limit": self.limit}
        arrays = self._arrays()
        if spill_to and len(self.counts) > SPILL_MIN_VALUES:
            write_side_files(spill_to, {k: np.ascontiguousarray(a, dtype=d) for k, (a, d) in arrays.items()})
            state.update(file=spill_to, n=int(len(self.counts)))
            return state
        state.update({k: pack(a, d) for k, (a, d) in arrays.items()})
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Distribution:
        out = cls(state["bits"], state["limit"])
        out.exact = bool(state["exact"])
        dtypes = {"v": "<f8", "c": "<i8", "k": "<i8", "lo": "<f8", "hi": "<f8"}
        names = ("v", "c") if out.exact else ("k", "c", "lo", "hi")
        if "file" in state:
            arrays = read_side_files(state["file"], {k: dtypes[k] for k in names}, int(state["n"]))
        else:
            arrays = {k: unpack(state[k], dtypes[k]) for k in names}
        out.counts = arrays["c"]
        if out.exact:
            out.values = arrays["v"]
        else:
            out.keys, out.mins, out.maxs = arrays["k"], arrays["lo"], arrays["hi"]
        return out


#: distributions with more entries than this go to side files when a local folder is known
SPILL_MIN_VALUES = 4096


def write_side_files(base: str, arrays: dict[str, np.ndarray]) -> None:
    """Write each array raw to ``{base}.{name}.bin`` atomically (temp file + ``os.replace``)."""
    import os
    import uuid

    from airflow_batch_provider.processors import side_files

    for name, values in arrays.items():
        local = side_files.local_target(f"{base}.{name}.bin")  # on object storage: the cache copy
        tmp = f"{local}.{uuid.uuid4().hex}.tmp"
        values.tofile(tmp)
        os.replace(tmp, local)
        side_files.publish(f"{base}.{name}.bin")


def read_side_files(base: str, dtypes: dict[str, str], n: int) -> dict[str, np.ndarray]:
    """The arrays :func:`write_side_files` wrote, each checked to hold ``n`` entries."""
    import os

    from airflow_batch_provider.processors import side_files

    out = {}
    for name, dtype in dtypes.items():
        path = f"{base}.{name}.bin"
        local = side_files.localize(path)
        size = os.path.getsize(local) if local is not None else -1
        if size != n * np.dtype(dtype).itemsize:
            raise RuntimeError(
                f"distribution side file {path} is missing or does not hold {n} values; the job folder was "
                "changed or moved: rerun the job in a new output folder"
            )
        out[name] = np.fromfile(local, dtype=dtype)  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------------------------------
# Top values
# --------------------------------------------------------------------------------------------------
def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)  # 1 and True stay apart


def _sort_key(item: tuple[Any, int]) -> tuple[int, str]:
    return (-item[1], str(item[0]))


def _text_order(texts: list[str]) -> list[int]:
    """Positions of ``texts`` in Python's ``sorted`` order (stable); Arrow sorts large lists faster."""
    if len(texts) > 1000:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            return pc.sort_indices(pa.array(texts, type=pa.large_string())).to_pylist()  # stable, code points
        except (pa.ArrowException, UnicodeError):
            pass  # e.g. lone surrogates: Python's own sort below
    return sorted(range(len(texts)), key=texts.__getitem__)


def _rank_top(items: list[tuple[tuple[str, Any], int]], capacity: int) -> tuple[list[Any], int]:
    """``sorted(items, key=(-count, str(value)))[:capacity]`` and the count ranked next, without sorting
    every item: the cut-off count comes from a partition, and only items tied at it are sorted by text."""
    counts = np.fromiter((c for _, c in items), dtype=np.int64, count=len(items))
    cut = int(np.partition(counts, len(counts) - 1 - capacity)[len(counts) - 1 - capacity])
    sure = [items[i] for i in np.flatnonzero(counts > cut).tolist()]
    sure.sort(key=lambda kv: (-kv[1], str(kv[0][1])))
    tied = [items[i] for i in np.flatnonzero(counts == cut).tolist()]
    order = _text_order([str(kv[0][1]) for kv in tied])
    return sure + [tied[i] for i in order[: capacity - len(sure)]], cut


class TopValues:
    """Exact value counts up to ``capacity`` distinct values; beyond, the top ``capacity`` with an error bound."""

    __slots__ = ("counts", "error", "capacity")

    def __init__(self, capacity: int = 10_000) -> None:
        self.counts: dict[tuple[str, Any], int] = {}
        self.error = 0
        self.capacity = capacity

    @property
    def exact(self) -> bool:
        return self.error == 0 and len(self.counts) <= self.capacity

    @classmethod
    def of_counts(cls, values: list[Any], counts: list[int], capacity: int = 10_000) -> TopValues:
        out = cls(capacity)
        for v, c in zip(values, counts, strict=False):
            if c > 0:
                k = _key(v)
                out.counts[k] = out.counts.get(k, 0) + int(c)
        return out._truncate(0)

    def _truncate(self, error: int) -> TopValues:
        self.error = error
        if len(self.counts) > self.capacity:
            ranked, dropped_max = _rank_top(list(self.counts.items()), self.capacity)
            self.counts = dict(ranked)
            self.error = error + dropped_max
        return self

    @classmethod
    def merge(cls, items: list[TopValues], capacity: int | None = None) -> TopValues:
        out = cls(capacity or (items[0].capacity if items else 10_000))
        for item in items:
            for k, c in item.counts.items():
                out.counts[k] = out.counts.get(k, 0) + c
        return out._truncate(sum(i.error for i in items))

    def top(self, k: int | None = None) -> list[list[Any]]:
        """``[[value, count], ...]`` by count descending, then by the value's text."""
        items = sorted(((key[1], c) for key, c in self.counts.items()), key=_sort_key)
        return [[v, c] for v, c in (items if k is None else items[:k])]

    def to_state(self) -> dict[str, Any]:
        items = list(self.counts.items())
        return {
            "cap": self.capacity,
            "err": self.error,
            "v": [k[1] for k, _ in items],
            "c": [c for _, c in items],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TopValues:
        out = cls(state["cap"])
        out.counts = {_key(v): int(c) for v, c in zip(state["v"], state["c"], strict=False)}
        out.error = int(state["err"])
        return out


# --------------------------------------------------------------------------------------------------
# Histogram
# --------------------------------------------------------------------------------------------------
def equal_width_edges(lo: float, hi: float, bins: int) -> list[float]:
    """``bins`` equal-width edges over ``[lo, hi]``; a single bin ``[lo, lo]`` for a constant column."""
    if lo == hi:
        return [float(lo), float(hi)]
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: ``[e_i, e_i+1)``, the last bin closed; values outside are clipped to the ends."""
    nbins = max(len(edges) - 1, 1)
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, nbins - 1)


class Histogram:
    """Counts of finite values over fixed edges (values outside the edges are counted in ``outside``)."""

    __slots__ = ("edges", "counts", "outside")

    def __init__(self, edges: list[float], counts: np.ndarray | None = None, outside: int = 0) -> None:
        self.edges = [float(e) for e in edges]
        self.counts = np.zeros(max(len(edges) - 1, 1), np.int64) if counts is None else counts
        self.outside = outside

    @classmethod
    def of(cls, values: np.ndarray, edges: list[float]) -> Histogram:
        x = finite_values(values)
        e = np.asarray(edges, dtype=np.float64)
        inside = (x >= e[0]) & (x <= e[-1])
        counts = np.bincount(bin_index(x[inside], e), minlength=max(len(e) - 1, 1)).astype(np.int64)
        return cls(edges, counts, int((~inside).sum()))

    @classmethod
    def merge(cls, items: list[Histogram]) -> Histogram | None:
        if not items:
            return None
        counts = np.sum([i.counts for i in items], axis=0)
        return cls(items[0].edges, counts, sum(i.outside for i in items))

    def to_state(self) -> dict[str, Any]:
        return {"edges": self.edges, "counts": self.counts.tolist(), "outside": self.outside}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Histogram:
        return cls(state["edges"], np.asarray(state["counts"], dtype=np.int64), state.get("outside", 0))
