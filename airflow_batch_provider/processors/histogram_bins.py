"""Histogram bins that suit the data, fixed by the statistics pass, so every chunking gets the same edges.

The statistics pass of ``data_profiling`` keeps, per numeric column, its exact finite ``[min, max]`` and the
count of finite values per *octave* (power of two: ``x`` in ``[2**(e-1), 2**e)`` for positive values, mirrored
for negative ones, zeros apart). Octave counts are sums, so merging them is exact and independent of how the
rows were chunked; a state holds at most a few dozen pairs per column.

:func:`choose_edges` starts from ``bins`` equal-width bins over ``[min, max]`` and keeps them unless they are
uninformative: one equal-width bin holds, for certain (whole octaves inside it), at least ``SKEW_SHARE`` of the
values and those values span at least ``SKEW_OCTAVES`` octaves (many orders of magnitude squeezed into one bar;
a single repeated value, such as many zeros, is not that). Then:

- ``log``: all values positive: ``bins`` geometric edges over ``[min, max]`` (a lognormal column fills them);
- ``quantile``: otherwise: edges at the ``i / bins`` quantiles estimated from the octave counts (geometric
  interpolation inside an octave), duplicates dropped, ``min`` and ``max`` kept as the ends.

:func:`scale_of` tells the three kinds apart from the edges alone (the report's ``histogram_scale``).
No Airflow imports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: a bin holding at least this share of the values for certain makes the equal-width bins uninformative ...
SKEW_SHARE = 0.5
#: ... when those values span at least this many octaves (powers of two)
SKEW_OCTAVES = 4
#: a biased IEEE-754 exponent b is the octave e = b - 1022 (``x = m * 2**e``, ``0.5 <= m < 1``, as ``frexp``)
_BIAS = 1022


def octave_counts(finite: np.ndarray) -> dict[str, Any]:
    """Counts of finite ``float64`` values per octave: ``{"p": [[e, n], ...], "n": [[e, n], ...], "z": n}``
    (``p``: positive values in ``[2**(e-1), 2**e)``; ``n``: negative values whose magnitude is; ``z``: zeros).

    Read from the IEEE-754 bits (sign and biased exponent: one shift and one ``bincount``, no ``frexp``); a
    subnormal value counts in the lowest normal octave (``e = -1021``)."""
    x = np.ascontiguousarray(finite, dtype=np.float64)
    bits = x.view(np.int64)
    code = (bits >> 52) & 0xFFF  # sign bit (2048) + biased exponent
    counts = np.bincount(code, minlength=4096)
    zeros = int(np.count_nonzero(x == 0))
    positive_zero = zeros - int(np.count_nonzero(bits == np.iinfo(np.int64).min))  # -0.0: sign bit only
    counts[0] -= positive_zero
    counts[2048] -= zeros - positive_zero
    counts[1] += counts[0]  # subnormals: the lowest normal octave
    counts[2049] += counts[2048]
    counts[0] = counts[2048] = 0
    out: dict[str, Any] = {"p": [], "n": [], "z": zeros}
    for key, base in (("p", 0), ("n", 2048)):
        part = counts[base : base + 2048]
        out[key] = [[int(b) - _BIAS, int(part[b])] for b in np.flatnonzero(part)]
    return out


def finite_range_and_octaves(col: Any) -> tuple[list[float] | None, dict[str, Any] | None]:
    """``([finite min, finite max], octave counts)`` of a numeric Arrow column; ``(None, None)`` without a
    finite value (integers above 2**53 round, as in the main pass)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    values = col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    keep = np.isfinite(values)
    finite = values if keep.all() else values[keep]  # no copy in the common all-finite case
    if not len(finite):
        return None, None
    return [float(finite.min()), float(finite.max())], octave_counts(finite)


