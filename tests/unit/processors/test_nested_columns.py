"""Nested columns (issue #23): profiles of lists, structs and maps against one-piece pyarrow.compute oracles, at
batch sizes that split list columns across chunks; the canonical hash of nested values; data_quality rules on
struct fields (``address.city``) and the ConfigError for paths into lists."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.arrow_hashing import column_hashes
from airflow_batch_provider.processors.nested_profiling import find
from tests.type_corpus import fixed_size_list_nulls

N = 1_003


def nested_table(n: int = N) -> pa.Table:
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 6, n)
    tags = [None if i % 11 == 4 else [f"t{int(v)}" for v in rng.integers(0, 9, lengths[i])] for i in range(n)]
    scores = [
        None if i % 13 == 2 else [None if v == 3 else int(v) for v in rng.integers(-5, 9, i % 4)]
        for i in range(n)
    ]
    grid = [None if i % 17 == 0 else [[i, i + 1], [], [i % 5]] if i % 2 else [[i % 3]] for i in range(n)]
    address = [
        None
        if i % 7 == 3
        else {
            "city": None if i % 5 == 1 else f"city{i % 4}",
            "zip": int(rng.integers(1000, 1100)),
            "geo": {"lat": float(rng.normal())},
        }
        for i in range(n)
    ]
    attrs = [None if i % 9 == 5 else [(f"k{j}", float(i * j)) for j in range(i % 3)] for i in range(n)]
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "tags": pa.array(tags, pa.list_(pa.string())),
            "scores": pa.array(scores, pa.large_list(pa.int32())),
            "grid": pa.array(grid, pa.list_(pa.list_(pa.int64()))),
            "pair": pa.array(
                [None if i % 19 == 1 and fixed_size_list_nulls() else [i * 0.5, -i] for i in range(n)],
                pa.list_(pa.float64(), 2),
            ),
            "address": pa.array(
                address,
                pa.struct(
                    [("city", pa.string()), ("zip", pa.int32()), ("geo", pa.struct([("lat", pa.float64())]))]
                ),
            ),
            "attrs": pa.array(attrs, pa.map_(pa.string(), pa.float64())),
            "when": pa.array(
                [
                    None if i % 6 == 2 else {"at": dt.datetime(9000, 1, 1) + dt.timedelta(hours=i)}
                    for i in range(n)
                ],
                pa.struct([("at", pa.timestamp("us"))]),
            ),
        }
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("nested") / "nested.parquet"
    pq.write_table(nested_table(), path, row_group_size=128)
    return path


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory):
    return run_batch_job(
        str(source),
        "data_profiling",
        config={"batch_size": 10_000},
        output_path=tmp_path_factory.mktemp("one"),
    ).report


def length_oracle(col: pa.ChunkedArray) -> dict:
    lengths = pc.drop_null(pc.list_value_length(col)).to_numpy(zero_copy_only=False).astype(float)
    return {"min": lengths.min(), "max": lengths.max(), "mean": lengths.mean(), "median": np.median(lengths)}


def test_list_columns_against_pyarrow_compute(reference):
    table = nested_table()
    for name in ("tags", "scores", "grid", "pair"):
        col, prof = table.column(name), reference["columns"][name]
        oracle = length_oracle(col)
        assert (
            prof["type"] == "list" and prof["nulls"] == col.null_count and prof["count"] == N - col.null_count
        )
        assert prof["empty"] == int(pc.sum(pc.equal(pc.list_value_length(col), 0)).as_py() or 0)
        length = prof["length"]
        assert (length["min"], length["max"]) == (oracle["min"], oracle["max"])
        assert length["mean"] == pytest.approx(oracle["mean"], rel=1e-12)
        assert length["quantiles"]["0.5"] == oracle["median"] and length["quantiles_exact"]
        assert prof["distinct"] == len({repr(v) for v in col.to_pylist() if v is not None})
    tags = pc.list_flatten(table.column("tags"))
    element = reference["columns"]["tags"]["children"]["tags[]"]
    assert element["values"] == len(tags) and element["type"] == "text"
    assert element["distinct"] == len(pc.unique(pc.drop_null(tags)))
    counts = {v["values"]: v["counts"] for v in pc.value_counts(tags).to_pylist()}
    assert dict(element["top_values"]) == dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])
    scores = pc.list_flatten(table.column("scores"))
    element = reference["columns"]["scores"]["children"]["scores[]"]
    assert element["nulls"] == scores.null_count and element["count"] == len(scores) - scores.null_count
    assert (element["min"], element["max"]) == (pc.min(scores).as_py(), pc.max(scores).as_py())
    assert element["mean"] == pytest.approx(pc.mean(scores).as_py(), rel=1e-12)
    assert sum(element["histogram"]["counts"]) == element["count"]
    inner = reference["columns"]["grid"]["children"]["grid[]"]
    assert inner["type"] == "list" and inner["values"] == len(pc.list_flatten(table.column("grid")))
    leaf = inner["children"]["grid[][]"]
    flat = pc.list_flatten(pc.list_flatten(table.column("grid")))
    assert leaf["values"] == len(flat) and leaf["max"] == pc.max(flat).as_py()


def test_struct_and_map_columns_against_pyarrow_compute(reference):
    table = nested_table()
    address, prof = table.column("address"), reference["columns"]["address"]
    assert prof["type"] == "struct" and prof["nulls"] == address.null_count
    assert set(prof["children"]) == {"address.city", "address.zip", "address.geo"}
    city = pc.struct_field(address, [0])  # null where address is null
    assert prof["children"]["address.city"]["nulls"] == city.null_count
    assert prof["children"]["address.city"]["distinct"] == len(pc.unique(pc.drop_null(city)))
    zipcode = pc.struct_field(address, [1])
    assert prof["children"]["address.zip"]["min"] == pc.min(zipcode).as_py()
    lat = pc.struct_field(address, [2, 0])
    lat_prof = find(reference["columns"], "address.geo.lat")
    assert lat_prof["mean"] == pytest.approx(pc.mean(lat).as_py(), rel=1e-12)
    assert lat_prof["nulls"] == lat.null_count
    attrs, prof = table.column("attrs"), reference["columns"]["attrs"]
    assert prof["type"] == "map" and prof["nulls"] == attrs.null_count
    entries = [kv for m in attrs.to_pylist() if m for kv in m]
    keys, values = pa.array([k for k, _ in entries]), pa.array([v for _, v in entries])
    assert prof["children"]["attrs.key"]["values"] == len(keys)
    assert prof["children"]["attrs.key"]["distinct"] == len(pc.unique(keys))
    assert prof["children"]["attrs.value"]["max"] == pc.max(values).as_py()
    when = find(reference["columns"], "when.at")
    assert when["type"] == "datetime" and when["max"].startswith("9000-0")  # year 9000: no pandas ns detour
    assert reference["duplicate_rows"] == 0


@pytest.mark.parametrize("batch_size,workers", [(97, 1), (250, 2)])
def test_nested_profiles_do_not_depend_on_chunking(source, reference, batch_size, workers, tmp_path):
    report = run_batch_job(
        str(source),
        "data_profiling",
        config={"batch_size": batch_size, "max_concurrent_batches": workers},
        output_path=tmp_path,
    ).report
    assert rounded(report) == rounded(reference)  # moments merge exactly up to float rounding, as at the top


def rounded(report):
    """Floats to 12 significant digits (merged moments differ in the last bits between chunkings)."""
    if isinstance(report, dict):
        return {k: rounded(v) for k, v in report.items()}
    if isinstance(report, list):
        return [rounded(v) for v in report]
    return float(f"{report:.12g}") if isinstance(report, float) else report


def test_the_nested_hash_depends_on_the_value_only():
    lists = pa.array([[1, 2], [2, 1], [], None, [1, 2]], pa.list_(pa.int64()))
    h = column_hashes(lists)
    assert h[0] == h[4] and len({h[0], h[1], h[2], h[3]}) == 4  # order matters; empty differs from null
    assert (column_hashes(lists.cast(pa.large_list(pa.int64()))) == h).all()
    assert (column_hashes(lists.slice(1)) == h[1:]).all()
    assert column_hashes(pa.array([[1, 2]], pa.list_(pa.int64(), 2)))[0] == h[0]
    maps = pa.array([[("a", 1), ("b", 2)], [("b", 2), ("a", 1)], None], pa.map_(pa.string(), pa.int64()))
    assert column_hashes(maps)[0] == column_hashes(maps)[1]  # a map is a set of keys
    assert (column_hashes(maps.slice(1)) == column_hashes(maps)[1:]).all()
    structs = pa.array([{"a": 1, "b": "x"}, None, {"a": 1, "b": "x"}, {"a": None, "b": "x"}])
    hs = column_hashes(structs)
    assert hs[0] == hs[2] and len({hs[0], hs[1], hs[3]}) == 3


def test_quality_rules_address_struct_fields(source, tmp_path):
    rules = [
        {"type": "not_null", "column": "address.city"},
        {"type": "between", "column": "address.zip", "min": 1000, "max": 1049},
        {"type": "allowed_values", "column": "address.city", "values": ["city0", "city1"]},
        {"type": "unique", "column": "address.geo.lat"},
    ]
    report = run_batch_job(
        str(source), "data_quality", config={"batch_size": 97}, output_path=tmp_path / "q", rules=rules
    ).report
    failed = {r["name"]: r["failed"] for r in report["rules"]}
    address = nested_table().column("address")
    city, zipcode = pc.struct_field(address, [0]), pc.struct_field(address, [1])
    assert failed["not_null(address.city)"] == city.null_count
    assert failed["between(address.zip)"] == pc.sum(pc.greater(zipcode, 1049)).as_py()
    assert (
        failed["allowed_values(address.city)"] == pc.sum(pc.is_in(city, pa.array(["city2", "city3"]))).as_py()
    )
    lat = pc.struct_field(address, [2, 0]).to_pylist()
    assert failed["unique(address.geo.lat)"] == len(lat) - len(set(lat))  # nulls are one key, as for columns


@pytest.mark.parametrize(
    "column,match",
    [
        ("tags.x", r"'tags' is a list, not a struct; rules address struct fields"),
        (
            "address.town",
            r"the struct 'address' has no field 'town'; its fields are \['city', 'zip', 'geo'\]",
        ),
        ("attrs.key", r"'attrs' is a map, not a struct"),
    ],
)
def test_a_path_into_a_list_or_a_missing_field_is_a_config_error_before_any_chunk(
    source, tmp_path, column, match
):
    with pytest.raises(ConfigError, match=match):
        run_batch_job(
            str(source), "data_quality", output_path=tmp_path, rules=[{"type": "not_null", "column": column}]
        )
    assert not list(tmp_path.rglob("parts/*.parquet"))
