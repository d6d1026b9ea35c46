"""Tests for the CSV / JSON Lines row-range engine (real files, no mocks)."""

from __future__ import annotations

import io
import json
import random

import fsspec
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from airflow_batch_provider.engine.textformats import (
    TextIndex,
    TextOptions,
    index_text_file,
    infer_text_schema,
    merge_types,
    read_text_rows,
)
from airflow_batch_provider.exceptions import ConfigError, DataCorruptionError, SourceError

FS = fsspec.filesystem("file")
OPTS = TextOptions()


def _write(tmp_path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def _read_in_chunks(
    fs,
    path: str,
    fmt: str,
    options: TextOptions = OPTS,
    *,
    stride: int = 7,
    block_size: int = 8 << 20,
    cuts: list[int] | None = None,
) -> pa.Table:
    """Index, infer, then read the whole file back as several row ranges."""
    index = index_text_file(fs, path, fmt, options, stride=stride, block_size=block_size)
    schema = infer_text_schema(fs, path, index, options)
    bounds = sorted({0, index.rows, *(c for c in (cuts or []) if c < index.rows)})
    ranges = zip(bounds, bounds[1:], strict=False)
    parts = [read_text_rows(fs, path, index, a, b, schema, options) for a, b in ranges]
    for part in parts:
        assert part.schema == schema
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _mixed_csv(n: int, eol: str = "\n", sep: str = ",") -> str:
    rng = random.Random(n)
    names = ["plain", 'with ""quotes""', "multi\nline", "comma, inside", "semi; colon", "crlf\r\ninside"]
    lines = [sep.join(["id", "x", "name", "flag"])]
    for i in range(n):
        lines.append(
            sep.join(
                [
                    str(i),
                    f"{rng.uniform(-1e3, 1e3):.4f}",
                    f'"{rng.choice(names)} {i}"',
                    rng.choice(["true", "false"]),
                ]
            )
        )
    return eol.join(lines) + eol


# ---------------------------------------------------------------- equality with pandas


@pytest.mark.parametrize("block_size", [64, 1 << 20])
def test_ranges_across_strides_reassemble_to_pandas(tmp_path, block_size):
    path = _write(tmp_path, "mixed.csv", _mixed_csv(500))
    cuts = [1, 6, 7, 8, 50, 63, 64, 65, 300, 499]
    got = _read_in_chunks(FS, path, "csv", stride=16, block_size=block_size, cuts=cuts)
    assert_frame_equal(got.to_pandas(), pd.read_csv(path))


def test_index_is_independent_of_block_size(tmp_path):
    path = _write(tmp_path, "mixed.csv", _mixed_csv(200, eol="\r\n"))
    small = index_text_file(FS, path, "csv", OPTS, stride=3, block_size=64)
    for block_size in (1, 7, 4096, 8 << 20):
        assert index_text_file(FS, path, "csv", OPTS, stride=3, block_size=block_size) == small
    assert small.rows == 200 and small.newlines_in_values
    assert small.header == b"id,x,name,flag\r\n"


def test_quoted_newlines_and_doubled_quotes_across_blocks(tmp_path):
    rows = [f'{i},"line one\nline ""two"" {"x" * (i % 70)}\n",{i * 1.5}' for i in range(40)]
    path = _write(tmp_path, "q.csv", "a,text,b\n" + "\n".join(rows) + "\n")
    index = index_text_file(FS, path, "csv", OPTS, stride=4, block_size=64)
    assert index.rows == 40 and index.newlines_in_values
    got = _read_in_chunks(FS, path, "csv", stride=4, block_size=64, cuts=[3, 4, 5, 17, 39])
    expected = pd.read_csv(path)
    assert_frame_equal(got.to_pandas(), expected)
    assert expected["text"][3] == 'line one\nline "two" xxx\n'


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("trailing", [False, True])
def test_line_endings_bom_blank_lines_and_no_trailing_newline(tmp_path, eol, bom, trailing):
    lines = ["a,b,c", "", "1,x,2.5", "2,y,3.5", "", "", '3,"z' + eol + 'w",4.5', "4,v,5.5"]
    text = eol.join(lines) + (eol if trailing else "")
    path = _write(tmp_path, "f.csv", (b"\xef\xbb\xbf" if bom else b"") + text.encode())
    index = index_text_file(FS, path, "csv", OPTS, stride=2, block_size=5)
    assert index.rows == 4
    assert index.header == ("a,b,c" + eol).encode()
    assert index.end == index.size
    got = _read_in_chunks(FS, path, "csv", stride=2, block_size=5, cuts=[1, 3])
    assert_frame_equal(got.to_pandas(), pd.read_csv(path))


def test_trailing_blank_lines_are_not_records(tmp_path):
    path = _write(tmp_path, "t.csv", "a\n1\n2\n\n\r\n\n")
    index = index_text_file(FS, path, "csv", OPTS, stride=1)
    assert (index.rows, index.offsets, index.end) == (2, (2, 4), 6)


def test_semicolon_delimiter(tmp_path):
    path = _write(tmp_path, "semi.csv", _mixed_csv(120, sep=";"))
    options = TextOptions.from_mapping({"delimiter": ";"})
    got = _read_in_chunks(FS, path, "csv", options, stride=5, block_size=100, cuts=[10, 11, 99])
    assert_frame_equal(got.to_pandas(), pd.read_csv(path, sep=";"))


def test_jsonl_matches_pandas(tmp_path):
    rng = random.Random(3)
    records = [
        {"id": i, "score": rng.uniform(0, 1), "name": f'n{i} "q"\nx', "ok": i % 3 == 0} for i in range(300)
    ]
    text = "".join(json.dumps(r) + ("\n\n   \n" if i % 50 == 0 else "\n") for i, r in enumerate(records))
    path = _write(tmp_path, "r.jsonl", text.rstrip("\n"))
    index = index_text_file(FS, path, "jsonl", OPTS, stride=8, block_size=64)
    assert (index.rows, index.header, index.newlines_in_values) == (300, b"", False)
    got = _read_in_chunks(FS, path, "jsonl", stride=8, block_size=64, cuts=[1, 8, 9, 150, 299])
    assert_frame_equal(got.to_pandas(), pd.read_json(io.StringIO(text), lines=True))


def test_jsonl_field_in_one_record_is_typed_from_the_whole_file(tmp_path):
    lines = [json.dumps({"a": i} if i != 30 else {"a": i, "surprise": "x"}) for i in range(100)]
    path = _write(tmp_path, "s.jsonl", "\n".join(lines) + "\n")
    index = index_text_file(FS, path, "jsonl", OPTS, stride=4)
    # every row is typed (here in ranges of ~100 bytes, 2 at a time), not samples: row 30 is seen
    schema = infer_text_schema(FS, path, index, OPTS, span_bytes=100, threads=2)
    assert schema.names == ["a", "surprise"]
    table = read_text_rows(FS, path, index, 28, 31, schema, OPTS)
    assert table["surprise"].to_pylist() == [None, None, "x"]
    # a schema without the field (fixed by another file of the source) still fails naming the fix
    narrow = pa.schema([("a", pa.int64())])
    assert read_text_rows(FS, path, index, 0, 28, narrow, OPTS).num_rows == 28
    with pytest.raises(DataCorruptionError, match=r"s\.jsonl.*surprise.*column_types"):
        read_text_rows(FS, path, index, 28, 31, narrow, OPTS)
    declared = TextOptions(column_types={"surprise": "string", "extra": "int64"})
    schema = infer_text_schema(FS, path, index, declared, span_bytes=100)
    assert schema.names == ["a", "surprise", "extra"]  # a declared field the file lacks is appended
    table = read_text_rows(FS, path, index, 28, 31, schema, declared)
    assert table["surprise"].to_pylist() == [None, None, "x"] and table["extra"].null_count == 3


# ---------------------------------------------------------------- schema inference


def test_int_column_with_a_float_only_at_the_end_becomes_float64(tmp_path):
    n = 30_000
    values = [str(i) for i in range(n - 1)] + ["0.5"]
    words = ["7"] * (n - 1) + ["seven"]
    body = "".join(f"{v},{w},{i}\n" for i, (v, w) in enumerate(zip(values, words, strict=True)))
    path = _write(tmp_path, "late.csv", "v,w,k\n" + body)
    index = index_text_file(FS, path, "csv", OPTS)
    schema = infer_text_schema(FS, path, index, OPTS)
    assert schema == pa.schema([("v", pa.float64()), ("w", pa.string()), ("k", pa.int64())])
    tail = read_text_rows(FS, path, index, n - 2, n, schema, OPTS)
    assert tail.to_pydict() == {"v": [n - 2.0, 0.5], "w": ["7", "seven"], "k": [n - 2, n - 1]}


def test_merge_types():
    ts = pa.timestamp
    assert merge_types(pa.null(), pa.int64()) == pa.int64()
    assert merge_types(pa.int64(), pa.float64()) == pa.float64()
    assert merge_types(pa.float64(), pa.string()) == pa.string()
    assert merge_types(ts("s"), pa.string()) == pa.string()
    assert merge_types(ts("s"), ts("ns")) == ts("ns")
    assert merge_types(ts("s"), ts("s", tz="UTC")) == pa.string()
    assert merge_types(pa.bool_(), pa.int64()) == pa.string()  # "true" is not an int64
    assert merge_types(pa.date32(), ts("s")) == pa.string()
    assert merge_types(pa.struct([("a", pa.int64())]), pa.struct([("b", pa.string())])) == pa.struct(
        [("a", pa.int64()), ("b", pa.string())]
    )


def test_declared_column_types_override_inference(tmp_path):
    path = _write(tmp_path, "d.csv", "id,amount,when\n1,2,2024-01-01 10:00:00\n2,3.5,2024-01-02 11:00:00\n")
    options = TextOptions.from_mapping({"column_types": {"id": "string", "when": "timestamp[us]"}})
    index = index_text_file(FS, path, "csv", options)
    schema = infer_text_schema(FS, path, index, options)
    assert schema == pa.schema([("id", pa.string()), ("amount", pa.float64()), ("when", pa.timestamp("us"))])
    assert read_text_rows(FS, path, index, 0, 2, schema, options)["id"].to_pylist() == ["1", "2"]


def test_declared_column_not_in_header_is_a_config_error(tmp_path):
    path = _write(tmp_path, "d.csv", "id,amount\n1,2\n")
    options = TextOptions(column_types={"amonut": "float64"})
    index = index_text_file(FS, path, "csv", options)
    with pytest.raises(ConfigError, match=r"'amonut'.*d\.csv"):
        infer_text_schema(FS, path, index, options)


# ---------------------------------------------------------------- errors


def test_malformed_row_names_file_row_and_fix(tmp_path):
    path = _write(tmp_path, "bad.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(20)) + "7,8,9\n1,2\n")
    index = index_text_file(FS, path, "csv", OPTS, stride=4)
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    assert read_text_rows(FS, path, index, 0, 20, schema, OPTS).num_rows == 20
    with pytest.raises(DataCorruptionError) as err:
        read_text_rows(FS, path, index, 18, 22, schema, OPTS)
    message = str(err.value)
    assert "bad.csv" in message and "records 16-22" in message and "data row 21" in message
    assert "Expected 2 columns, got 3" in message and "'delimiter'" in message


def test_unconvertible_value_suggests_declaring_the_type(tmp_path):
    path = _write(tmp_path, "conv.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(10)) + "10,oops\n")
    index = index_text_file(FS, path, "csv", OPTS)
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    expected = r"conv\.csv.*data row 11.*<text:4>.*'column_types': \{'b'"
    with pytest.raises(DataCorruptionError, match=expected) as info:
        read_text_rows(FS, path, index, 0, 11, schema, OPTS)
    assert "oops" not in str(info.value) and "oops" not in str(info.value.__cause__)  # values never shown
    from airflow_batch_provider.engine.redaction import log_row_values

    with log_row_values(True), pytest.raises(DataCorruptionError, match=r"data row 11.*'oops'"):
        read_text_rows(FS, path, index, 0, 11, schema, OPTS)  # unless the deployment asks for them


def test_stray_quote_is_never_a_silent_shift(tmp_path):
    # the quote inside an unquoted field is literal for pyarrow but flips the index's parity
    path = _write(tmp_path, "stray.csv", 'a,b\n1,x"y\n2,z\n3,w"\n4,v\n')
    index = index_text_file(FS, path, "csv", OPTS, stride=1)
    assert index.rows == 2
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    with pytest.raises(DataCorruptionError, match=r"stray\.csv.*parsed into 3 rows, but the index found 1"):
        read_text_rows(FS, path, index, 0, 1, schema, OPTS)


def test_unterminated_quote_names_file_and_offset(tmp_path):
    path = _write(tmp_path, "open.csv", 'a,b\n1,"fine"\n2,"never closed\n3,x\n')
    with pytest.raises(DataCorruptionError, match=r"open\.csv.*unterminated.*byte 13 \(line 3\)"):
        index_text_file(FS, path, "csv", OPTS, block_size=4)


def test_bare_carriage_return_is_rejected(tmp_path):
    path = _write(tmp_path, "mac.csv", "a,b\r1,2\r3,4\r")
    with pytest.raises(DataCorruptionError, match=r"mac\.csv.*byte 3"):
        index_text_file(FS, path, "csv", OPTS)
    path = _write(tmp_path, "ok.csv", 'a,b\r\n1,"2\r3"\r\n')  # inside quotes it is data
    assert index_text_file(FS, path, "csv", OPTS, block_size=2).rows == 1


def test_file_changed_after_indexing(tmp_path):
    path = _write(tmp_path, "c.csv", "a\n1\n2\n")
    index = index_text_file(FS, path, "csv", OPTS)
    _write(tmp_path, "c.csv", "a\n1\n")
    with pytest.raises(DataCorruptionError, match=r"c\.csv.*changed"):
        read_text_rows(FS, path, index, 0, 2, pa.schema([("a", pa.int64())]), OPTS)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(SourceError, match="nope.csv"):
        index_text_file(FS, str(tmp_path / "nope.csv"), "csv", OPTS)
    with pytest.raises(SourceError, match="'xml'"):
        index_text_file(FS, str(tmp_path / "nope.csv"), "xml", OPTS)


# ---------------------------------------------------------------- edge files


@pytest.mark.parametrize(
    ("name", "data", "names"),
    [
        ("empty.csv", b"", []),
        ("bom.csv", b"\xef\xbb\xbf", []),
        ("header.csv", b"a,b\n", ["a", "b"]),
        ("header_no_eol.csv", b"\xef\xbb\xbfa,b", ["a", "b"]),
        ("header_blank.csv", b"a,b\r\n\r\n\n", ["a", "b"]),
        ("empty.jsonl", b"\n  \n", []),
    ],
)
def test_empty_and_header_only_files(tmp_path, name, data, names):
    path = _write(tmp_path, name, data)
    fmt = "jsonl" if name.endswith("jsonl") else "csv"
    index = index_text_file(FS, path, fmt, OPTS)
    assert (index.rows, index.offsets, index.size) == (0, (), len(data))
    assert index.end == index.data_start
    if names:
        assert index.header == b"a,b" + (b"\r\n" if b"\r" in data else b"\n")
    assert infer_text_schema(FS, path, index, OPTS).names == names
    assert read_text_rows(FS, path, index, 0, 0, pa.schema([]), OPTS).num_rows == 0


def test_three_mib_field(tmp_path):
    big = "x" * (3 << 20)
    path = _write(tmp_path, "big.csv", f'id,blob,n\n1,small,1\n2,"{big}",2\n3,"a\n{big}",3\n')
    index = index_text_file(FS, path, "csv", OPTS, stride=1, block_size=1 << 16)
    assert index.rows == 3
    schema = infer_text_schema(FS, path, index, OPTS)
    assert schema.field("blob").type == pa.string()
    table = read_text_rows(FS, path, index, 1, 3, schema, OPTS)
    assert table["blob"].to_pylist() == [big, "a\n" + big]
    assert table["n"].to_pylist() == [2, 3]


def test_memory_filesystem():
    fs = fsspec.filesystem("memory")
    rows = b"".join(b"%d,%d.5\r\n" % (i, i) for i in range(50))
    fs.pipe("/textformats-test/m.csv", b"\xef\xbb\xbfk,v\r\n" + rows)
    fs.pipe("/textformats-test/m.jsonl", b"".join(b'{"k": %d}\n' % i for i in range(50)))
    try:
        csv = _read_in_chunks(fs, "/textformats-test/m.csv", "csv", stride=8, block_size=32, cuts=[9, 30])
        assert csv.to_pydict() == {"k": list(range(50)), "v": [i + 0.5 for i in range(50)]}
        jsonl = _read_in_chunks(fs, "/textformats-test/m.jsonl", "jsonl", stride=8, cuts=[9, 30])
        assert jsonl["k"].to_pylist() == list(range(50))
    finally:
        fs.rm("/textformats-test", recursive=True)


def _reference_starts(data: bytes, csv: bool) -> list[int]:
    """Slow, obviously right record splitter for the randomized test."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    records, start, quoted = [], pos, False
    for i in range(pos, len(data)):
        if csv and data[i] == ord('"'):
            quoted = not quoted
        elif data[i] == ord("\n") and not quoted:
            records.append((start, i + 1))
            start = i + 1
    records.append((start, len(data)))
    blank = b"\r\n" if csv else b"\r\n \t"
    starts = [a for a, b in records if data[a:b].strip(blank)]
    return starts[1:] if csv else starts


def test_randomized_against_reference_splitter():
    rng = random.Random(7)
    fs = fsspec.filesystem("memory")
    cells = ['"a\nb"', '"x""y"', '""', '"\r\n"', "7", "", '"q,"']
    jsons = ['{"a": 1}', '  {"a": 2}', '{"a": "x\\ny"}', " ", "\t", "", "\r"]
    try:
        for _ in range(150):
            csv = rng.random() < 0.6
            rows = [
                ",".join(rng.choice(cells) for _ in range(3)) if csv else rng.choice(jsons)
                for _ in range(rng.randint(0, 10))
            ]
            eol = rng.choice(["\n", "\r\n"])
            text = ("h1,h2,h3" + eol if csv else "") + eol.join(rows) + rng.choice(["", eol])
            data = rng.choice([b"", b"\xef\xbb\xbf"]) + text.encode()
            fs.pipe("/textformats-rand/f", data)
            expected = _reference_starts(data, csv)
            stride = rng.randint(1, 3)
            for block_size in (1, 3, 64):
                index = index_text_file(
                    fs,
                    "/textformats-rand/f",
                    "csv" if csv else "jsonl",
                    OPTS,
                    stride=stride,
                    block_size=block_size,
                )
                assert index.offsets == tuple(expected[::stride]), (data, block_size)
    finally:
        fs.rm("/textformats-rand", recursive=True)


# ---------------------------------------------------------------- options and index round trips


def test_options_from_mapping_and_to_dict():
    options = TextOptions.from_mapping({"delimiter": "\\t", "column_types": {"a": "int64"}})
    assert options.delimiter == "\t"
    assert TextOptions.from_mapping(json.loads(json.dumps(options.to_dict()))) == options
    assert TextOptions.from_mapping(None) == TextOptions()
    with pytest.raises(ConfigError, match=r"'delimeter'.*delimiter, quote_char, encoding, column_types"):
        TextOptions.from_mapping({"delimeter": ";"})
    assert TextOptions(encoding="latin-1").transcode  # single-byte ASCII-compatible: read directly
    assert TextOptions(encoding="utf-16").encoding == "utf-16"  # read by code unit (test_text_wide_encodings)
    with pytest.raises(ConfigError, match="'shift_jis'.*iconv"):
        TextOptions(encoding="shift_jis")
    full = TextOptions(null_values=["-"], keep_default_null_values=False, decimal=",", thousands=".")
    assert TextOptions.from_mapping(json.loads(json.dumps(full.to_dict()))) == full
    with pytest.raises(ConfigError, match="not a pyarrow type"):
        TextOptions(column_types={"a": "integer64"})
    with pytest.raises(ConfigError, match="delimiter"):
        TextOptions(delimiter=";;")
    assert TextOptions(encoding="utf-8-sig").encoding == "utf-8-sig"


def test_index_dict_round_trip(tmp_path):
    path = _write(tmp_path, "r.csv", b"\xef\xbb\xbf\xc3\xa9t\xc3\xa9,b\n1,2\n3,4\n")
    index = index_text_file(FS, path, "csv", OPTS, stride=1)
    assert index.header == "été,b\n".encode()
    assert TextIndex.from_dict(json.loads(json.dumps(index.to_dict()))) == index
    with pytest.raises(ValueError, match="missing"):
        TextIndex.from_dict({})
