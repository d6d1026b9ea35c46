"""feature_engineering: chunked runs against a one-piece scikit-learn/pandas oracle; spec reuse; edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import airflow_batch_provider.processors.feature_engineering  # noqa: F401 - registers "feature_engineering"
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ChunkFailedError, ConfigError
from airflow_batch_provider.processors.base import ChunkContext
from airflow_batch_provider.processors.column_stats import ExactMoments
from airflow_batch_provider.processors.feature_engineering import FeatureEngineeringProcessor, signed_log1p

PARAMS = {
    "scale": {"amount $": "standard", "risk": "robust", "const": "standard", "empty": "minmax"},
    "impute": {
        "amount $": "median",
        "const": "mean",
        "empty": {"strategy": "constant", "value": 2.5},
        "channel": "most_frequent",
    },
    "log": ["amount $"],
    "bins": {"risk": 5},
    "encode": {"currency": {"method": "onehot", "top_k": 3}, "channel": "ordinal"},
    "date_parts": {"created at": ["year", "month", "dayofweek", "hour", "is_weekend"]},
}


def frame(n: int, seed: int, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3, 1.2, n), 2)
    amount[rng.random(n) < 0.05] = np.nan
    channel = rng.choice(["web", "shop", "atm"], n, p=[0.5, 0.4, 0.1]).astype(object)
    channel[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "id": np.arange(offset, offset + n),
            "amount $": amount,
            "risk": rng.beta(2, 8, n),
            "const": np.full(n, 0.1),
            "empty": np.full(n, np.nan),
            "currency": rng.choice(["EUR", "USD", "GBP", "CHF", "JPY"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "channel": pd.Series(channel, dtype="str"),
            "created at": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
        }
    )


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(frame(1000, 1), "a.parquet")
    make_parquet(frame(777, 2, 1000), "b.parquet")
    return tmp_path / "src"


def whole(src) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(src.glob("*.parquet"))], ignore_index=True)


def ranked(series: pd.Series) -> list:
    vc = series.value_counts(dropna=True)
    return [v for v, _ in sorted(vc.items(), key=lambda t: (-t[1], str(t[0])))]


def oracle(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The same transformations with scikit-learn / numpy on the whole table."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    out = {}
    amount = SimpleImputer(strategy="median").fit_transform(df[["amount $"]])
    out["amount $"] = StandardScaler().fit_transform(signed_log1p(amount))[:, 0]
    out["risk"] = RobustScaler().fit_transform(df[["risk"]])[:, 0]
    edges = np.linspace(df["risk"].min(), df["risk"].max(), 6)
    out["risk_bin"] = np.clip(np.searchsorted(edges, df["risk"], side="right") - 1, 0, 4)
    out["const"] = np.zeros(len(df))  # constant: centre is the value, scale 0 -> 1
    out["empty"] = MinMaxScaler().fit_transform(np.full((len(df), 1), 2.5))[:, 0]
    vocab = ranked(df["currency"])[:3]
    for v in vocab:
        out[f"currency={v}"] = (df["currency"] == v).astype("uint8").to_numpy()
    out["currency=<other>"] = (~df["currency"].isin(vocab)).astype("uint8").to_numpy()
    filled = df["channel"].fillna(ranked(df["channel"])[0])
    out["channel"] = filled.map({v: i for i, v in enumerate(ranked(filled))}).to_numpy()
    ts = df["created at"].dt
    for part, attr in (("year", "year"), ("month", "month"), ("dayofweek", "day_of_week"), ("hour", "hour")):
        out[f"created at_{part}"] = getattr(ts, attr).to_numpy()
    out["created at_is_weekend"] = (ts.day_of_week >= 5).astype(int).to_numpy()
    return out


def assert_matches(got: pd.DataFrame, want: dict[str, np.ndarray]) -> None:
    for name, expected in want.items():
        ours = got[name].to_numpy(dtype="float64")
        assert np.isfinite(ours).all(), name
        tol = 1e-9 * max(1.0, float(np.max(np.abs(expected))))
        assert np.max(np.abs(ours - expected)) <= tol, name


def test_chunked_runs_match_scikit_learn_and_each_other_exactly(source, tmp_path):
    df = whole(source)
    want = oracle(df)
    outputs, specs = [], []
    for i, (batch_size, workers) in enumerate([(97, 1), (250, 2), (333, 2), (5000, 1)]):
        result = run_batch_job(
            source,
            "feature_engineering",
            output_path=tmp_path / f"o{i}",
            config={"batch_size": batch_size, "max_concurrent_batches": workers},
            **PARAMS,
        )
        got = read_output(result.output_uri)
        assert_matches(got, want)
        assert got["id"].tolist() == df["id"].tolist() and "merchant" not in got
        outputs.append(got)
        specs.append(result.report["spec"])
        assert json.dumps(result.report, allow_nan=False)
    for other in outputs[1:]:
        pd.testing.assert_frame_equal(other, outputs[0])  # bit-identical rows for any chunking
    assert all(s == specs[0] for s in specs)
    assert list(outputs[0].columns[:3]) == ["id", "amount $", "risk"]
    types = output_types(tmp_path / "o0")  # the Arrow types written: int64 codes and bins (nulls allowed)
    assert types["channel"] == pa.int64() and types["risk_bin"] == pa.int64()
    assert types["amount $"] == pa.float64() and types["currency=<other>"] == pa.uint8()


def output_types(folder) -> dict[str, pa.DataType]:
    """``{column: Arrow type}`` of the files of a job's output (all alike)."""
    files = [folder / p for p in json.loads((folder / "_manifest.json").read_text())["parts"]]
    schemas = {pq.read_schema(p).remove_metadata() for p in files}
    assert len(files) and len(schemas) == 1, schemas
    return {f.name: f.type for f in schemas.pop()}