def merge_octaves(states: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The sum of octave counts (``None`` entries ignored; ``None`` when all are)."""
    present = [s for s in states if s]
    if not present:
        return None
    out: dict[str, Any] = {"z": sum(int(s.get("z", 0)) for s in present)}
    for key in ("p", "n"):
        total: dict[int, int] = {}
        for s in present:
            for e, n in s.get(key, ()):
                total[int(e)] = total.get(int(e), 0) + int(n)
        out[key] = [[e, total[e]] for e in sorted(total)]
    return out


def equal_width(lo: float, hi: float, bins: int) -> list[float]:
    if lo == hi:
        return [float(lo), float(hi)]
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def _intervals(octaves: dict[str, Any], lo: float, hi: float) -> list[tuple[float, float, int]]:
    """``(low, high, count)`` per octave in value order, clipped to ``[lo, hi]``."""
    out: list[tuple[float, float, int]] = []
    for e, n in reversed(octaves.get("n", ())):  # most negative first
        out.append((max(-math.ldexp(1.0, e), lo), min(-math.ldexp(1.0, e - 1), hi), int(n)))
    if octaves.get("z"):
        out.append((0.0, 0.0, int(octaves["z"])))
    for e, n in octaves.get("p", ()):
        out.append((max(math.ldexp(1.0, e - 1), lo), min(math.ldexp(1.0, e), hi), int(n)))
    return [(a, max(a, b), n) for a, b, n in out if n]


def is_skewed(lo: float, hi: float, octaves: dict[str, Any] | None, bins: int) -> bool:
    """Whether ``bins`` equal-width bins over ``[lo, hi]`` squeeze the data into one bin (see the module)."""
    if octaves is None or not hi > lo or bins < 2:
        return False
    spans = _intervals(octaves, lo, hi)
    total = sum(n for _, _, n in spans)
    if not total:
        return False
    width = (hi - lo) / bins
    share: dict[int, int] = {}
    kinds: dict[int, int] = {}
    for a, b, n in spans:
        first = min(int((a - lo) / width), bins - 1)
        last = min(int((b - lo) / width), bins - 1)
        if first == last and a != b:  # a whole octave inside one bin (a point mass does not count)
            share[first] = share.get(first, 0) + n
            kinds[first] = kinds.get(first, 0) + 1
    return any(share[k] >= SKEW_SHARE * total and kinds[k] >= SKEW_OCTAVES for k in share)


def _quantile_edges(lo: float, hi: float, octaves: dict[str, Any], bins: int) -> list[float]:
    spans = _intervals(octaves, lo, hi)
    total = sum(n for _, _, n in spans)
    targets = [total * i / bins for i in range(1, bins)]
    edges = [lo]
    seen = 0
    t = 0
    for a, b, n in spans:
        while t < len(targets) and targets[t] <= seen + n:
            frac = (targets[t] - seen) / n
            if a == b:
                value = a
            elif a > 0:
                value = a * (b / a) ** frac
            elif b < 0:
                value = b * (a / b) ** (1.0 - frac)  # geometric in the magnitude
            else:
                value = a + (b - a) * frac
            edges.append(float(min(max(value, lo), hi)))
            t += 1
        seen += n
    edges.append(hi)
    out = [edges[0]]
    for e in edges[1:]:
        if e > out[-1]:
            out.append(e)
    if out[-1] != hi:
        out[-1] = hi
    return out


def choose_edges(lo: float, hi: float, octaves: dict[str, Any] | None, bins: int) -> list[float]:
    """Histogram edges for a column with finite range ``[lo, hi]`` and these octave counts (see the module)."""
    linear = equal_width(lo, hi, bins)
    if not is_skewed(lo, hi, octaves, bins):
        return linear
    assert octaves is not None
    if lo > 0:
        edges = [float(e) for e in np.geomspace(lo, hi, bins + 1)]
        edges[0], edges[-1] = float(lo), float(hi)
        if all(b > a for a, b in zip(edges, edges[1:], strict=False)):
            return edges
    edges = _quantile_edges(lo, hi, octaves, bins)
    return edges if len(edges) >= 3 else linear


def scale_of(edges: list[float] | None) -> str | None:
    """``linear``, ``log`` or ``quantile``: how ``edges`` were chosen (None without edges)."""
    if not edges:
        return None
    e = np.asarray(edges, dtype=np.float64)
    if len(e) <= 2 or e[0] == e[-1]:
        return "linear"
    widths = np.diff(e)
    if np.allclose(widths, widths[0], rtol=1e-6, atol=0):
        return "linear"
    if e[0] > 0:
        ratios = e[1:] / e[:-1]
        if np.allclose(ratios, ratios[0], rtol=1e-6, atol=0):
            return "log"
    return "quantile"
