"""data_profiling: chunked runs against an independent one-piece pandas/math.fsum oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import airflow_batch_provider.processors.data_profiling  # noqa: F401 - registers "data_profiling"
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import ChunkFailedError, ConfigError
from airflow_batch_provider.processors.base import ChunkContext
from airflow_batch_provider.processors.column_stats import Distribution, TopValues
from airflow_batch_provider.processors.data_profiling import DataProfilingProcessor, compact_summary

QS = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
STATS = ("mean", "std")  # compared within the contract's tolerance; everything else exactly


def rich_frame(n: int, seed: int, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 3, n)
    x[rng.random(n) < 0.05] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    x[rng.random(n) < 0.01] = -np.inf
    big = rng.integers(-(2**62), 2**62, n)
    nullable = pd.array(rng.integers(0, 50, n), dtype="Int64")
    nullable[rng.random(n) < 0.1] = pd.NA
    text = rng.choice(["alpha", "beta", "gamma", "δ é"], n).astype(object)
    text[rng.random(n) < 0.07] = None
    ts = pd.Timestamp("2026-03-01", tz="Europe/Paris") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
    ts = pd.Series(ts)
    ts[rng.random(n) < 0.03] = pd.NaT
    frame = pd.DataFrame(
        {
            "id": np.arange(offset, offset + n, dtype="int64"),
            "amount $ (eur)": x,
            "big int": big,
            "nullable#int": nullable,
            "text col": pd.Series(text, dtype="str"),
            "cat": pd.Categorical(rng.choice(["x", "y", "z"], n)),
            "flag": rng.random(n) < 0.3,
            "ts/utc": ts,
            "all null": np.full(n, np.nan),
            "constant": np.full(n, 0.1),
            "dup key": rng.integers(0, 7, n),
        }
    )
    order = np.arange(n)
    order[order % 5 == 4] -= 1  # every fifth row repeats the row before it (whole-row duplicates)
    return frame.take(order).reset_index(drop=True)


@pytest.fixture
def source(make_parquet, tmp_path):
    a = rich_frame(1000, seed=1)
    b = rich_frame(777, seed=2, offset=1000)
    # exact duplicates straddling file and chunk edges
    b = pd.concat([a.iloc[-2:], b.iloc[2:]], ignore_index=True)
    make_parquet(a, "part-a.parquet")
    make_parquet(b, "part-b.parquet")
    return tmp_path / "src"


def whole(source) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(source.glob("*.parquet"))], ignore_index=True)


def oracle_numeric(s: pd.Series, bins: int = 20) -> dict:
    x = s.dropna().to_numpy(dtype="float64")
    fin = x[np.isfinite(x)]
    out = {"min": None, "max": None, "mean": None, "std": None, "quantiles": None, "histogram": None}
    if len(fin):
        mean = math.fsum(fin) / len(fin)
        out.update(min=fin.min(), max=fin.max(), mean=mean)
        if len(fin) > 1:
            out["std"] = math.sqrt(math.fsum((fin - mean) ** 2) / (len(fin) - 1))
        if pd.api.types.is_integer_dtype(s.dtype):
            out.update(min=int(s.min()), max=int(s.max()))
        out["quantiles"] = {repr(q): float(v) for q, v in zip(QS, pd.Series(fin).quantile(QS), strict=False)}
        edges = np.linspace(fin.min(), fin.max(), bins + 1) if fin.min() < fin.max() else [fin.min()] * 2
        counts = np.histogram(fin, bins=edges)[0] if fin.min() < fin.max() else [len(fin)]
        out["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return out


def oracle(frame: pd.DataFrame) -> dict:
    cols = {}
    for name, s in frame.items():
        col = {"count": int(s.notna().sum()), "nulls": int(s.isna().sum()), "distinct": int(s.nunique())}
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            col.update(oracle_numeric(s))
            if pd.api.types.is_float_dtype(s.dtype):
                col.update(nan_count=int(s.isna().sum()), inf_count=int(np.isinf(s).sum()))
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            col.update(min=s.min().isoformat(), max=s.max().isoformat())
        else:
            vc = s.value_counts(dropna=True)
            items = sorted(((v, int(c)) for v, c in vc.items() if c > 0), key=lambda t: (-t[1], str(t[0])))
            col["top_values"] = [[v, c] for v, c in items[:10]]
        cols[name] = col
    return {
        "rows": len(frame),
        "column_count": frame.shape[1],
        "duplicate_rows": int(frame.duplicated().sum()),
        "columns": cols,
    }


def close(ours, want, scale):
    if want is None:
        return ours is None
    return ours is not None and abs(ours - want) <= 1e-9 * max(abs(want), scale)


def check_against_oracle(report: dict, want: dict, frame: pd.DataFrame) -> None:
    assert json.dumps(report, allow_nan=False)
    for key in ("rows", "column_count", "duplicate_rows"):
        assert report[key] == want[key], key
    for name, exp in want["columns"].items():
        got = report["columns"][name]
        for key, value in exp.items():
            if key in STATS:
                fin = frame[name].to_numpy(dtype="float64", na_value=np.nan)
                scale = float(np.mean(np.abs(fin[np.isfinite(fin)]))) if np.isfinite(fin).any() else 0.0
                assert close(got[key], value, scale), (name, key, got[key], value)
            else:
                assert got[key] == value, (name, key, got[key], value)


def strip_stats(report: dict) -> dict:
    out = json.loads(json.dumps(report))
    for col in out["columns"].values():
        for key in STATS:
            col.pop(key, None)
    return out


def test_chunked_runs_match_the_one_piece_oracle_for_any_chunking(source, tmp_path):
    frame = whole(source)
    want = oracle(frame)
    assert want["duplicate_rows"] > 300  # duplicates inside chunks and straddling edges
    reports = []
    for i, (batch_size, workers) in enumerate([(97, 1), (250, 2), (333, 2), (5000, 1)]):
        result = run_batch_job(
            source,
            "data_profiling",
            config={"batch_size": batch_size, "max_concurrent_batches": workers},
            output_path=tmp_path / f"out{i}",
        )
        check_against_oracle(result.report, want, frame)
        on_disk = json.loads((tmp_path / f"out{i}" / "_report.json").read_text())
        assert on_disk == result.report
        reports.append(strip_stats(result.report))
    assert all(r == reports[0] for r in reports[1:])  # counts, quantiles, histograms: identical


def test_report_schema_and_edge_columns(source, tmp_path):
    report = run_batch_job(
        source, "data_profiling", config={"batch_size": 400}, output_path=tmp_path / "out"
    ).report
    assert report["format_version"] == 1 and report["memory_bytes_estimate"] > 0
    cols = report["columns"]
    assert list(cols) == list(whole(source).columns)  # names with spaces and symbols kept, in order
    assert cols["all null"]["count"] == 0 and cols["all null"]["distinct"] == 0
    assert cols["all null"]["mean"] is None and cols["all null"]["std"] is None
    assert cols["all null"]["quantiles"] is None and cols["all null"]["histogram"] is None
    const = cols["constant"]
    assert const["std"] == 0.0 and const["mean"] == 0.1 and const["distinct"] == 1
    assert const["histogram"] == {"edges": [0.1, 0.1], "counts": [1777]}
    assert set(const["quantiles"]) == {"0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"}
    assert cols["amount $ (eur)"]["inf_count"] > 0 and cols["amount $ (eur)"]["type"] == "float"
    assert cols["big int"]["type"] == "integer" and isinstance(cols["big int"]["max"], int)
    assert cols["ts/utc"]["type"] == "datetime" and cols["ts/utc"]["date_range"]["days"] > 100
    assert cols["cat"]["type"] == "categorical" and cols["text col"]["type"] == "text"
    assert cols["flag"]["type"] == "boolean" and {v for v, _ in cols["flag"]["top_values"]} == {True, False}
    summary = compact_summary(report)
    assert summary["all_null_columns"] == 1 and summary["constant_columns"] == 1
    assert len(json.dumps(summary)) < 2000


def test_quantiles_beyond_the_exact_limit_are_deterministic_and_within_the_bound(make_parquet, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.lognormal(2, 2, 3001) * np.where(rng.random(3001) < 0.3, -1, 1)
    make_parquet(pd.DataFrame({"v": x[:1700]}), "a.parquet")
    make_parquet(pd.DataFrame({"v": x[1700:]}), "b.parquet")
    src = tmp_path / "src"
    got = []
    for i, bs in enumerate((113, 1000)):
        rep = run_batch_job(
            src,
            "data_profiling",
            config={"batch_size": bs, "max_concurrent_batches": 2},
            output_path=tmp_path / f"o{i}",
            exact_quantile_limit=50,
            quantile_bits=10,
        ).report
        got.append(rep["columns"]["v"])
    assert got[0]["quantiles"] == got[1]["quantiles"] and got[0]["quantiles_exact"] is False
    s = np.sort(x)
    for q in QS:
        h = (len(s) - 1) * q
        lo = int(math.floor(h))
        bound = 2.0**-10 * max(abs(s[lo]), abs(s[min(lo + 1, len(s) - 1)]))
        assert abs(got[0]["quantiles"][repr(q)] - np.quantile(x, q)) <= bound


def test_distribution_merge_does_not_depend_on_grouping():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=5000), 3)
    one = Distribution.of(x, limit=200)
    parts = [Distribution.of(p, limit=200) for p in np.array_split(x, 17)]
    merged = Distribution.merge([Distribution.merge(parts[:5]), Distribution.merge(parts[5:])])
    assert merged.to_state() == one.to_state()
    exact = Distribution.merge([Distribution.of(p, limit=10**6) for p in np.array_split(x, 7)])
    assert exact.quantiles(QS) == list(np.quantile(x, QS))  # bit-equal to numpy/pandas


def test_top_values_over_capacity_report_a_valid_error_bound(make_parquet, tmp_path):
    rng = np.random.default_rng(5)
    values = rng.zipf(1.6, 3000).astype(str)
    make_parquet(pd.DataFrame({"k": values}), "a.parquet")
    rep = run_batch_job(
        tmp_path / "src",
        "data_profiling",
        config={"batch_size": 400},
        output_path=tmp_path / "o",
        top_values_capacity=20,
        top_k=5,
    ).report["columns"]["k"]
    truth = pd.Series(values).value_counts()
    assert rep["top_values_exact"] is False and rep["top_values_error_bound"] > 0
    assert rep["distinct"] == truth.size  # distinct stays exact
    for value, count in rep["top_values"]:
        assert count <= truth[value] <= count + rep["top_values_error_bound"]
    assert rep["top_values"][0][0] == truth.index[0]


def test_top_values_exact_whenever_distinct_fit_the_capacity():
    parts = [
        TopValues.of_counts(["a", "b"], [3, 1], capacity=3),
        TopValues.of_counts(["c", "b"], [1, 4], capacity=3),
    ]
    merged = TopValues.merge([TopValues.from_state(json.loads(json.dumps(p.to_state()))) for p in parts])
    assert merged.exact and merged.top() == [["b", 5], ["a", 3], ["c", 1]]


def test_dropping_one_chunk_state_is_detected(source):
    """Mutation check: the oracle comparison has teeth."""
    frame = whole(source)
    proc = DataProfilingProcessor()
    chunks = [frame.iloc[i : i + 300] for i in range(0, len(frame), 300)]
    proc.fit_stats(proc.merge_stats([proc.partial_stats(c, None) for c in chunks]))
    states = [json.loads(json.dumps(proc.process(c, None).state)) for c in chunks]
    want = oracle(frame)
    check_against_oracle(proc.finalize(proc.merge(states)), want, frame)
    with pytest.raises(AssertionError):
        check_against_oracle(proc.finalize(proc.merge(states[:2] + states[3:])), want, frame)


def test_real_world_table_wine(make_parquet, tmp_path):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    frame = sklearn_datasets.load_wine(as_frame=True).frame
    make_parquet(frame.iloc[:100], "a.parquet", row_group_size=37)
    make_parquet(frame.iloc[100:], "b.parquet", row_group_size=37)
    rep = run_batch_job(
        tmp_path / "src",
        "data_profiling",
        config={"batch_size": 41, "max_concurrent_batches": 2},
        output_path=tmp_path / "o",
    ).report
    check_against_oracle(rep, oracle(frame), frame)


def test_five_thousand_columns(make_parquet, tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    data = {f"c {i}%": rng.normal(size=n) for i in range(4000)}
    data.update({f"t{i}": rng.choice(["a", "b"], n) for i in range(1000)})
    frame = pd.DataFrame(data)
    make_parquet(frame, "wide.parquet", row_group_size=40)
    rep = run_batch_job(
        tmp_path / "src",
        "data_profiling",
        config={"batch_size": 25, "max_concurrent_batches": 2},
        output_path=tmp_path / "o",
    ).report
    assert rep["column_count"] == 5000 and rep["rows"] == n
    assert rep["columns"]["c 17%"]["quantiles"]["0.5"] == float(frame["c 17%"].median())
    assert rep["columns"]["t3"]["distinct"] == frame["t3"].nunique()
    # no timed assertion: speed belongs in benchmarks/


def test_empty_input(make_parquet, tmp_path):
    make_parquet(pd.DataFrame({"a": pd.Series([], dtype="float64")}), "empty.parquet")
    rep = run_batch_job(tmp_path / "src", "data_profiling", output_path=tmp_path / "o").report
    assert rep["rows"] == 0 and rep["duplicate_rows"] == 0 and rep["format_version"] == 1


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"bins": 0}, "bins=0"),
        ({"top_k": -1}, "top_k"),
        ({"quantiles": [0.5, 1.5]}, "quantiles"),
        ({"quantile_bits": 60}, "quantile_bits"),
        ({"columns": "amount"}, "columns"),
        ({"columns": ["nope"]}, "nope"),
    ],
)
def test_bad_parameters_name_the_parameter(source, tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run_batch_job(source, "data_profiling", output_path=tmp_path / "o", **kwargs)


def test_columns_subset_and_no_duplicates(source, tmp_path):
    rep = run_batch_job(
        source, "data_profiling", output_path=tmp_path / "o", columns=["text col", "id"], duplicates=False
    ).report
    assert list(rep["columns"]) == ["text col", "id"] and rep["duplicate_rows"] is None


class _FlakyProfiling(DataProfilingProcessor):
    """Same name, version and parameters (same fingerprint); fails one chunk while the flag file exists."""

    flag = None

    def process(self, chunk, ctx: ChunkContext):
        if ctx.file_index == 1 and ctx.start_row >= 300 and self.flag.exists():
            raise RuntimeError("injected crash")
        return super().process(chunk, ctx)


def test_failed_run_resumes_to_the_same_report(source, tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("1")
    _FlakyProfiling.flag = flag
    cfg = {"batch_size": 150, "max_concurrent_batches": 2, "retry_attempts": 0, "checkpoint_interval": 1}
    with pytest.raises(ChunkFailedError):
        run_batch_job(source, _FlakyProfiling(), config=cfg, output_path=tmp_path / "out")
    flag.unlink()
    resumed = run_batch_job(source, _FlakyProfiling(), config=cfg, output_path=tmp_path / "out")
    assert resumed.chunks_resumed > 0
    clean = run_batch_job(
        source, "data_profiling", config={"batch_size": 1000}, output_path=tmp_path / "clean"
    )
    assert strip_stats(resumed.report) == strip_stats(clean.report)
    check_against_oracle(resumed.report, oracle(whole(source)), whole(source))


@pytest.mark.parametrize("seed", range(4))
def test_top_values_truncation_ranks_as_a_full_sort(seed):
    """Over capacity, the kept values and the error bound equal a full sort by (count desc, value text),
    ties between values of equal text (1 and "1") kept in first-seen order, on the Arrow and Python paths."""
    rng = np.random.default_rng(seed)
    values = [
        *range(1500),
        *(str(i) for i in range(1500)),
        *(f"é{i}" for i in range(300)),
        True,
        "a\x00",
        "a",
    ]
    if seed % 2:
        values.append("\ud800")  # not UTF-8 encodable: Python's own sort
    rng.shuffle(values)
    counts = rng.integers(1, 3 if seed < 2 else 40, len(values)).tolist()
    capacity = int(rng.integers(5, len(values) - 1))
    top = TopValues.of_counts(values, counts, capacity=len(values))
    ranked = sorted(top.counts.items(), key=lambda kv: (-kv[1], str(kv[0][1])))
    cut = TopValues.of_counts(values, counts, capacity=capacity)
    assert list(cut.counts.items()) == ranked[:capacity]
    assert cut.error == ranked[capacity][1] and not cut.exact
