"""UTF-16 / UTF-32 text sources (issue #17): indexed on their code units, transcoded per range, so row
offsets stay the file's own bytes. Every case is compared with the same text in UTF-8 (the engine's own
result, and the profile / quality report of a whole job) and with ``pandas.read_csv(encoding=...)``."""

from __future__ import annotations

import codecs
import io
import json

import fsspec
import pandas as pd
import pyarrow as pa
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.textformats import TextOptions, index_text_file
from airflow_batch_provider.exceptions import DataCorruptionError
from tests.unit.engine.test_text_semantics import CORPUS, _assert_like_pandas, _engine

FS = fsspec.filesystem("file")

# (label, codec the text is encoded with, byte-order mark written first, csv_options encoding)
WIDE = [
    ("utf16le_bom", "utf-16-le", codecs.BOM_UTF16_LE, None),
    ("utf16be_bom", "utf-16-be", codecs.BOM_UTF16_BE, None),
    ("utf32le_bom", "utf-32-le", codecs.BOM_UTF32_LE, None),
    ("utf32be_bom", "utf-32-be", codecs.BOM_UTF32_BE, None),
    ("utf16_declared", "utf-16-le", b"", "utf-16"),  # no BOM: "utf-16" reads little-endian
    ("utf16be_declared", "utf-16-be", b"", "utf-16-be"),
    ("utf32_declared", "utf-32-le", b"", "utf-32"),
    ("bom_and_utf16_declared", "utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
]
TEXTS = {
    "empty_fields": CORPUS["empty_fields"][0].decode(),
    "every_default_marker": CORPUS["every_default_marker"][0].decode(),
    "quoted_newlines": CORPUS["quoted_newlines"][0].decode(),
    "long_field": CORPUS["long_field"][0].decode(),
    "non_ascii": 'id,name,v\n1,naïve ☕,1.5\n2,"😀 ""quoted"", and a comma",\n3,€,NA\n4,,-2\r\n\r\n5,日本語,3\n',
    "crlf_bools": "f,g\r\nTrue,true\r\n,false\r\nFalse,\r\n",
}


def _wide(text: str, codec: str, bom: bytes) -> bytes:
    return bom + text.encode(codec)


@pytest.mark.parametrize("text_name", sorted(TEXTS))
@pytest.mark.parametrize(("label", "codec", "bom", "declared"), WIDE, ids=[w[0] for w in WIDE])
def test_wide_text_reads_like_its_utf8_twin_and_like_pandas(tmp_path, text_name, label, codec, bom, declared):
    text = TEXTS[text_name]
    utf8, wide = tmp_path / "utf8.csv", tmp_path / f"{label}.csv"
    utf8.write_bytes(text.encode())
    wide.write_bytes(_wide(text, codec, bom))
    options = TextOptions(encoding=declared) if declared else TextOptions()
    got = _engine(wide, "csv", options, stride=2, span_bytes=64)
    assert got.equals(_engine(utf8, "csv", TextOptions(), stride=2, span_bytes=64))
    # pandas: "utf-16" / "utf-32" consume a BOM (and refuse a file without one); without a BOM, the exact codec
    pandas_encoding = codec[:6] if bom else codec
    _assert_like_pandas(got, pd.read_csv(io.BytesIO(wide.read_bytes()), encoding=pandas_encoding))


@pytest.mark.parametrize(("label", "codec", "bom", "declared"), WIDE[:4], ids=[w[0] for w in WIDE[:4]])
def test_wide_json_lines(tmp_path, label, codec, bom, declared):
    records = [{"a": 1, "s": "é😀"}, {"a": None, "s": "x\ny"}, {"s": ""}, {"a": 2.5, "s": None}] * 5
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n"
    utf8, wide = tmp_path / "u.jsonl", tmp_path / f"{label}.jsonl"
    utf8.write_bytes(text.encode())
    wide.write_bytes(_wide(text, codec, bom))
    got = _engine(wide, "jsonl", TextOptions(), stride=3, span_bytes=64)
    assert got.equals(_engine(utf8, "jsonl", TextOptions(), stride=3, span_bytes=64))
    assert got.num_rows == 20 and got.column("a").null_count == 10


def _source_text(rows: int) -> str:
    lines = ["id,amount,name,flag,when"]
    for i in range(rows):
        amount = "" if i % 11 == 0 else ("N/A" if i % 13 == 0 else f"{(i * 7919) % 1000 / 8:.3f}")
        name = "" if i % 17 == 0 else f'"Zoë {i % 23}, ☕"' if i % 5 == 0 else f"n{i % 31}"
        flag = ("true", "false", "")[i % 3]
        lines.append(f"{i},{amount},{name},{flag},2026-0{1 + i % 9}-1{i % 10}")
    return "\r\n".join(lines) + "\r\n"


RULES = [
    {"type": "not_null", "column": "amount"},
    {"type": "not_null", "column": "name", "severity": "warning"},
    {"type": "between", "column": "amount", "min": 0, "max": 100},
    {"type": "regex", "column": "name", "pattern": "^n[0-9]+$"},
    {"type": "unique", "column": "name"},
]


@pytest.mark.parametrize(
    ("label", "codec", "bom", "declared"),
    [WIDE[0], WIDE[3], WIDE[5]],
    ids=[WIDE[0][0], WIDE[3][0], WIDE[5][0]],
)
def test_a_job_over_a_wide_file_reports_what_the_utf8_file_does(tmp_path, label, codec, bom, declared):
    """data_profiling and data_quality over UTF-16/32 equal the UTF-8 file's, with chunks that start in the
    middle of the file (2 workers, uneven batch size): the row offsets of the transcoded ranges are exact."""
    text = _source_text(2_500)
    utf8, wide = tmp_path / "utf8.csv", tmp_path / f"{label}.csv"
    utf8.write_bytes(text.encode())
    wide.write_bytes(_wide(text, codec, bom))
    cfg = {"batch_size": 333, "max_concurrent_batches": 2}
    opts = {"encoding": declared} if declared else None
    for processor, kwargs in (("data_profiling", {}), ("data_quality", {"rules": RULES})):
        a = run_batch_job(utf8, processor, config=cfg, output_path=tmp_path / f"{processor}-8", **kwargs)
        b = run_batch_job(
            wide, processor, config=cfg, csv_options=opts, output_path=tmp_path / f"{processor}-w", **kwargs
        )
        assert a.rows_in == b.rows_in == 2_500 and a.chunks_total == b.chunks_total > 4
        assert json.dumps(a.report, sort_keys=True) == json.dumps(b.report, sort_keys=True), processor


def test_a_wide_file_cut_inside_a_code_unit_names_the_file(tmp_path):
    path = tmp_path / "cut.csv"
    path.write_bytes(_wide("a,b\n1,2\n", "utf-16-le", codecs.BOM_UTF16_LE)[:-1])
    with pytest.raises(
        DataCorruptionError, match=r"cut\.csv: 17 bytes is not a whole number of UTF-16-LE code units"
    ):
        index_text_file(FS, str(path), "csv", TextOptions())


def test_a_byte_order_mark_wins_over_a_declared_byte_codec(tmp_path, caplog):
    path = tmp_path / "bom.csv"
    path.write_bytes(_wide("a,b\n1,é\n", "utf-16-be", codecs.BOM_UTF16_BE))
    got = _engine(path, "csv", TextOptions(encoding="latin-1"))
    assert got.to_pydict() == {"a": [1], "b": ["é"]}
    table = pa.table({"a": [1], "b": ["é"]})
    assert got.equals(table)