def test_scaler_parameters_match_the_fsum_oracle(source, tmp_path):
    result = run_batch_job(
        source,
        "feature_engineering",
        output_path=tmp_path / "o",
        config={"batch_size": 123},
        scale={"risk": "standard", "amount $": "minmax"},
        impute={"amount $": "mean"},
    )
    spec = result.report["spec"]["columns"]
    risk = whole(source)["risk"].to_numpy()
    mean = math.fsum(risk) / len(risk)
    std = math.sqrt(math.fsum((risk - mean) ** 2) / len(risk))
    assert abs(spec["risk"]["scale"]["center"] - mean) <= 1e-9 * abs(mean)
    assert abs(spec["risk"]["scale"]["scale"] - std) <= 1e-9 * std
    amount = whole(source)["amount $"].dropna().to_numpy()
    assert spec["amount $"]["impute"]["value"] == pytest.approx(math.fsum(amount) / len(amount), rel=1e-12)
    assert spec["amount $"]["scale"]["center"] == amount.min()
    assert spec["amount $"]["scale"]["scale"] == amount.max() - amount.min()


def test_exact_moments_are_bit_identical_for_any_grouping():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 5, 10_001) * np.where(rng.random(10_001) < 0.5, -1, 1)
    one = ExactMoments.of(x)
    for pieces in (3, 17, 101):
        parts = [
            ExactMoments.from_state(json.loads(json.dumps(ExactMoments.of(p).to_state())))
            for p in np.array_split(x, pieces)
        ]
        merged = ExactMoments.merge(parts)
        assert (merged.mean(), merged.std(), merged.std(ddof=0)) == (one.mean(), one.std(), one.std(ddof=0))
    assert one.mean() == math.fsum(x) / len(x) or abs(one.mean() - math.fsum(x) / len(x)) <= 1e-15 * abs(
        one.mean()
    )
    assert ExactMoments.of(np.full(999, 0.1)).std() == 0.0


