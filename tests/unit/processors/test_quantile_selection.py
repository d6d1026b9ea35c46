"""quantile_selection: the quantiles of many chunks' distributions, selected without merging them, equal the
merged distribution's bit for bit (exact and bucketed, inline and side-file states)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from airflow_batch_provider.processors import quantile_selection as qsel
from airflow_batch_provider.processors.column_stats import Distribution
from airflow_batch_provider.processors.hashing import HashSet
from airflow_batch_provider.processors.profiling_kernels import sorted_set

QS = [0.0, 0.01, 0.05, 0.25, 0.333, 0.5, 0.75, 0.95, 0.99, 1.0]


def _chunks(values: np.ndarray, cuts: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bounds = np.sort(rng.choice(np.arange(1, len(values)), cuts - 1, replace=False))
    return np.split(values, bounds)


def _states(parts: list[np.ndarray], limit: int, spill: str | None, bits: int = 10) -> list[dict]:
    out = []
    for i, part in enumerate(parts):
        values, counts = np.unique(part + 0.0, return_counts=True)
        dist = Distribution.of_sorted(values, counts, bits, limit)
        out.append(dist.to_state(spill_to=f"{spill}-{i}" if spill else None))
    return out


def _reference(states: list[dict]) -> Distribution:
    return Distribution.merge([Distribution.from_state(s) for s in states])


def _bits(values: list) -> list:
    return [None if v is None else np.float64(v).tobytes() for v in values]


def _no_merge(monkeypatch) -> None:
    def merge(*args, **kwargs):
        raise AssertionError("the union was merged, not selected")

    monkeypatch.setattr(qsel.Distribution, "merge", merge)


def _data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "distinct floats":
        return rng.normal(0, 1e3, n)
    if kind == "repeats":  # few distinct values, many copies: counts far from 1
        return rng.integers(-50, 50, n).astype(np.float64) / 4
    if kind == "zeros and signs":
        x = rng.choice([-0.0, 0.0, -1e-300, 1e-300, -5.0, 5.0, 1e308, -1e308], n)
        return x.astype(np.float64)
    return np.round(rng.lognormal(0, 2, n), 2)  # "skewed"


@pytest.mark.parametrize("kind", ["distinct floats", "repeats", "zeros and signs", "skewed"])
@pytest.mark.parametrize("spill", [False, True])
def test_exact_selection_equals_the_merged_distribution_bit_for_bit(kind, spill, tmp_path, monkeypatch):
    x = _data(kind, 30_000, seed=7)
    states = _states(_chunks(x, 9, seed=3), limit=10**6, spill=str(tmp_path / "d") if spill else None)
    if spill:
        assert any("file" in s for s in states) or kind != "distinct floats"
    want = _reference(states)
    monkeypatch.setattr(qsel, "SMALL", 0)  # select even this small union
    _no_merge(monkeypatch)
    got = qsel.merged_quantiles(states, QS, len(want.values))
    assert got["exact"] is True and want.exact
    assert got["n"] == want.n == len(x)
    assert _bits(got["quantiles"]) == _bits(want.quantiles(QS))
    # and the same as numpy on the whole column (pandas' linear interpolation)
    assert _bits(got["quantiles"]) == _bits(list(np.quantile(x + 0.0, QS)))


def test_large_runs_with_repeated_values_use_the_sparse_prefix_sums(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    x = np.round(rng.normal(0, 50, 400_000), 3)  # ~150k distinct per chunk, most counted more than once
    states = _states(_chunks(x, 3, seed=1), limit=10**7, spill=str(tmp_path / "d"))
    runs = [qsel.SortedRun.of_state(s) for s in states]
    assert any(r.block == qsel.BLOCK and not r.ones for r in runs)
    want = _reference(states)
    _no_merge(monkeypatch)
    got = qsel.merged_quantiles(states, QS, len(want.values))
    assert _bits(got["quantiles"]) == _bits(want.quantiles(QS))


@pytest.mark.parametrize("limit", [50, 5000])
def test_unions_over_the_limit_are_bucketed_as_the_merge_buckets_them(limit, tmp_path):
    x = _data("distinct floats", 20_000, seed=5)
    states = _states(np.array_split(x, 6), limit=limit, spill=str(tmp_path / "d"))
    assert all(s["exact"] for s in states) == (limit == 5000)  # exact parts whose union is over the limit
    want = _reference(states)
    assert not want.exact
    got = qsel.merged_quantiles(states, QS, len(np.unique(x)))
    assert got["exact"] is False and got["n"] == want.n
    assert _bits(got["quantiles"]) == _bits(want.quantiles(QS))


def test_unknown_distinct_count_falls_back_to_the_merge():
    x = _data("repeats", 5000, seed=9)
    states = _states(_chunks(x, 4, seed=4), limit=10_000, spill=None)
    want = _reference(states)
    got = qsel.merged_quantiles(states, QS, None)
    assert got == {"exact": True, "n": want.n, "quantiles": want.quantiles(QS)}


def test_no_values_and_one_value():
    empty = Distribution().to_state()
    assert qsel.merged_quantiles([], QS, 0)["quantiles"] == [None] * len(QS)
    assert qsel.merged_quantiles([empty, empty], QS, 0) == {
        "exact": True,
        "n": 0,
        "quantiles": [None] * len(QS),
    }
    one = Distribution.of_sorted(np.array([2.5]), np.array([3])).to_state()
    assert qsel.merged_quantiles([empty, one], QS, 1)["quantiles"] == [2.5] * len(QS)


def test_order_keys_follow_the_float_order():
    x = np.array([-np.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e308, np.inf])
    keys = qsel.order_keys(x)
    assert np.all(keys[1:] > keys[:-1])
    assert qsel.from_order_keys(keys).tobytes() == x.tobytes()


def test_a_truncated_side_file_is_a_clear_error(tmp_path):
    x = _data("distinct floats", 70_000, seed=1)
    states = _states([x], limit=10**6, spill=str(tmp_path / "d"))
    path = states[0]["file"] + ".v.bin"
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 8)
    with pytest.raises(RuntimeError, match=r"distribution side file .*d-0\.v\.bin .*rerun the job"):
        qsel.merged_quantiles(states, QS, 70_000)


@pytest.mark.parametrize("spill", [False, True])
def test_states_contain_finds_infinities_among_value_keys(spill, tmp_path):
    values = np.unique(np.concatenate([np.linspace(-1, 1, 9000), [np.inf]]))
    state = sorted_set(values).to_state(spill_to=str(tmp_path / "k") if spill else None)
    assert ("file" in state) is spill
    plus, minus = 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000
    assert HashSet.states_contain([None, {"n": 0, "hashes": ""}, state], plus)
    assert not HashSet.states_contain([state], minus)
