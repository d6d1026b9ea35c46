"""One conformance test over every standard processor (like scikit-learn's ``check_estimator``).

For each processor: the defaults construct and the state round-trips through JSON; the result is the
same for batch sizes that do not divide the row count and cross row-group and file boundaries, with 1
and 2 concurrent batches, and after a SIGKILL of the whole process group followed by a resume; it
agrees with an independent one-piece pandas/scikit-learn oracle computed here; and dropping one chunk's
partial state makes that comparison fail (the suite has teeth).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.runner import JobRunner
from airflow_batch_provider.exceptions import ChunkFailedError
from airflow_batch_provider.processors.registry import resolve_processor
from tests.conftest import sample_frame

ROOT = Path(__file__).resolve().parents[3]
ROWS_A, ROWS_B = 1_000, 777


def _frame() -> pd.DataFrame:
    df = sample_frame(ROWS_A + ROWS_B, seed=21)
    for i in (96, 332, 999, 1332):  # exact duplicate rows and NaN straddling chunk and file edges
        df.iloc[i + 1] = df.iloc[i]
    df.loc[[97, 98, 1000, 1001], "x"] = np.nan
    return df


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conformance") / "src"
    folder.mkdir()
    df = _frame()
    for name, part in (("a", df.iloc[:ROWS_A]), ("b", df.iloc[ROWS_A:])):
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), folder / f"{name}.parquet", row_group_size=300
        )
    return folder


# -- oracles: one-piece pandas / math.fsum, independent of the processors' code ------------------------
def _close(ours, oracle, scale) -> bool:
    if oracle is None or ours is None:
        return ours is oracle
    return abs(ours - oracle) <= 1e-9 * max(abs(oracle), scale)


def profiling_oracle(report, df):
    x = df["x"].dropna()
    col = report["columns"]["x"]
    mean = math.fsum(x) / len(x)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / (len(x) - 1))
    scale = math.fsum(abs(v) for v in x) / len(x)
    assert report["rows"] == len(df)
    assert (col["count"], col["nulls"], col["distinct"]) == (len(x), int(df["x"].isna().sum()), x.nunique())
    assert (col["min"], col["max"]) == (x.min(), x.max())
    assert _close(col["mean"], mean, scale) and _close(col["std"], std, scale)
    assert col["quantiles"]["0.5"] == pytest.approx(x.quantile(0.5), rel=2**-10)
    assert report["duplicate_rows"] == int(df.duplicated().sum())
    assert report["columns"]["dup"]["distinct"] == df["dup"].nunique()


def features_oracle(report, df):
    x = df["x"]
    mean = math.fsum(x.dropna()) / x.count()
    imputed = x.fillna(mean)
    center = math.fsum(imputed) / len(imputed)
    std = math.sqrt(math.fsum((v - center) ** 2 for v in imputed) / len(imputed))
    spec = report["spec"]["columns"]["x"]
    assert report["rows"] == len(df)
    assert _close(spec["impute"]["value"], mean, 1.0)
    assert _close(spec["scale"]["center"], center, 1.0) and _close(spec["scale"]["scale"], std, 1.0)
    assert sorted(spec_vocab(report)) == sorted(df["cat"].unique())


def features_defaults_oracle(report, df):
    """No settings: numeric columns median-imputed then standard-scaled, categoricals one-hot, date parts."""
    spec = report["spec"]["columns"]
    assert report["rows"] == len(df)
    assert set(report["spec"]["defaults"]["choices"]) == set(df.columns)
    for col in ("id", "x", "dup"):
        values = df[col].astype(float)
        median = values.median()
        imputed = values.fillna(median)
        center = math.fsum(imputed) / len(imputed)
        std = math.sqrt(math.fsum((v - center) ** 2 for v in imputed) / len(imputed))
        assert spec[col]["impute"]["value"] == median
        assert _close(spec[col]["scale"]["center"], center, 1.0) and _close(
            spec[col]["scale"]["scale"], std, 1.0
        )
    counts = df["cat"].value_counts()
    assert spec_vocab(report) == sorted(counts.index, key=lambda v: (-counts[v], v))
    assert spec["cat"]["encode"]["method"] == "onehot" and spec["ts"]["kind"] == "datetime"


def spec_vocab(report):
    return report["spec"]["columns"]["cat"]["encode"]["vocabulary"]


QUALITY_RULES = [
    {"type": "not_null", "column": "x"},
    {"type": "unique", "column": "dup"},
    {"type": "between", "column": "x", "min": -2, "max": 2},
]


def quality_oracle(report, df):
    x = df["x"]
    failed = {r["name"]: r["failed"] for r in report["rules"]}
    assert report["rows"] == len(df)
    assert failed["not_null(x)"] == int(x.isna().sum())
    assert failed["unique(dup)"] == int(df["dup"].duplicated().sum())  # rows repeating an earlier key
    assert failed["between(x)"] == int(((x < -2) | (x > 2)).sum())
    bad = x.isna() | df["dup"].duplicated() | (x < -2) | (x > 2)
    assert report["rows_failed"] == int(bad.sum())


def quality_defaults_oracle(report, df):
    """No rules: the rules derived from the data (completeness, duplicate rows, IQR fences) and their counts."""
    from airflow_batch_provider.processors.quality_defaults import IQR_FACTOR

    generated = {r["name"]: r for r in report["assessment"]["generated_rules"]}
    failed = {r["name"]: r["failed"] for r in report["rules"]}
    assert report["rows"] == len(df)
    assert set(generated) == {"duplicate_rows", *(f"completeness({c})" for c in df.columns)} | {
        f"outliers({c})" for c in ("id", "x", "dup")
    }
    bad = df.duplicated()
    assert failed["duplicate_rows"] == int(bad.sum())
    for c in df.columns:
        assert failed[f"completeness({c})"] == int(df[c].isna().sum())
        bad |= df[c].isna()
    for c in ("id", "x", "dup"):
        values = df[c].dropna().astype(float)
        q1, q3 = values.quantile(0.25), values.quantile(0.75)
        lo, hi = q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)
        if c != "x":  # integer columns: the fences rounded outward
            lo, hi = math.floor(lo), math.ceil(hi)
        rule = generated[f"outliers({c})"]
        assert rule["min"] == pytest.approx(lo, rel=1e-12) and rule["max"] == pytest.approx(hi, rel=1e-12)
        outside = (df[c] < rule["min"]) | (df[c] > rule["max"])
        assert failed[f"outliers({c})"] == int(outside.sum())
        bad |= outside
    assert report["rows_failed"] == int(bad.sum())


def anomaly_oracle(report, df, output=None):
    from sklearn.ensemble import IsolationForest

    features = ["x", "dup"]
    filled = df[features].fillna(df[features].median())
    model = IsolationForest(random_state=0).fit(filled.to_numpy())
    scores = -model.score_samples(filled.to_numpy())
    assert report["rows"] == len(df) and report["fit_rows"] == len(df)
    assert report["anomalies"] == int((scores > 0.5).sum())
    assert report["medians"] == pytest.approx({c: float(df[c].median()) for c in features})


CASES = {
    "anomaly_detection": ({"features": ["x", "dup"], "sample_size": 10_000}, anomaly_oracle),
    "data_quality": ({"rules": QUALITY_RULES}, quality_oracle),
    "data_quality_defaults": ({}, quality_defaults_oracle),
    "data_profiling": ({}, profiling_oracle),
    "feature_engineering_defaults": ({}, features_defaults_oracle),
    "feature_engineering": (
        {"scale": {"x": "standard"}, "impute": {"x": "mean"}, "encode": {"cat": "onehot"}},
        features_oracle,
    ),
}


#: cases that run a processor under another name: its defaults (no parameters)
PROCESSOR = {"data_quality_defaults": "data_quality", "feature_engineering_defaults": "feature_engineering"}


def _strip(report):
    """Timing-free report, floats rounded to 12 significant digits for equality across chunkings."""
    if isinstance(report, dict):
        return {k: _strip(v) for k, v in report.items() if k not in ("duration_s", "seconds")}
    if isinstance(report, list):
        return [_strip(v) for v in report]
    if isinstance(report, float):
        return float(f"{report:.12g}")
    return report


def _run(source, name, out, batch_size, workers):
    params, _ = CASES[name]
    return run_batch_job(
        source,
        PROCESSOR.get(name, name),
        config={"batch_size": batch_size, "max_concurrent_batches": workers},
        output_path=out,
        **params,
    )


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory):
    """One chunk, one worker: the baseline every other run must equal."""
    base = tmp_path_factory.mktemp("reference")
    return {name: _run(source, name, base / name, 10_000, 1) for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_defaults_construct_and_state_round_trips_through_json(name, source, reference):
    params, _ = CASES[name]
    processor = resolve_processor(PROCESSOR.get(name, name), params)
    assert processor.chunk_invariant and json.dumps(processor.get_params())
    saved = Path(reference[name].output_uri) / "g0001" / "fit_state.json"
    if saved.exists():  # what fit learned, restored into a fresh instance, is the same JSON
        state = json.loads(saved.read_text())
        fresh = resolve_processor(PROCESSOR.get(name, name), params)
        fresh.set_state(state)
        assert json.loads(json.dumps(fresh.get_state())) == state
    report = reference[name].report
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_piece_result_matches_the_oracle(name, reference):
    _, oracle = CASES[name]
    oracle(reference[name].report, _frame())


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("batch_size,workers", [(97, 1), (333, 2), (700, 2)])
def test_result_does_not_depend_on_chunking_or_concurrency(
    name, batch_size, workers, source, reference, tmp_path
):
    result = _run(source, name, tmp_path / "out", batch_size, workers)
    assert _strip(result.report) == _strip(reference[name].report)
    ours, ref = read_output(result.output_uri), read_output(reference[name].output_uri)
    if ref is None:
        assert ours is None
    else:
        pd.testing.assert_frame_equal(ours, ref, check_exact=True)


KILL = textwrap.dedent("""
    import json, sys, time
    from airflow_batch_provider.engine import run_batch_job
    src, out, name, params, marker = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
    def slow(event):
        if event.event_type == "checkpoint":
            open(marker, "a").write("x")
            time.sleep(0.3)
    run_batch_job(src, name, config={"batch_size": 97, "max_concurrent_batches": 2, "checkpoint_interval": 2},
                  output_path=out, progress_callbacks=[slow], **params)