def test_exact_sums_of_integers_take_a_shortcut_to_the_same_numbers(monkeypatch):
    """Integer values (an integer column as float64) are summed without the exponent sort; the exact sums are the
    same rationals as the general path's, for one limb, three limbs, negative values and 2**53 - 1."""
    from fractions import Fraction

    from airflow_batch_provider.processors import column_stats as cs

    def exact(sums):
        s, q, base = sums
        return Fraction(s) * Fraction(2) ** base, Fraction(q) * Fraction(2) ** (2 * base)

    rng = np.random.default_rng(4)
    cases = [
        rng.integers(0, 100, 5000),
        rng.integers(-5_000_000, 5_000_000, 5000),
        rng.integers(-(2**53) + 1, 2**53 - 1, 5000),
        np.array([2**53 - 1, -(2**53) + 1, 0]),
    ]
    for values in cases:
        x = values.astype(np.float64)
        shortcut = cs.exact_sums(x)
        assert shortcut[2] == 0  # the shortcut's base
        with monkeypatch.context() as m:
            m.setattr(cs, "_integer_sums", lambda x: None)
            general = cs.exact_sums(x)
        assert (
            exact(shortcut)
            == exact(general)
            == (
                Fraction(sum(int(v) for v in values)),
                Fraction(sum(int(v) ** 2 for v in values)),
            )
        )
    assert cs._integer_sums(np.array([1.0, 2.5])) is None and cs._integer_sums(np.array([2.0**53])) is None


def test_spec_applies_to_new_data_without_fitting(source, tmp_path, make_parquet):
    fitted = run_batch_job(
        source, "feature_engineering", output_path=tmp_path / "train", config={"batch_size": 300}, **PARAMS
    )
    new = frame(400, 9, 5000)
    new.loc[:9, "currency"] = "XXX"  # unseen: goes to <other>
    make_parquet(new, "new.parquet", folder=tmp_path / "new")
    via_path = run_batch_job(
        tmp_path / "new",
        "feature_engineering",
        output_path=tmp_path / "p",
        config={"batch_size": 150},
        spec=str(tmp_path / "train" / "_report.json"),
    )
    via_dict = run_batch_job(
        tmp_path / "new", "feature_engineering", output_path=tmp_path / "d", spec=fitted.report["spec"]
    )
    got = read_output(via_path.output_uri)
    pd.testing.assert_frame_equal(got, read_output(via_dict.output_uri))
    assert via_path.report["spec"] == fitted.report["spec"]
    assert not (tmp_path / "p" / "g0001" / "fit").exists()  # no statistics pass
    assert (got.loc[:9, "currency=<other>"] == 1).all()
    spec = fitted.report["spec"]["columns"]["amount $"]
    expected = (
        signed_log1p(new["amount $"].fillna(spec["impute"]["value"]).to_numpy()) - spec["scale"]["center"]
    ) / spec["scale"]["scale"]
    np.testing.assert_array_equal(got["amount $"].to_numpy(), expected)


def test_keep_original_writes_new_columns(source, tmp_path):
    result = run_batch_job(
        source,
        "feature_engineering",
        output_path=tmp_path / "o",
        keep_original=True,
        scale={"risk": "minmax"},
        encode={"channel": "ordinal"},
        date_parts={"created at": ["day"]},
    )
    got = read_output(result.output_uri)
    df = whole(source)
    pd.testing.assert_series_equal(got["risk"], df["risk"])
    assert {"risk_transformed", "channel_code", "created at_day", "created at"} <= set(got.columns)
    assert got["channel_code"].isna().sum() == df["channel"].isna().sum()  # missing stays missing


def test_dropping_one_chunk_of_statistics_is_detected(source):
    """Mutation check: the fitted spec depends on every chunk."""
    df = whole(source)
    proc = FeatureEngineeringProcessor(**PARAMS)
    chunks = [df.iloc[i : i + 300] for i in range(0, len(df), 300)]
    states = [json.loads(json.dumps(proc.partial_stats(c, None))) for c in chunks]
    proc.fit_stats(proc.merge_stats(states))
    full = proc.get_state()
    got = pd.concat([proc.process(c, None).rows for c in chunks])
    assert_matches(got, oracle(df))
    proc.fit_stats(proc.merge_stats(states[:1] + states[2:]))
    assert proc.get_state() != full
    with pytest.raises(AssertionError):
        assert_matches(pd.concat([proc.process(c, None).rows for c in chunks]), oracle(df))


