"""Nested columns (issue #23): profiles of lists, structs and maps against one-piece pyarrow.compute oracles, at
batch sizes that split list columns across chunks; the canonical hash of nested values; data_quality rules on
struct fields (``address.city``), ``length`` rules on lists, and the ConfigError for paths into lists and for
``length`` on other types."""

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


def length_table(n: int = 301) -> pa.Table:
    rng = np.random.default_rng(11)
    items = [None if i % 7 == 2 else [int(v) for v in rng.integers(0, 9, i % 6)] for i in range(n)]
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "items": pa.array(items, pa.list_(pa.int64())),
            "names": pa.array(
                [None if v is None else [f"n{x}" if x else None for x in v] for v in items],
                pa.large_list(pa.string()),
            ),
            "pair": pa.array(
                [None if i % 5 == 1 and fixed_size_list_nulls() else [i, -i] for i in range(n)],
                pa.list_(pa.int32(), 2),
            ),
            "order": pa.array(
                [None if i % 9 == 4 else {"lines": items[(i * 3) % n], "ref": f"o{i}"} for i in range(n)],
                pa.struct([("lines", pa.list_(pa.int64())), ("ref", pa.string())]),
            ),
            "text": pa.array([f"t{i}" for i in range(n)]),
        }
    )


@pytest.mark.parametrize("batch_size", [13, 1_000])
def test_length_rules_against_pyarrow_compute(tmp_path, batch_size):
    table = length_table()
    path = tmp_path / "lengths.parquet"
    pq.write_table(table, path, row_group_size=50)
    rules = [
        {"type": "length", "column": "items", "min": 1, "max": 4},
        {"type": "length", "column": "names", "max": 2, "name": "few names"},
        {"type": "length", "column": "pair", "min": 2, "max": 2},
        {"type": "length", "column": "order.lines", "min": 3},
    ]
    result = run_batch_job(
        str(path), "data_quality", config={"batch_size": batch_size}, output_path=tmp_path / "q", rules=rules
    )
    entries = {r["name"]: r for r in result.report["rules"]}

    def oracle(col: pa.ChunkedArray, lo: int | None, hi: int | None) -> tuple[int, int, np.ndarray]:
        lengths = pc.list_value_length(col)
        bad = pc.or_(
            pc.less(lengths, lo if lo is not None else 0),
            pc.greater(lengths, hi if hi is not None else 2**31),
        )
        failed = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
        return len(col) - lengths.null_count, int(failed.sum()), failed

    order_lines = pc.struct_field(table.column("order"), [0])  # null where order is null: not evaluated
    wanted = {
        "length(items)": oracle(table.column("items"), 1, 4),
        "few names": oracle(table.column("names"), None, 2),
        "length(pair)": oracle(table.column("pair"), 2, 2),
        "length(order.lines)": oracle(order_lines, 3, None),
    }
    for name, (evaluated, failed, _) in wanted.items():
        assert (entries[name]["evaluated"], entries[name]["failed"]) == (evaluated, failed), name
    assert entries["length(pair)"]["failed"] == 0
    assert entries["length(items)"]["failed"] > 0 and entries["length(order.lines)"]["failed"] > 0
    quarantine = read_quarantine(result.output_uri)
    broke = np.logical_or.reduce([f for _, _, f in wanted.values()])
    assert quarantine.column("_source_row").to_pylist() == np.flatnonzero(broke).tolist()
    assert quarantine.schema.field("items").type == pa.list_(pa.int64())  # lists quarantined as they were
    clean = read_parts(result.output_uri)
    assert clean.column("id").to_pylist() == np.flatnonzero(~broke).tolist()
    assert clean.schema == table.schema
    pairs = run_batch_job(
        str(path),
        "data_quality",
        config={"batch_size": batch_size},
        output_path=tmp_path / "p",
        rules=[{"type": "length", "column": "pair", "min": 3}],  # no fixed-size list of 2 passes
    ).report["rules"][0]
    present = len(table) - table.column("pair").null_count
    assert (pairs["evaluated"], pairs["failed"], pairs["passed"]) == (present, present, False)


def read_parts(output_uri: str) -> pa.Table:
    from airflow_batch_provider.engine import sources
    from airflow_batch_provider.storage import Location

    return pa.concat_tables([pq.read_table(p) for p in sources.list_source_files(Location.of(output_uri))])


def read_quarantine(output_uri: str) -> pa.Table:
    from airflow_batch_provider.engine import sources
    from airflow_batch_provider.storage import Location

    loc = Location.of(output_uri)
    manifest = loc.child(sources.OUTPUT_MANIFEST).read_json()
    return pa.concat_tables([pq.read_table(p) for p in sources.manifest_files(loc, manifest, "quarantine")])


@pytest.mark.parametrize(
    "column,match",
    [
        (
            "text",
            r"rules\[0\] \(length\(text\)\): column 'text' has type string; a length rule measures lists",
        ),
        ("id", r"column 'id' has type int64; a length rule measures lists"),
        ("order", r"column 'order' has type struct<lines: list<element: int64>, ref: string>"),
        ("order.ref", r"column 'order.ref' has type string"),
        ("order.lines.x", r"'order.lines' is a list, not a struct"),
        ("lines", r"unknown column 'lines'"),
    ],
)
def test_a_length_rule_on_a_non_list_column_is_refused_before_any_chunk(tmp_path, column, match):
    path = tmp_path / "lengths.parquet"
    pq.write_table(length_table(20), path)
    with pytest.raises(ConfigError, match=match):
        run_batch_job(
            str(path),
            "data_quality",
            config={"retry_attempts": 3},
            output_path=tmp_path / "q",
            rules=[{"type": "length", "column": column, "max": 3}],
        )
    assert not list(tmp_path.rglob("parts/*.parquet"))  # the pre-flight check, not a retried chunk


@pytest.mark.parametrize(
    "rule,match",
    [
        ({"type": "length", "column": "items"}, r"a length rule needs 'min' and/or 'max'"),
        ({"type": "length", "column": "items", "min": -1}, r"length min must be a non-negative integer"),
        ({"type": "length", "column": "items", "max": 2.5}, r"length max must be a non-negative integer"),
        ({"type": "length", "column": "items", "min": 3, "max": 2}, r"min 3 is larger than max 2"),
        ({"type": "length", "min": 1}, r"a length rule needs 'column'"),
        (
            {"type": "length", "column": "items", "maxx": 1},
            r"unknown key\(s\) \['maxx'\]; did you mean 'max'",
        ),
        (
            {"type": "lenght", "column": "items", "max": 1},
            r"unknown rule type 'lenght'; did you mean 'length'",
        ),
    ],
)
def test_length_rule_options_are_checked(tmp_path, rule, match):
    path = tmp_path / "lengths.parquet"
    pq.write_table(length_table(20), path)
    with pytest.raises(ConfigError, match=match):
        run_batch_job(str(path), "data_quality", output_path=tmp_path / "q", rules=[rule])
