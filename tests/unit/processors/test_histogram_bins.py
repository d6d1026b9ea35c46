"""Histogram bins that suit the data (processors/histogram_bins.py), fixed by the statistics pass of
data_profiling: a lognormal column gets log bins (30 linear bins put 99.7% of it in the first one), data with
negative values and a heavy tail gets quantile bins, everything else keeps equal-width bins; the edges and
counts do not depend on chunking, and the counts equal numpy's histogram over the same edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.processors import histogram_bins as hb

N = 60_000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "lognormal": rng.lognormal(0, 2.5, N),
            "normal": rng.normal(100, 1, N),
            "mostly zero": np.where(rng.random(N) < 0.6, 0.0, rng.uniform(0, 100, N)),
            "heavy negative": -rng.pareto(1.2, N),
            "ints": rng.integers(0, 1000, N),
            "with nulls": np.where(rng.random(N) < 0.3, np.nan, rng.lognormal(3, 2, N)),
        }
    )


@pytest.fixture(scope="module")
def source(frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("bins") / "data.parquet"
    frame.to_parquet(path, row_group_size=7_000)
    return path


def profile(source, out, batch_size):
    return run_batch_job(
        source, "data_profiling", config={"batch_size": batch_size}, output_path=out, bins=30
    ).report["columns"]


def test_linear_bins_fail_a_lognormal_column_and_log_bins_fill(frame):
    x = frame["lognormal"].to_numpy()
    linear = np.histogram(x, bins=np.linspace(x.min(), x.max(), 31))[0]
    assert linear[0] / N > 0.99  # the defect: nearly everything in the first of 30 linear bins
    edges = hb.choose_edges(float(x.min()), float(x.max()), hb.octave_counts(x), 30)
    assert hb.scale_of(edges) == "log" and len(edges) == 31
    counts = np.histogram(x, bins=edges)[0]
    assert counts.max() / N < 0.15 and (counts > 0).sum() >= 25


def test_each_column_gets_the_scale_that_suits_it_whatever_the_chunking(source, frame, tmp_path):
    runs = [profile(source, tmp_path / f"out{b}", b) for b in (4_999, 13_000, N)]
    hists = [{c: (v["histogram"], v["histogram_scale"]) for c, v in r.items()} for r in runs]
    assert all(h == hists[0] for h in hists[1:])  # edges and counts identical for every chunking
    cols = runs[0]
    want = {
        "lognormal": "log",
        "normal": "linear",
        "mostly zero": "linear",  # one repeated value is a spike, not a skew
        "heavy negative": "quantile",
        "ints": "linear",
        "with nulls": "log",
    }
    assert {c: cols[c]["histogram_scale"] for c in want} == want
    for name, col in cols.items():
        x = frame[name].dropna().to_numpy(dtype="float64")
        edges = col["histogram"]["edges"]
        assert edges[0] == x.min() and edges[-1] == x.max()
        assert col["histogram"]["counts"] == np.histogram(x, bins=edges)[0].tolist(), name
        assert sum(col["histogram"]["counts"]) == len(x)


def test_octave_counts_merge_exactly():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.lognormal(0, 4, 5_000), -rng.lognormal(0, 4, 5_000), np.zeros(17)])
    parts = [hb.octave_counts(p) for p in np.array_split(x, 7)]
    assert hb.merge_octaves([*parts, None]) == hb.octave_counts(x)
    assert hb.merge_octaves([None, None]) is None
    whole = hb.octave_counts(x)
    assert whole["z"] == 17 and sum(n for _, n in whole["p"]) + sum(n for _, n in whole["n"]) == 10_000


@pytest.mark.parametrize(
    ("edges", "scale"),
    [
        ([1.0, 1.0], "linear"),
        ([0.0, 1.0, 2.0, 3.0], "linear"),
        ([1.0, 10.0, 100.0, 1000.0], "log"),
        ([-5.0, -1.0, 0.0, 0.5, 9.0], "quantile"),
        (None, None),
    ],
)
def test_scale_of_the_edges(edges, scale):
    assert hb.scale_of(edges) == scale


def test_a_constant_or_tiny_column_keeps_one_or_equal_bins():
    assert hb.choose_edges(2.0, 2.0, hb.octave_counts(np.full(10, 2.0)), 30) == [2.0, 2.0]
    x = np.array([1.0, 1e6])  # two values far apart: nothing is squeezed into one bin
    assert hb.scale_of(hb.choose_edges(1.0, 1e6, hb.octave_counts(x), 30)) == "linear"