def test_real_world_table_diabetes(make_parquet, tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.preprocessing import StandardScaler

    df = datasets.load_diabetes(as_frame=True, scaled=False).frame
    make_parquet(df.iloc[:200], "a.parquet", row_group_size=64)
    make_parquet(df.iloc[200:], "b.parquet", row_group_size=64)
    cols = ["age", "bmi", "bp", "s1"]
    result = run_batch_job(
        tmp_path / "src",
        "feature_engineering",
        output_path=tmp_path / "o",
        config={"batch_size": 71, "max_concurrent_batches": 2},
        scale=dict.fromkeys(cols, "standard"),
    )
    got = read_output(result.output_uri)[cols].to_numpy()
    np.testing.assert_allclose(got, StandardScaler().fit_transform(df[cols]), rtol=0, atol=1e-9)


def test_vocabulary_limit_is_a_clear_error(source, tmp_path):
    with pytest.raises(ConfigError, match="vocabulary_limit"):
        run_batch_job(
            source,
            "feature_engineering",
            output_path=tmp_path / "o",
            encode={"currency": "onehot"},
            vocabulary_limit=3,
        )


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"scale": {"risk": "zscore"}}, "scale"),
        ({"scale": {"currency": "standard"}}, "numeric"),
        ({"encode": {"currency": {"method": "onehot", "top_k": 0}}}, "top_k"),
        ({"impute": {"risk": "average"}}, "impute"),
        ({"impute": {"currency": "mean"}}, "most_frequent or constant"),
        ({"impute": {"risk": {"strategy": "constant"}}}, "value"),
        ({"bins": {"risk": [3, 1]}}, "bins"),
        ({"date_parts": {"created at": ["century"]}}, "century"),
        ({"date_parts": {"risk": ["year"]}}, "not a timestamp"),
        ({"log": "risk"}, "log"),
        ({"scale": {"nope": "standard"}}, "nope"),
        ({"encode": {"risk": "onehot"}, "scale": {"risk": "standard"}}, "pick one"),
        ({"spec": {"columns": {}}}, "spec"),
        ({"spec": {"format_version": 1, "columns": {}}, "log": ["risk"]}, "not both"),
    ],
)
def test_bad_parameters_name_the_parameter(source, tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run_batch_job(source, "feature_engineering", output_path=tmp_path / "o", **kwargs)


def test_empty_input(make_parquet, tmp_path):
    make_parquet(pd.DataFrame({"a": pd.Series([], dtype="float64")}), "e.parquet")
    result = run_batch_job(
        tmp_path / "src",
        "feature_engineering",
        output_path=tmp_path / "o",
        scale={"a": "standard"},
        impute={"a": "mean"},
    )
    assert result.rows_out == 0 and result.report["spec"]["columns"]["a"]["scale"] == {
        "method": "standard",
        "center": 0.0,
        "scale": 1.0,
    }


class _Flaky(FeatureEngineeringProcessor):
    flag = None

    def process(self, chunk, ctx: ChunkContext):
        if ctx.file_index == 1 and ctx.start_row >= 300 and self.flag.exists():
            raise RuntimeError("injected crash")
        return super().process(chunk, ctx)


def test_failed_run_resumes_to_identical_rows(source, tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("1")
    _Flaky.flag = flag
    cfg = {"batch_size": 150, "max_concurrent_batches": 2, "retry_attempts": 0, "checkpoint_interval": 1}
    with pytest.raises(ChunkFailedError):
        run_batch_job(source, _Flaky(**PARAMS), config=cfg, output_path=tmp_path / "out")
    flag.unlink()
    resumed = run_batch_job(source, _Flaky(**PARAMS), config=cfg, output_path=tmp_path / "out")
    assert resumed.chunks_resumed > 0
    clean = run_batch_job(
        source, "feature_engineering", config={"batch_size": 1000}, output_path=tmp_path / "c", **PARAMS
    )
    pd.testing.assert_frame_equal(read_output(resumed.output_uri), read_output(clean.output_uri))


def golden_table() -> pa.Table:
    """Seven rows whose every output value is known by hand."""
    utc = [
        "2024-03-09T13:45:30",  # Saturday
        "2024-03-31T01:30:00",  # Sunday; 03:30 in Berlin (summer time starts at 01:00 UTC)
        "2024-12-31T23:59:59",  # Tuesday; 2025-01-01 00:59:59 in Berlin
        None,
        "2023-01-02T00:00:00",  # Monday
        "2024-02-29T12:00:00",  # Thursday
        "2024-07-05T06:07:08",  # Friday
    ]
    ts = pa.array([None if t is None else np.datetime64(t, "s") for t in utc], pa.timestamp("s"))
    return pa.table(
        {
            "id": pa.array(range(7), pa.int64()),
            "cat": pa.array(["b", "a", "b", None, "c", "b", "a"]),
            "ts": ts,
            "berlin": ts.cast(pa.timestamp("s", tz="Europe/Berlin")),
            "n": pa.array([1, 2, None, 4, 5, 6, 7], pa.int32()),
        }
    )


GOLDEN = {
    "scale": {"n": "minmax"},
    "bins": {"n": 3},
    "encode": {"cat": "onehot"},
    "date_parts": {
        "ts": ["year", "month", "day", "dayofweek", "hour", "is_weekend"],
        "berlin": ["year", "hour"],
    },
}


def test_outputs_match_values_known_by_hand(make_parquet, tmp_path):
    """One-hot column order (count descending, then text), date parts (Monday = 0; local time of a zoned
    timestamp), bins and scaled values, their Arrow types and the report's column list, for two chunkings."""
    folder = tmp_path / "src"
    folder.mkdir()
    pq.write_table(golden_table(), folder / "g.parquet", row_group_size=3)
    tables = []
    for i, batch_size in enumerate((2, 7)):
        result = run_batch_job(
            folder,
            "feature_engineering",
            output_path=tmp_path / f"o{i}",
            config={"batch_size": batch_size},
            **GOLDEN,
        )
        files = [
            tmp_path / f"o{i}" / p
            for p in json.loads((tmp_path / f"o{i}" / "_manifest.json").read_text())["parts"]
        ]
        got = pa.concat_tables([pq.read_table(f) for f in files])
        assert result.report["output_columns"] == got.column_names
        tables.append(got)
    got = tables[0]
    assert tables[1].equals(got)
    want = {
        "id": (pa.int64(), [0, 1, 2, 3, 4, 5, 6]),
        "cat=b": (pa.uint8(), [1, 0, 1, 0, 0, 1, 0]),
        "cat=a": (pa.uint8(), [0, 1, 0, 0, 0, 0, 1]),
        "cat=c": (pa.uint8(), [0, 0, 0, 0, 1, 0, 0]),
        "cat=<other>": (pa.uint8(), [0] * 7),
        "ts_year": (pa.int64(), [2024, 2024, 2024, None, 2023, 2024, 2024]),
        "ts_month": (pa.int64(), [3, 3, 12, None, 1, 2, 7]),
        "ts_day": (pa.int64(), [9, 31, 31, None, 2, 29, 5]),
        "ts_dayofweek": (pa.int64(), [5, 6, 1, None, 0, 3, 4]),
        "ts_hour": (pa.int64(), [13, 1, 23, None, 0, 12, 6]),
        "ts_is_weekend": (pa.int64(), [1, 1, 0, None, 0, 0, 0]),
        "berlin_year": (pa.int64(), [2024, 2024, 2025, None, 2023, 2024, 2024]),
        "berlin_hour": (pa.int64(), [14, 3, 0, None, 1, 13, 8]),
        "n": (pa.float64(), [0.0, 1 / 6, None, 0.5, 4 / 6, 5 / 6, 1.0]),
        "n_bin": (pa.int64(), [0, 0, None, 1, 2, 2, 2]),
    }
    assert got.column_names == list(want)
    for name, (dtype, values) in want.items():
        assert got.schema.field(name).type == dtype, name
        assert got.column(name).to_pylist() == (pytest.approx(values) if dtype == pa.float64() else values), (
            name
        )


def test_transform_takes_arrow_or_pandas_and_gives_the_same_values(monkeypatch):
    """The public helper: an Arrow table gives an Arrow table, a DataFrame a DataFrame (on its index, codes Int64),
    with the same values; the engine's Arrow chunks are never converted to pandas."""
    from airflow_batch_provider.processors import feature_engineering as fe

    table = golden_table()
    proc = FeatureEngineeringProcessor(**GOLDEN)
    proc.fit_stats(
        proc.merge_stats(
            [proc.partial_stats(table.slice(0, 4), None), proc.partial_stats(table.slice(4), None)]
        )
    )
    spec = proc.get_state()
    via_arrow = fe.transform(table, spec)
    frame = table.to_pandas().set_axis(range(10, 17))
    via_pandas = fe.transform(frame, spec)
    assert isinstance(via_arrow, pa.Table) and isinstance(via_pandas, pd.DataFrame)
    assert list(via_pandas.columns) == via_arrow.column_names and list(via_pandas.index) == list(
        range(10, 17)
    )
    assert via_pandas["ts_hour"].dtype == "Int64" and via_pandas["n_bin"].dtype == "Int64"
    for name in via_arrow.column_names:
        assert via_pandas[name].astype(object).where(via_pandas[name].notna(), None).tolist() == (
            via_arrow.column(name).to_pylist()
        ), name
    # pandas input to the statistics pass fits the same spec
    again = FeatureEngineeringProcessor(**GOLDEN)
    again.fit_stats(
        again.merge_stats(
            [again.partial_stats(frame.iloc[:4], None), again.partial_stats(frame.iloc[4:], None)]
        )
    )
    assert again.get_state() == spec

    real = fe.arrow_to_pandas

    def refuse(values):
        if len(values):
            raise AssertionError("a chunk was converted to pandas")
        return real(values)

    monkeypatch.setattr(fe, "arrow_to_pandas", refuse)
    monkeypatch.setattr(fe, "arrow_to_pandas_column", refuse)
    assert fe.transform(table, spec).equals(via_arrow)
    assert proc.partial_stats(table, None) == proc.partial_stats(table.to_pandas(), None)


def test_columns_arrow_cannot_code_take_the_pandas_way_with_the_same_result():
    """A string view (no Arrow filter kernel) and a spec fitted elsewhere whose vocabulary does not fit the
    column's type (300 in an int8 column: no match, so other) are coded as pandas coded them."""
    from airflow_batch_provider.processors import feature_engineering as fe

    spec = {
        "format_version": 1,
        "keep_original": False,
        "columns": {
            "s": {
                "kind": "categorical",
                "impute": {"strategy": "most_frequent", "value": "a"},
                "encode": {"method": "onehot", "top_k": None, "vocabulary": ["a", "b"]},
            },
            "i": {
                "kind": "categorical",
                "impute": None,
                "encode": {"method": "ordinal", "top_k": None, "vocabulary": [300, 1]},
            },
        },
    }
    table = pa.table(
        {"s": pa.array(["a", "b", None, "a"], pa.string_view()), "i": pa.array([1, 2, None, 1], pa.int8())}
    )
    got = fe.transform(table, spec)
    assert got.to_pydict() == {
        "s=a": [1, 0, 1, 1],
        "s=b": [0, 1, 0, 0],
        "s=<other>": [0, 0, 0, 0],
        "i": [1, 2, None, 1],
    }
    assert got.schema.types == [pa.uint8()] * 3 + [pa.int64()]
    assert fe._value_counts(table.column("s")) == (["a", "b"], [2, 1], 1)
