"""CSV / JSON Lines values read the way pandas reads them (issue #17).

Every corpus file is built here from bytes; the engine's result (index, whole-file typing, then several
row ranges) is compared with ``pandas.read_csv`` / ``pandas.read_json`` defaults on the same bytes: the
null mask and the dtype family of every column, never hand-written numbers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job, textformats
from airflow_batch_provider.engine.redaction import log_row_values
from airflow_batch_provider.engine.textformats import (
    PANDAS_NULL_VALUES,
    TextOptions,
    index_text_file,
    infer_text_schema,
    read_text_rows,
)
from airflow_batch_provider.exceptions import ChunkFailedError, ConfigError, DataCorruptionError

FS = fsspec.filesystem("file")


def _engine(
    path: Path, fmt: str, options: TextOptions, *, stride: int = 4, span_bytes: int = 256
) -> pa.Table:
    """Index, type the whole file in many small ranges (2 threads), read it back in uneven row ranges."""
    index = index_text_file(FS, str(path), fmt, options, stride=stride)
    schema = infer_text_schema(FS, str(path), index, options, span_bytes=span_bytes, threads=2)
    cuts = sorted(
        {0, index.rows, *(c for c in (1, 5, 9, index.rows // 2, index.rows - 1) if 0 < c < index.rows)}
    )
    parts = [
        read_text_rows(FS, str(path), index, a, b, schema, options)
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _family(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "empty"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def _pandas_families(col: pd.Series) -> set[str]:
    """The engine families that mean the same as pandas' dtype: pandas has no integer or boolean column with
    missing values (it widens them to float64 / object), the engine keeps int64 / bool with nulls."""
    values = col.dropna()
    if not len(values):
        return {"empty"}  # pandas: object without rows, float64 when every value is missing
    if pd.api.types.is_bool_dtype(col.dtype):
        return {"bool"}
    if pd.api.types.is_integer_dtype(col.dtype):
        return {"int"}
    if pd.api.types.is_float_dtype(col.dtype):
        integral = col.isna().any() and bool((values == np.floor(values)).all())
        return {"float", "int"} if integral else {"float"}
    if all(isinstance(v, bool | np.bool_) for v in values):
        return {"bool"}
    return {"string"}


def _assert_like_pandas(got: pa.Table, want: pd.DataFrame) -> None:
    assert got.column_names == [str(c) for c in want.columns]
    assert got.num_rows == len(want)
    for name in got.column_names:
        ours, theirs = got.column(name), want[name]
        assert ours.is_null().to_pylist() == theirs.isna().tolist(), name
        assert _family(ours.type) in _pandas_families(theirs), (name, ours.type, theirs.dtype)
        if _family(ours.type) in ("int", "float") and len(theirs.dropna()):
            np.testing.assert_allclose(ours.drop_null().to_numpy(), theirs.dropna().to_numpy(float))
        if _family(ours.type) == "string":
            assert ours.drop_null().to_pylist() == [str(v) for v in theirs.dropna()], name


_MARKERS = [m for m in PANDAS_NULL_VALUES if m]
_CP1252 = "name,v\n€uro,1\n“quoted”,2\n—dash,\nnaïve,3\n"

CORPUS: dict[str, tuple[bytes, dict, dict]] = {  # name: (bytes, csv_options, pandas.read_csv keywords)
    "empty_fields": (b"a,b,c\n1,,x\n,2.5,\n3,4,y\n,,\n", {}, {}),
    "every_default_marker": (
        (
            "n,t,f\n"
            + "".join(f"{m},{m},{m}\n{i},w{i},{i}.5\n" for i, m in enumerate(_MARKERS))
        ).encode(),
        {},
        {},
    ),
    "quoted_empty_and_quoted_markers": (b'a,b\n"",1\n"NA",2\n"x",""\n"null","3"\n', {}, {}),
    "null_values_added": (b"a,b\n1,-\n-,x\nmissing,\n4,y\n", {"null_values": ["-", "missing"]}, {"na_values": ["-", "missing"]}),
    "only_listed_null_values": (
        b"a,b\n1,NA\n-,\n3,N/A\n",
        {"null_values": ["-"], "keep_default_null_values": False},
        {"na_values": ["-"], "keep_default_na": False},
    ),
    "numbers_with_text_markers": (b"v\n1\nN/A\n\n2.5\n#N/A\nNULL\n", {}, {}),
    "latin1": ("name,v\nété,1\nMüller,2\n,3\nÀ bientôt,\n".encode("latin-1"), {"encoding": "latin-1"}, {"encoding": "latin-1"}),
    "cp1252": (_CP1252.encode("cp1252"), {"encoding": "cp1252"}, {"encoding": "cp1252"}),
    "iso8859_15": ("k,v\n€,1\nœ,2\n".encode("iso8859_15"), {"encoding": "iso-8859-15"}, {"encoding": "iso-8859-15"}),
    "decimal_comma": (b"a;b;c\n1;2,5;x\n2;;y\n3;-0,75;\n", {"delimiter": ";", "decimal": ","}, {"sep": ";", "decimal": ","}),
    "thousands_and_decimal": (
        b"a;b;c\n1.234,5;1.000;7\n2,5;2.000.000;8\n;3;\n",
        {"delimiter": ";", "decimal": ",", "thousands": "."},
        {"sep": ";", "decimal": ",", "thousands": "."},
    ),
    "bom_crlf": (b"\xef\xbb\xbfa,b\r\n1,x\r\n,\r\n\r\n3,z\r\n", {}, {}),
    "quoted_newlines": (b'a,b\n1,"x\ny"\n2,""\n3,"NA"\n4,"two\r\nlines, a comma"\n', {}, {}),
    "bools_with_nulls": (b"f,g\nTrue,true\n,false\nFalse,\n", {}, {}),
    "all_empty_column": (b"a,b\n1,\n2,\n3,\n", {}, {}),
    "header_only": (b"a,b,c\n", {}, {}),
    "long_field": (b"id,blob\n1,short\n2,\"" + b"y" * 300_000 + b'"\n3,\n', {}, {}),
    "five_thousand_columns": (
        (",".join(f"c{i}" for i in range(5000)) + "\n"
         + "\n".join(",".join("" if (i + r) % 7 == 0 else str(i * r) for i in range(5000)) for r in range(3))
         + "\n").encode(),
        {},
        {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_reads_like_pandas(tmp_path, name):
    data, options, pandas_kwargs = CORPUS[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    got = _engine(path, "csv", TextOptions.from_mapping(options))
    _assert_like_pandas(got, pd.read_csv(io.BytesIO(data), **pandas_kwargs))


def test_quoted_empty_string_is_null_like_pandas(tmp_path):
    """pandas ignores quoting when it matches null markers: '""' and '"NA"' are null, as '' and 'NA' are."""
    path = tmp_path / "q.csv"
    path.write_bytes(b'a\n""\n"NA"\n" "\n')
    assert _engine(path, "csv", TextOptions())["a"].to_pylist() == [None, None, " "]
    kept = TextOptions(keep_default_null_values=False)  # pandas keep_default_na=False: nothing is null
    assert _engine(path, "csv", kept)["a"].to_pylist() == ["", "NA", " "]


def test_late_type_change_widens_before_any_chunk(tmp_path):
    """int for 150,000 rows, then a decimal, then N/A; a second column empty for 150,000 rows, then text."""
    n = 150_000
    lines = ["v,t,k"] + [f"{i},,{i}" for i in range(n)] + ["0.5,late,1", "N/A,text,2", "7,,3"]
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "late.csv"
    path.write_bytes(data)
    index = index_text_file(FS, str(path), "csv", TextOptions(), stride=256)
    schema = infer_text_schema(FS, str(path), index, TextOptions(), span_bytes=64 << 10, threads=2)
    assert schema == pa.schema([("v", pa.float64()), ("t", pa.string()), ("k", pa.int64())])
    got = pa.concat_tables(
        read_text_rows(FS, str(path), index, a, min(a + 40_000, index.rows), schema, TextOptions())
        for a in range(0, index.rows, 40_000)
    )
    _assert_like_pandas(got, pd.read_csv(io.BytesIO(data)))
    declared = TextOptions(column_types={"t": "string"})  # declared: still every empty field is null
    table = read_text_rows(
        FS, str(path), index, 0, index.rows, infer_text_schema(FS, str(path), index, declared), declared
    )
    assert table["t"].null_count == n + 1


def test_jsonl_nulls_and_missing_keys_like_pandas(tmp_path):
    records = [{"a": 1, "b": None}, {"a": 2}, {"b": "x"}, {"a": None, "b": "N/A"}, {"a": 5, "b": ""}] * 20
    records.append({"a": 6, "b": "y", "late": "z"})
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path = tmp_path / "n.jsonl"
    path.write_bytes(data)
    got = _engine(path, "jsonl", TextOptions(), span_bytes=128)
    want = pd.read_json(io.BytesIO(data), lines=True)  # JSON text is never a null marker: "N/A" and "" stay
    _assert_like_pandas(got, want)
    assert got.schema.names == ["a", "b", "late"]  # a key seen only in the last record is in the schema


def test_typing_covers_every_range_in_parallel(tmp_path):
    data = ("x\n" + "1\n" * 5000 + "word\n" + "2\n" * 5000).encode()  # the word sits in the middle
    path = tmp_path / "mid.csv"
    path.write_bytes(data)
    index = index_text_file(FS, str(path), "csv", TextOptions(), stride=16)
    for threads in (1, 2):
        schema = infer_text_schema(FS, str(path), index, TextOptions(), span_bytes=1000, threads=threads)
        assert schema.field("x").type == pa.string()


# ---------------------------------------------------------------- bad input: file, row, fix


def test_wrong_encoding_names_file_row_and_fix(tmp_path, caplog):
    path = tmp_path / "latin.csv"
    path.write_bytes(
        b"name,n\n" + "".join(f"x{i},{i}\n" for i in range(20)).encode() + "été,20\n".encode("latin-1")
    )
    index = index_text_file(FS, str(path), "csv", TextOptions(), stride=4)
    schema = infer_text_schema(FS, str(path), index, TextOptions())  # planning does not fail for bad bytes
    assert schema.field("name").type == pa.string()
    assert "latin.csv" in caplog.text and "'cp1252'" in caplog.text
    assert read_text_rows(FS, str(path), index, 0, 20, schema, TextOptions()).num_rows == 20
    with pytest.raises(
        DataCorruptionError, match=r"latin\.csv.*data row 21.*invalid UTF8.*'encoding'.*cp1252"
    ):
        read_text_rows(FS, str(path), index, 16, 21, schema, TextOptions())  # the chunk holding them fails
    latin = TextOptions(encoding="latin-1")
    assert read_text_rows(FS, str(path), index, 20, 21, schema, latin)["name"].to_pylist() == ["été"]


def test_a_malformed_record_is_left_to_its_chunk(tmp_path, caplog):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "".join("1,2,3\n" if i in (40, 41) else f"{i},{i}\n" for i in range(100)))
    index = index_text_file(FS, str(path), "csv", TextOptions(), stride=8)
    schema = infer_text_schema(FS, str(path), index, TextOptions(), span_bytes=200)  # planning goes on
    assert schema == pa.schema([("a", pa.int64()), ("b", pa.int64())])
    assert "2 malformed record(s) (data rows [41, 42]" in caplog.text
    assert read_text_rows(FS, str(path), index, 0, 40, schema, TextOptions()).num_rows == 40
    assert read_text_rows(FS, str(path), index, 42, 100, schema, TextOptions()).num_rows == 58
    with pytest.raises(
        DataCorruptionError, match=r"bad\.csv.*data row 41.*Expected 2 columns, got 3.*delimiter"
    ):
        read_text_rows(FS, str(path), index, 40, 42, schema, TextOptions())


def test_undecodable_byte_names_the_file_offset(tmp_path):
    path = tmp_path / "cp.csv"
    path.write_bytes(b"a,b\n1,x\n2,\x81\n")  # 0x81 is not a cp1252 character
    options = TextOptions(encoding="cp1252")
    index = index_text_file(FS, str(path), "csv", options)
    with pytest.raises(
        DataCorruptionError, match=r"cp\.csv.*file offset 10 cannot be decoded as cp1252.*Fix"
    ):
        infer_text_schema(FS, str(path), index, options)


def test_encoding_options_are_checked():
    assert TextOptions(encoding="cp1252").transcode and not TextOptions(encoding="UTF8").transcode
    for good in ("latin-1", "iso-8859-2", "koi8-r", "cp1250", "mac-roman"):
        TextOptions(encoding=good)
    for good in (
        "utf-16",
        "utf-16-be",
        "utf-32",
        "UTF-32LE",
    ):  # UTF-16/32: tests/unit/engine/test_text_wide_encodings.py
        TextOptions(encoding=good)
    for bad in ("shift_jis", "gb18030", "iso2022_jp", "utf-7"):
        with pytest.raises(ConfigError, match=rf"'{bad}'.*iconv"):
            TextOptions(encoding=bad)
    with pytest.raises(ConfigError, match="not a codec"):
        TextOptions(encoding="klingon")
    with pytest.raises(ConfigError, match="decimal and thousands"):
        TextOptions(decimal=",", thousands=",")
    with pytest.raises(ConfigError, match="null_values"):
        TextOptions(null_values=[1])
    with pytest.raises(ConfigError, match="keep_default_null_values"):
        TextOptions(keep_default_null_values="no")


def test_a_value_not_of_its_declared_type_names_file_row_and_value(tmp_path):
    path = tmp_path / "decl.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(30)) + "30,oops\n" + "31,31\n")
    options = TextOptions(column_types={"b": "int64"})
    index = index_text_file(FS, str(path), "csv", options, stride=64)  # one stride holds every row
    schema = infer_text_schema(FS, str(path), index, options)  # typing reads declared columns as text
    assert schema.field("b").type == pa.int64()
    assert read_text_rows(FS, str(path), index, 0, 30, schema, options).num_rows == 30  # not this chunk's row
    with log_row_values(True), pytest.raises(DataCorruptionError) as err:
        read_text_rows(FS, str(path), index, 25, 32, schema, options)
    message = str(err.value)
    assert "decl.csv" in message and "data row 31" in message and "'oops'" in message
    assert "not a valid int64" in message and "max_skipped_fraction" in message
    with pytest.raises(DataCorruptionError) as err:
        read_text_rows(FS, str(path), index, 25, 32, schema, options)
    assert "oops" not in str(err.value)  # values are shown only where the deployment logs row values


def test_declared_type_errors_quarantine_only_their_row(tmp_path):
    path = tmp_path / "decl.csv"
    path.write_text("a,b\n" + "".join(f"{i},{'oops' if i == 250 else i}\n" for i in range(400)))
    kwargs = dict(
        config={"batch_size": 100, "retry_attempts": 0}, csv_options={"column_types": {"b": "int64"}}
    )
    with pytest.raises(DataCorruptionError, match=r"decl\.csv rows 200-300.*data row 251"):
        run_batch_job(path, "count", output_path=tmp_path / "o1", **kwargs)
    result = run_batch_job(
        path, "count", output_path=tmp_path / "o2", recovery={"max_skipped_fraction": 0.5}, **kwargs
    )
    assert (result.report["rows"], result.extra["rows_skipped"]) == (399, 1)


# ---------------------------------------------------------------- fingerprint, header-only, round trip

_FLAG: list[Path] = []


def _fail_late(batch, ctx):
    if ctx.start_row >= 300 and _FLAG and _FLAG[0].exists():
        raise RuntimeError("injected crash")
    return batch


def test_reader_version_and_text_options_are_in_the_fingerprint(tmp_path, monkeypatch):
    src = tmp_path / "f.csv"
    src.write_text("a,b\n" + "".join(f"{i},{'-' if i % 10 == 0 else i}\n" for i in range(600)))
    flag = tmp_path / "flag"
    _FLAG[:] = [flag]
    cfg = {"batch_size": 100, "max_concurrent_batches": 1, "retry_attempts": 0, "checkpoint_interval": 1}

    def crash(out, **kwargs):
        flag.write_text("1")
        with pytest.raises(ChunkFailedError):
            run_batch_job(src, _fail_late, config=cfg, output_path=out, **kwargs)
        flag.unlink()

    crash(tmp_path / "same")  # control: an unchanged job resumes
    assert run_batch_job(src, _fail_late, config=cfg, output_path=tmp_path / "same").chunks_resumed > 0

    crash(tmp_path / "options")
    changed = run_batch_job(
        src, _fail_late, config=cfg, output_path=tmp_path / "options", csv_options={"null_values": ["-"]}
    )
    assert changed.chunks_resumed == 0 and changed.resume_decision.startswith("fingerprint changed")

    with monkeypatch.context() as m:  # a checkpoint written by the previous reader (sampled schema, "" kept)
        m.setattr(textformats, "READER_VERSION", textformats.READER_VERSION - 1)
        crash(tmp_path / "reader")
    upgraded = run_batch_job(src, _fail_late, config=cfg, output_path=tmp_path / "reader")
    assert upgraded.chunks_resumed == 0 and upgraded.resume_decision.startswith("fingerprint changed")


def test_header_only_csv_keeps_its_columns_in_the_profile(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("id,name,amount\n")
    result = run_batch_job(path, "data_profiling", output_path=tmp_path / "out")
    assert result.rows_in == 0
    assert list(result.report["columns"]) == ["id", "name", "amount"]
    assert all(c["count"] == 0 and c["nulls"] == 0 for c in result.report["columns"].values())
    rows = run_batch_job(path, "passthrough", output_path=tmp_path / "rows")
    assert list(read_output(rows.output_uri).columns) == ["id", "name", "amount"]


def _round_trip_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(17)
    amount = rng.normal(100, 30, n).round(3)
    amount[rng.random(n) < 0.1] = np.nan
    name = np.array([f"n{i % 97}" for i in range(n)], dtype=object)
    name[rng.random(n) < 0.07] = None  # a missing text value: written as an empty field
    flag = pd.array(rng.random(n) < 0.5, dtype="boolean")
    flag[rng.random(n) < 0.05] = pd.NA
    qty = pd.array(rng.integers(-50, 50, n), dtype="Int64")
    qty[rng.random(n) < 0.03] = pd.NA
    return pd.DataFrame({"id": np.arange(n), "amount": amount, "name": name, "flag": flag, "qty": qty})


def test_parquet_to_csv_round_trip_profiles_the_same(tmp_path):
    frame = _round_trip_frame(3_000)
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet, row_group_size=700)
    csv = tmp_path / "data.csv"
    pd.read_parquet(parquet, dtype_backend="numpy_nullable").to_csv(csv, index=False)
    cfg = {"batch_size": 1000}
    a = run_batch_job(parquet, "data_profiling", config=cfg, output_path=tmp_path / "pq").report
    b = run_batch_job(csv, "data_profiling", config=cfg, output_path=tmp_path / "csv").report
    assert a["rows"] == b["rows"] == 3_000
    assert list(a["columns"]) == list(b["columns"])
    for name in a["columns"]:
        for key in ("count", "nulls", "distinct", "min", "max"):
            assert a["columns"][name][key] == b["columns"][name][key], (name, key)
    assert b["columns"]["name"]["nulls"] == int(frame["name"].isna().sum()) > 0
