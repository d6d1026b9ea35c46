"""The Arrow kernels of data_profiling and data_quality against the pandas kernels they replace, and the
Arrow-buffer hashes: a hash is a function of the value alone (not of its chunk, layout or encoding)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_batch_provider.processors import arrow_hashing as ah
from airflow_batch_provider.processors import profiling_kernels as pk
from airflow_batch_provider.processors.base import ChunkContext
from airflow_batch_provider.processors.column_stats import Distribution, Histogram, TopValues
from airflow_batch_provider.processors.data_profiling import DataProfilingProcessor
from airflow_batch_provider.processors.data_quality import DataQualityProcessor
from airflow_batch_provider.processors.frames import INPUT_FORMATS, check_input_format, convert
from airflow_batch_provider.processors.hashing import HashSet
from tests.unit.processors.test_data_profiling import rich_frame


def _ctx(n: int, start: int = 0) -> ChunkContext:
    return ChunkContext("job", 0, 0, "f", start, start + n, 1, "", {}, "")


def test_text_hashes_depend_on_the_value_only():
    values = ["", "a", "abcdefgh", "abcdefghi", None, "δ é", "x" * 300, "abcdefgh", "ü" * 9]
    base = ah.text_hashes(pa.array(values, type=pa.large_string()))
    assert base[2] == base[7] and len(set(base.tolist())) == len(values) - 1
    assert ah.text_hashes(pa.array(values)).tolist() == base.tolist()  # string (int32 offsets)
    assert ah.column_hashes(pa.array(values).dictionary_encode()).tolist() == base.tolist()
    sliced = pa.chunked_array([pa.array(["zz", *values[:4]]).slice(1), pa.array(values[4:])])
    assert ah.column_hashes(sliced).tolist() == base.tolist()


@pytest.mark.parametrize("width", [1, 7, 8, 9, 13, 16, 17, 64, 256, 257])
def test_fixed_width_text_hashes_equal_the_general_path(width):
    """Values all ``width`` bytes long take the reshaped-block path; it must give the general path's hashes
    (the chunks of one column may take either path). 257 bytes is past ``LONG_TEXT``: the general path."""
    rng = np.random.default_rng(width)
    values = ["".join(chr(int(c)) for c in rng.integers(97, 123, width)) for _ in range(300)]
    for arr in (pa.array(values), pa.array(values, type=pa.large_string()), pa.array(values).slice(5, 200)):
        offsets, data = ah._text_bytes(arr)
        general = ah._variable_width_hashes(offsets[:-1], np.diff(offsets), data)
        assert ah.text_hashes(arr).tolist() == general.tolist()
    mixed = ah.text_hashes(pa.array([*values[:10], "short"]))[:10]  # not all one width: the general path
    assert mixed.tolist() == ah.text_hashes(pa.array(values[:10])).tolist()


def test_number_hashes_treat_nan_as_null_and_negative_zero_as_zero():
    h = ah.column_hashes(pa.array([0.0, -0.0, float("nan"), None, 1.5, float("inf")]))
    assert h[0] == h[1] and h[2] == h[3] and len({*h.tolist()}) == 4
    ints = ah.column_hashes(pa.array([1, None, 1, -(2**62)], type=pa.int64()))
    assert ints[0] == ints[2] and ints[1] == h[3] and ints[0] != ints[3]


def test_date32_and_time32_columns_hash_by_value(tmp_path):
    """pyarrow has no date32 -> int64 cast: 32-bit temporal values widen through int32 (a CSV column of ISO
    dates is date32; profiling's duplicate rows and quality's unique rule failed every chunk on it)."""
    import datetime

    from airflow_batch_provider.engine import run_batch_job

    day = datetime.date(2026, 1, 1)
    dates = ah.column_hashes(pa.array([day, None, day, datetime.date(1969, 12, 31)], type=pa.date32()))
    assert dates[0] == dates[2] and dates[1] == ah.column_hashes(pa.array([None], pa.int64()))[0]
    assert len({*dates.tolist()}) == 3
    times = ah.column_hashes(pa.array([1, 2, 1], type=pa.time32("s")))
    assert times[0] == times[2] != times[1]
    csv = tmp_path / "d.csv"
    csv.write_text("id,when\n" + "".join(f"{i},2026-01-1{i % 10}\n" for i in range(100)))
    cfg = {"batch_size": 30}
    profile = run_batch_job(csv, "data_profiling", config=cfg, output_path=tmp_path / "p").report
    assert profile["columns"]["when"]["distinct"] == 10 and profile["duplicate_rows"] == 0
    quality = run_batch_job(
        csv,
        "data_quality",
        rules=[{"type": "unique", "column": "when"}],
        config=cfg,
        output_path=tmp_path / "q",
    ).report
    assert quality["rules"][0]["failed"] == 90


def test_row_hashes_do_not_depend_on_the_chunking():
    frame = rich_frame(500, seed=3)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    whole = ah.row_hashes(table)
    parts = np.concatenate([ah.row_hashes(table.slice(i, 97)) for i in range(0, 500, 97)])
    assert whole.tolist() == parts.tolist()
    dup = pd.util.hash_pandas_object(frame, index=False).duplicated().to_numpy()
    assert pd.Series(whole).duplicated().to_numpy().tolist() == dup.tolist()


def test_sorted_set_orders_value_bits_as_uint64():
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=1000), rng.integers(-(2**62), 2**62, 1000)):
        uniq = np.unique(values)
        keys = pk.sorted_set(uniq).values
        assert keys.tolist() == np.sort(uniq.view(np.uint64)).tolist()


def test_histogram_of_sorted_values_equals_histogram_of():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=5000), 1)  # many values exactly on the edges
    edges = [float(e) for e in np.linspace(-2, 2, 9)]
    want = Histogram.of(x, edges).to_state()
    assert pk.histogram_of_sorted(np.sort(x), edges).to_state() == want
    assert pk.histogram_of_sorted(np.sort(x), [0.5, 0.5]).to_state() == Histogram.of(x, [0.5, 0.5]).to_state()


def test_sorted_buckets_equal_the_sorting_path():
    rng = np.random.default_rng(2)
    x = np.unique(rng.lognormal(0, 3, 20_000) * np.where(rng.random(20_000) < 0.4, -1, 1))
    counts = rng.integers(1, 5, len(x))
    fast = Distribution.of_sorted(x, counts, bits=6, limit=100)
    slow = Distribution(6, 100)
    slow._to_buckets(*(np.asarray(a) for a in (pk_keys(x, 6), counts, x, x)))
    assert fast.to_state() == slow.to_state()


def pk_keys(x, bits):
    from airflow_batch_provider.processors.column_stats import bucket_keys

    return bucket_keys(x, bits)


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_profiling_states_equal_the_pandas_kernels(fmt):
    frame = rich_frame(3000, seed=4)
    proc = DataProfilingProcessor(exact_quantile_limit=50, top_values_capacity=3)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    proc.fit_stats(proc.merge_stats([proc.partial_stats(convert(table, fmt), None)]))
    ours = proc.process(convert(table, fmt), _ctx(len(frame))).state
    legacy = proc._pandas_states(frame)
    for name, got in ours["cols"].items():
        want = legacy[name]
        assert HashSet.state_len(got["hs"]) == HashSet.state_len(want["hs"]) == frame[name].nunique(), name
        assert got["nulls"] == want["nulls"], name
        for key in ("d", "h", "dt", "t"):
            assert got.get(key) == want.get(key), (name, key)
        if "m" in got:
            assert got["m"][0] == want["m"][0] and got["m"][3:] == want["m"][3:], name
            assert got["m"][1] == pytest.approx(want["m"][1], rel=1e-12, abs=1e-300)
        if "tv" in got:
            a, b = TopValues.from_state(got["tv"]), TopValues.from_state(want["tv"])
            assert (a.counts, a.error) == (b.counts, b.error), name
    assert json.dumps(ours)


def test_quality_on_arrow_equals_quality_on_pandas():
    frame = rich_frame(2000, seed=5)
    rules = [
        {"type": "not_null", "column": "amount $ (eur)"},
        {"type": "between", "column": "amount $ (eur)", "min": 5, "max": 15},
        {"type": "min", "column": "nullable#int", "value": 3, "inclusive": False},
        {"type": "allowed_values", "column": "text col", "values": ["alpha", "beta"]},
        {"type": "unique", "columns": ["dup key", "flag"]},
        {"type": "expression", "expression": "id % 7 != 3"},
    ]
    outputs = {}
    for fmt in ("pandas", "arrow", "polars"):
        proc = DataQualityProcessor(rules=rules)
        chunk = convert(pa.Table.from_pandas(frame, preserve_index=False), fmt)
        proc.fit_stats(proc.merge_stats([proc.partial_stats(chunk, _ctx(len(frame)))]))
        result = proc.process(chunk, _ctx(len(frame)))
        outputs[fmt] = (
            result.state,
            convert(result.rows, "pandas").reset_index(drop=True),
            convert(result.quarantine, "pandas"),
        )
    state, rows, quarantine = outputs["pandas"]
    assert state["rows_failed"] > 0 and all(v[1] for v in state["rules"].values())
    for fmt in ("arrow", "polars"):
        assert outputs[fmt][0] == state
        pd.testing.assert_frame_equal(outputs[fmt][1], rows, check_dtype=False, check_categorical=False)
        assert outputs[fmt][2]["_source_row"].tolist() == quarantine["_source_row"].tolist()
        assert [list(x) for x in outputs[fmt][2]["_failed_rules"]] == [
            list(x) for x in quarantine["_failed_rules"]
        ]


def test_input_formats_are_checked():
    assert check_input_format("polars") == "polars"
    with pytest.raises(ValueError, match="pandas"):
        check_input_format("numpy")
    assert DataProfilingProcessor.input_format == DataQualityProcessor.input_format == "arrow"