""")


@pytest.mark.parametrize("name", sorted(CASES))
def test_sigkill_and_resume_gives_the_same_result(name, source, reference, tmp_path):
    params, _ = CASES[name]
    out, marker = tmp_path / "out", tmp_path / "marker"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILL,
            str(source),
            str(out),
            PROCESSOR.get(name, name),
            json.dumps(params),
            str(marker),
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while (not marker.exists() or len(marker.read_text()) < 3) and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoints = [json.loads(p.read_text()) for p in out.rglob("_checkpoint.json")]
    assert any(c["counters"].get("chunks_done", 0) > 0 and c["status"] != "succeeded" for c in checkpoints)
    result = _run(source, name, out, 97, 2)
    assert result.generation == 1  # the killed generation was resumed, not restarted
    assert _strip(result.report) == _strip(reference[name].report)
    ref = read_output(reference[name].output_uri)
    if ref is not None:
        pd.testing.assert_frame_equal(read_output(result.output_uri), ref, check_exact=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutation_dropping_one_chunk_state_is_caught(name, source, tmp_path, monkeypatch):
    original = JobRunner.load_state
    dropped = []

    def drop_second(self, record):
        if record["f"] == 0 and record["s"] == 97:  # in the statistics pass and in the main pass
            dropped.append(record["s"])
            return None
        return original(self, record)

    monkeypatch.setattr(JobRunner, "load_state", drop_second)
    _, oracle = CASES[name]
    try:
        result = _run(source, name, tmp_path / "out", 97, 1)
    except ChunkFailedError as err:  # the processor noticed the lost state itself
        assert dropped and "statistics pass" in str(err)
        return
    assert dropped
    with pytest.raises(AssertionError):
        oracle(result.report, _frame())


def test_anomaly_rows_equal_scikit_learn_on_the_whole_table(reference):
    """With sample_size >= rows the fit sample is the whole table in source order: scores match sklearn."""
    from sklearn.ensemble import IsolationForest

    df = _frame()
    filled = df[["x", "dup"]].fillna(df[["x", "dup"]].median()).to_numpy()
    want = -IsolationForest(random_state=0).fit(filled).score_samples(filled)
    got = read_output(reference["anomaly_detection"].output_uri)
    np.testing.assert_array_equal(got["anomaly_score"].to_numpy(), want)
    assert got["id"].tolist() == df["id"].tolist()


def test_quality_passes_clean_rows_downstream_and_quarantines_the_rest(reference):
    df = _frame()
    x = df["x"]
    bad = x.isna() | df["dup"].duplicated() | (x < -2) | (x > 2)
    uri = reference["data_quality"].output_uri
    assert read_output(uri)["id"].tolist() == df.loc[~bad, "id"].tolist()
    quarantined = read_output(uri, quarantine=True)
    assert quarantined["id"].tolist() == df.loc[bad, "id"].tolist()
    assert reference["data_quality"].extra["rows_quarantined"] == int(bad.sum())


# -- nested columns (#23): the same source with a list, a struct and a map column beside the scalar ones ------
def _nested_table(df: pd.DataFrame) -> pa.Table:
    """The conformance frame plus nested columns derived from ``dup`` (so the planted duplicate rows stay the
    only ones): lists with empties and nulls, a struct with null rows and fields, a map."""
    dup = df["dup"].to_numpy()
    tags = [None if d % 11 == 4 else [f"t{(d + k) % 7}" for k in range(d % 4)] for d in dup]
    address = [
        None if d % 9 == 3 else {"city": None if d % 5 == 1 else f"c{d % 6}", "zip": int(d % 50)} for d in dup
    ]
    attrs = [None if d % 13 == 2 else [(f"k{k}", float(d * k)) for k in range(d % 3)] for d in dup]
    table = pa.Table.from_pandas(df, preserve_index=False)
    return (
        table.append_column("tags", pa.array(tags, pa.list_(pa.string())))
        .append_column("address", pa.array(address, pa.struct([("city", pa.string()), ("zip", pa.int32())])))
        .append_column("attrs", pa.array(attrs, pa.map_(pa.string(), pa.float64())))
    )


@pytest.fixture(scope="module")
def nested_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conformance-nested") / "src"
    folder.mkdir()
    table = _nested_table(_frame())
    pq.write_table(table.slice(0, ROWS_A), folder / "a.parquet", row_group_size=300)
    pq.write_table(table.slice(ROWS_A), folder / "b.parquet", row_group_size=300)
    return folder


def _parts(result) -> pa.Table | None:
    from airflow_batch_provider.engine import sources
    from airflow_batch_provider.storage import Location

    parts = sources.list_source_files(Location.of(result.output_uri))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None


@pytest.mark.parametrize("name", sorted(CASES))
def test_nested_columns_keep_every_processor_chunk_invariant(name, nested_source, reference, tmp_path):
    """Each processor over the source with nested columns: the same report and output for any chunking (lists
    split across chunks, files and row groups), nested columns written back with their types; the scalar
    columns' numbers are those of the flat source."""
    one = _run(nested_source, name, tmp_path / "one", 10_000, 1)
    for batch_size, workers in ((97, 1), (333, 2)):
        other = _run(nested_source, name, tmp_path / f"b{batch_size}", batch_size, workers)
        assert _strip(other.report) == _strip(one.report)
        ours, ref = _parts(other), _parts(one)
        assert (ours is None and ref is None) or ours.equals(ref)
    out = _parts(one)
    if out is not None:
        for column in ("tags", "address", "attrs"):
            assert out.schema.field(column).type == _nested_table(_frame()).schema.field(column).type
    if name == "data_profiling":
        flat = reference[name].report
        for column in ("id", "x", "cat", "ts", "dup"):
            assert _strip(one.report["columns"][column]) == _strip(flat["columns"][column])
        assert one.report["duplicate_rows"] == flat["duplicate_rows"]
        assert set(one.report["columns"]["address"]["children"]) == {"address.city", "address.zip"}
