"""Which columns a part dictionary-encodes (engine/parquet_out.py), and that the choice never changes values."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import parquet_out
from airflow_batch_provider.engine.workers import write_part
from airflow_batch_provider.storage import Location
from tests import type_corpus


def _encodings(path_or_buf: object) -> dict[str, tuple[str, ...]]:
    meta = pq.ParquetFile(path_or_buf).metadata
    rg = meta.row_group(0)
    return {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(rg.num_columns)}


def _table(rows: int = 10_000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "id": pa.array([f"ID-{i:010d}" for i in range(rows)]),  # every value distinct
            "amount": pa.array(rng.normal(100, 40, rows)),  # every value distinct
            "country": pa.array(rng.choice(["PL", "DE", "FR", None], rows).tolist()),  # 3 values and nulls
            "quantity": pa.array(rng.integers(1, 100, rows)),  # 99 values
            "code": pa.array(rng.choice(["a", "b"], rows)).dictionary_encode(),  # an Arrow dictionary
            "flag": pa.array(rng.random(rows) < 0.5),
            "tags": pa.array([["x", "y"][: i % 3] for i in range(rows)]),  # nested
            "empty": pa.nulls(rows, pa.string()),
        }
    )


def test_repeating_flat_columns_and_arrow_dictionaries_are_dictionary_encoded():
    assert parquet_out.dictionary_columns(_table()) == ["country", "quantity", "code"]


def test_a_column_whose_sample_is_mostly_distinct_is_not():
    # 2,048 sampled values of 3,000 distinct ones cycling: about 1,500 distinct in the sample, above half
    t = pa.table({"v": pa.array(np.arange(100_000) % 3_000)})
    assert parquet_out.dictionary_columns(t) == []
    t = pa.table({"v": pa.array(np.arange(100_000) % 500)})
    assert parquet_out.dictionary_columns(t) == ["v"]


def test_the_choice_is_deterministic_and_handles_tiny_and_empty_tables():
    t = _table()
    assert parquet_out.dictionary_columns(t) == parquet_out.dictionary_columns(t)
    assert parquet_out.dictionary_columns(t.slice(0, 0)) == ["code"]  # the Arrow dictionary only
    assert parquet_out.dictionary_columns(t.slice(0, 3)) == parquet_out.dictionary_columns(t.slice(0, 3))


def test_a_part_keeps_values_and_schema_and_dictionary_encodes_only_the_chosen_columns(tmp_path):
    t = _table()
    loc = Location.of(str(tmp_path / "part.parquet"))
    write_part(loc, t)
    back = pq.read_table(loc.path)
    assert back.equals(t, check_metadata=False)
    assert back.schema.equals(t.schema)
    enc = _encodings(loc.path)
    assert "RLE_DICTIONARY" in enc["country"] and "RLE_DICTIONARY" in enc["code"]
    assert "RLE_DICTIONARY" not in enc["id"] and "RLE_DICTIONARY" not in enc["amount"]


def test_the_default_writer_would_have_tried_a_dictionary_for_every_column():
    """The mutation check of the test above: pyarrow's default dictionary-encodes the id column."""
    buf = io.BytesIO()
    pq.write_table(_table(), buf, compression="snappy")
    buf.seek(0)
    assert "RLE_DICTIONARY" in _encodings(buf)["id"]


@pytest.mark.parametrize("name", sorted(type_corpus.tables()))
def test_every_corpus_table_round_trips_with_the_chosen_options(name):
    table = type_corpus.tables()[name]
    buf = io.BytesIO()
    pq.write_table(table, buf, **parquet_out.write_options(table))
    buf.seek(0)
    ours, default = pq.read_table(buf), pq.read_table(_default(table))
    assert ours.schema.equals(default.schema, check_metadata=True)
    assert ours.equals(default) or _values(ours) == _values(default)  # equals() is False with a NaN


def _values(table: pa.Table) -> list:
    """The rows as Python values, NaN as a marker (NaN != NaN)."""

    def fix(v: object) -> object:
        if isinstance(v, float) and v != v:
            return "NaN"
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(fix(x) for x in v)
        return v

    return [fix(row) for row in table.to_pylist()]


def _default(table: pa.Table) -> io.BytesIO:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    buf.seek(0)
    return buf
