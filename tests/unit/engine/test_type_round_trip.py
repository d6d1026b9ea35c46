"""Every Arrow type family goes through the engine and comes back exactly (issue #23).

The corpus (``tests/type_corpus.py``: one file per family, nulls everywhere, data page v1 and v2, the legacy
2-level list/map layout, INT96 in and past 1677-2262) runs through the passthrough (an Arrow processor) and a
pandas callable returning its input, at a batch size that splits list columns across chunks: the parts read
back equal the input, types included.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job, sources
from airflow_batch_provider.exceptions import ConfigError, DataCorruptionError
from airflow_batch_provider.processors import frames
from airflow_batch_provider.storage import Location
from tests.type_corpus import (
    INT96_FAR,
    LEGACY,
    fixed_size_list_nulls,
    float16_kernels,
    read_exact,
    tables,
    write_corpus,
)

CONFIG = {"batch_size": 7, "max_concurrent_batches": 1, "retry_attempts": 0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("types") / "corpus")


def output_table(result) -> pa.Table:
    """The committed parts of a job, in manifest order, as one Arrow table (``read_output`` gives pandas)."""
    loc = Location.of(result.output_uri)
    return pa.concat_tables([pq.read_table(p) for p in sources.list_source_files(loc)])


def nan_as_null(table: pa.Table) -> pa.Table:
    """Float NaN as null: pandas holds both as NaN, so a pandas processor writes NaN back as null."""
    for i, f in enumerate(table.schema):
        if pa.types.is_floating(f.type):
            col = table.column(i)
            table = table.set_column(i, f.name, pc.if_else(pc.is_nan(col), pa.scalar(None, f.type), col))
    return table


def nan_positions(table: pa.Table) -> dict[str, list[bool]]:
    return {
        f.name: pc.fill_null(pc.is_nan(table.column(i)), False).to_pylist()
        for i, f in enumerate(table.schema)
        if pa.types.is_floating(f.type)
    }


def same(out: pa.Table, want: pa.Table) -> bool:
    """Equal types and values, NaN equal to NaN (``Table.equals`` holds NaN unequal to itself)."""
    return (
        out.schema.types == want.schema.types
        and nan_as_null(out).equals(nan_as_null(want))
        and nan_positions(out) == nan_positions(want)
    )


def test_the_corpus_covers_every_family(corpus):
    types = [f.type for path in corpus.values() for f in read_exact(path).schema]
    for check in (
        *((pa.types.is_float16,) if float16_kernels() else ()),
        pa.types.is_decimal128,
        pa.types.is_decimal256,
        pa.types.is_dictionary,
        pa.types.is_large_string,
        pa.types.is_large_binary,
        pa.types.is_fixed_size_binary,
        pa.types.is_list,
        pa.types.is_large_list,
        pa.types.is_fixed_size_list,
        pa.types.is_struct,
        pa.types.is_map,
        pa.types.is_duration,
        pa.types.is_date32,
        pa.types.is_time32,
        pa.types.is_time64,
        pa.types.is_uint64,
    ):
        assert any(check(t) for t in types), check.__name__
    units = {(t.unit, t.tz) for t in types if pa.types.is_timestamp(t)}
    assert {u for u, _ in units} == {"ms", "us", "ns"} and len(units) >= 9  # Parquet keeps seconds as ms
    for stem in ("int96-v1", "int96-v2", *INT96_FAR):  # use_deprecated_int96_timestamps=True
        assert pq.ParquetFile(corpus[stem]).schema.column(2).physical_type == "INT96", stem
    for stem, path in corpus.items():  # data page v1 and v2: the type of the first data page
        version = stem.rsplit("-v", 1)[-1] if "-v" in stem else "1"
        assert first_page_type(path) == {"1": 0, "2": 3}[version], stem  # DATA_PAGE / DATA_PAGE_V2
    assert pq.ParquetFile(corpus["lists_2level"]).schema_arrow.field("li").type.value_field.name == "item"


def first_page_type(path) -> int:
    """The ``type`` of the first data page of the file's first column: the Thrift compact PageHeader starts
    with field 1 (i32, header byte 0x15) holding the zigzag-encoded type (0 DATA_PAGE, 3 DATA_PAGE_V2)."""
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(2)
    assert head[0] == 0x15, head
    return head[1] >> 1


@pytest.mark.parametrize("name", [*sorted(tables()), *sorted(set(LEGACY) - {"int96"})])
def test_passthrough_writes_back_exactly_what_it_read(name, corpus, tmp_path):
    for path in [p for stem, p in corpus.items() if stem == name or stem.startswith(f"{name}-v")]:
        result = run_batch_job(str(path), "passthrough", config=CONFIG, output_path=tmp_path / path.stem)
        out, want = output_table(result), read_exact(path)
        assert out.schema.types == want.schema.types, path.stem
        assert same(out, want), path.stem
        assert result.report == {"rows": want.num_rows}


def identity(df, ctx):
    return df


def test_a_pandas_processor_returning_its_input_writes_back_the_arrow_types(corpus, tmp_path):
    for stem, path in sorted(corpus.items()):
        result = run_batch_job(str(path), identity, config=CONFIG, output_path=tmp_path / stem)
        out, want = output_table(result), read_exact(path)
        assert out.schema.types == want.schema.types, stem
        assert out.equals(nan_as_null(want)), stem


def test_int96_past_2262_is_read_in_microseconds_not_wrapped_around(corpus):
    for stem in INT96_FAR:
        wrapped = pq.read_table(corpus[stem])
        assert wrapped.schema.field("ts96").type == pa.timestamp("ns")  # pyarrow's default: values wrap
        files, schema = sources.build_plan(
            Location.of(str(corpus[stem])).fs,
            sources.stat_files(Location.of(str(corpus[stem])).fs, [str(corpus[stem])]),
            sources.textformats.TextOptions(),
        )
        assert schema.field("ts96").type == pa.timestamp("us")
        assert schema.field("nested96").type == pa.struct([("at", pa.timestamp("us"))])
        table = sources.read_rows(
            Location.of(str(corpus[stem])).fs,
            files[0],
            0,
            files[0].rows,
            schema,
            sources.textformats.TextOptions(),
        )
        assert table.column("ts96")[0].as_py() == dt.datetime(2500, 1, 1)
        assert table.column("ts96")[2].as_py() == dt.datetime(4500, 1, 1, 0, 0, 0, 2)
    # within 1677-2262 the type stays pyarrow's timestamp[ns], as pq.read_table reads it
    _, schema = sources.build_plan(
        Location.of(str(corpus["int96-v1"])).fs,
        sources.stat_files(Location.of(str(corpus["int96-v1"])).fs, [str(corpus["int96-v1"])]),
        sources.textformats.TextOptions(),
    )
    assert schema.field("ts96").type == pa.timestamp("ns") and sources.int96_unit(schema) is None


def test_an_int96_value_no_timestamp_holds_is_an_error_naming_file_column_and_row():
    """Past 2262 with nanoseconds: microseconds drop them, nanoseconds overflow. The check sees the wrapped
    nanoseconds pyarrow reads (exact modulo 2**64) next to the microseconds."""
    micro = pa.chunked_array([pa.array([0, 32_503_680_000_000_000], pa.timestamp("us"))])  # 1970, 3000
    true_ns = [0, 32_503_680_000_000_000 * 1000 + 7]
    wrapped = [((v + 2**63) % 2**64) - 2**63 for v in true_ns]
    nano = pa.chunked_array([pa.array(wrapped, pa.timestamp("ns"))])
    with pytest.raises(
        DataCorruptionError, match=r"f\.parquet: column 'ts' row 41: .*3000-01-01.* 7 ns.*INT64"
    ):
        sources._check_microseconds("f.parquet", "ts", 40, micro, nano)
    exact = pa.chunked_array(
        [
            pa.array(
                [((v - 7 * (i == 1)) + 2**63) % 2**64 - 2**63 for i, v in enumerate(true_ns)],
                pa.timestamp("ns"),
            )
        ]
    )
    sources._check_microseconds("f.parquet", "ts", 40, micro, exact)  # no sub-microsecond digits: fine


def test_pandas_conversion_holds_every_value():
    big = 2**62 + 1
    table = pa.table(
        {
            "big": pa.array([big, None], pa.int64()),
            "u": pa.array([2**64 - 1, None], pa.uint64()),
            "full": pa.array([1, 2], pa.int32()),
            "d": pa.array([dt.date(9999, 12, 31), None], pa.date32()),
            "far": pa.array([253402300800 * 5, None], pa.timestamp("s")),
            "dec": pa.array([None, None], pa.decimal128(38, 10)),
            "m": pa.array([[("a", 1)], None], pa.map_(pa.string(), pa.int64())),
            "cat": pa.array(["x", None]).dictionary_encode(),
        }
    )
    df = frames.to_pandas(table)
    assert df["big"].dtype == "Int64" and df["big"][0] == big  # not float64, which rounds above 2**53
    assert df["u"].dtype == "UInt64" and df["u"][0] == 2**64 - 1
    assert df["full"].dtype == np.int32  # no null in the chunk: pandas' own dtype
    assert isinstance(df["d"].dtype, pd.ArrowDtype) and isinstance(df["m"].dtype, pd.ArrowDtype)
    assert str(df["far"].dtype) == "datetime64[s]"  # its own unit: about year 40000, past pandas' ns
    assert df["far"][0] == pd.Timestamp(np.datetime64(253402300800 * 5, "s"))
    assert isinstance(df["cat"].dtype, pd.CategoricalDtype)
    back = frames.to_arrow(df, table.schema)
    assert back.schema.types == table.schema.types and back.equals(table)
    image = frames.pandas_dtypes(table.schema)  # what validate(schema) sees: the kinds of a chunk's dtypes
    assert [pd.api.types.is_integer_dtype(d) for d in image] == [
        pd.api.types.is_integer_dtype(d) for d in df.dtypes
    ]
    assert [str(d) for d in image][3:] == [str(d) for d in df.dtypes][3:]


def test_restore_types_is_decided_by_types_never_by_values():
    schema = pa.schema([("s", pa.string()), ("c", pa.dictionary(pa.int32(), pa.string())), ("n", pa.int64())])
    from_pandas = pa.table(
        {
            "s": pa.array(["a"], pa.large_string()),
            "c": pa.array(["a"]).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.large_string())),
            "n": pa.nulls(1),
        }
    )
    assert frames.restore_types(from_pandas, schema).schema == schema
    changed = pa.table({"s": pa.array([1.5]), "n": pa.array([0.5])})  # a processor made them numbers
    assert frames.restore_types(changed, schema).schema == changed.schema


def identity_polars(df, ctx):
    return df


identity_polars.input_format = "polars"


POLARS_REFUSED = ("decimals-v1", "decimals-v2")  # decimal256: test_a_type_polars_cannot_hold_is_refused...


def test_a_polars_processor_returning_its_input_writes_back_the_arrow_types(corpus, tmp_path):
    """polars widens strings, lists, fixed-size binary and time units and builds its own dictionaries: the
    layout-only changes are undone, so every corpus file (fixed-size lists with nulls, dictionaries, legacy
    layouts, INT96 included) comes back equal to its input."""
    for stem, path in sorted(corpus.items()):
        if stem in POLARS_REFUSED:
            continue
        result = run_batch_job(str(path), identity_polars, config=CONFIG, output_path=tmp_path / stem)
        out, want = output_table(result), read_exact(path)
        assert out.schema.types == want.schema.types, stem
        assert same(out, want), stem


def look(df, ctx):
    """The polars dtypes it was handed, as extra columns (chunks run in forked workers)."""
    import polars as pl

    return df.with_columns(
        pl.lit(str(df.schema["fsl"])).alias("seen_fsl"),
        pl.lit(df["fsl"].null_count()).alias("seen_nulls"),
        pl.lit(str(df.schema["dict_s"])).alias("seen_dict"),
    )


look.input_format = "polars"


def test_polars_gets_fixed_size_lists_as_arrays_and_dictionaries_as_categoricals(tmp_path):
    nulls = fixed_size_list_nulls()  # pyarrow < 17's Parquet writer has no null fixed-size list
    table = pa.table(
        {
            "fsl": pa.array(
                [None if i % 3 == 1 and nulls else [i, i + 1] for i in range(20)], pa.list_(pa.int64(), 2)
            ),
            "dict_s": pa.array([f"c{(i * 7) % 4}" for i in range(20)]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=8)
    result = run_batch_job(str(tmp_path / "in.parquet"), look, config=CONFIG, output_path=tmp_path / "out")
    out = output_table(result)
    assert out.select(["fsl", "dict_s"]).equals(pq.read_table(tmp_path / "in.parquet"))
    assert set(out.column("seen_fsl").to_pylist()) == {"Array(Int64, shape=(2,))"}
    assert set(out.column("seen_dict").to_pylist()) == {"Categorical"}
    per_chunk = [out.column("seen_nulls")[i].as_py() for i in (0, 7, 14)]
    assert per_chunk == ([2, 3, 2] if nulls else [0, 0, 0])  # rows 1, 4 / 7, 10, 13 / 16, 19


def test_chunk_dictionaries_come_back_only_when_the_values_fit():
    source = pa.array(["a", "b", "c", None]).dictionary_encode()
    dictionaries = frames.chunk_dictionaries(pa.table({"d": source}))
    own = pa.DictionaryArray.from_arrays(pa.array([1, 0, None], pa.int32()), pa.array(["c", "a"]))
    back = frames.restore_types(pa.table({"d": own}), pa.schema([("d", source.type)]), dictionaries)
    assert back.column("d").chunk(0).dictionary.equals(source.dictionary)
    assert back.column("d").to_pylist() == ["a", "c", None]
    new = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array(["a", "zz"]))  # "zz" is new
    kept = frames.restore_types(pa.table({"d": new}), pa.schema([("d", source.type)]), dictionaries)
    assert kept.column("d").chunk(0).dictionary.to_pylist() == ["a", "zz"]


def test_a_type_polars_cannot_hold_is_refused_before_any_chunk(corpus, tmp_path):
    with pytest.raises(
        ConfigError, match=r"column 'd256' has type decimal256\(50, 0\), which polars cannot hold"
    ):
        run_batch_job(str(corpus["decimals-v1"]), identity_polars, config=CONFIG, output_path=tmp_path)
    assert not list(tmp_path.rglob("parts/*.parquet"))


def test_rows_the_input_format_cannot_hold_are_bad_input_never_retried(corpus, tmp_path, monkeypatch, caplog):
    """A conversion error is the same on every try: a ConfigError naming the file, the rows and the column
    types after one attempt, not a retried chunk failure nor a data corruption (the bytes decoded fine)."""

    def refuse(table, input_format):
        raise pa.ArrowNotImplementedError(f"no conversion of {table.schema.types[-1]} for {input_format}")

    monkeypatch.setattr(frames, "convert", refuse)  # the forked chunk workers inherit it
    path = corpus["lists-v1"]
    match = r"lists-v1\.parquet rows 0-7: the rows cannot be handed to .*'li': 'list<element: int64>'"
    with pytest.raises(ConfigError, match=match):
        run_batch_job(str(path), identity, config={**CONFIG, "retry_attempts": 3}, output_path=tmp_path)
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert attempts and all("attempt 1 failed (configuration, fail)" in m for m in attempts), attempts


def test_read_output_holds_every_value(corpus, tmp_path):
    """``read_output`` converts like a pandas processor's chunks: dates past 9999, timestamps past 2262 and
    before 1677 (nested ones too), integers past 2**53 with nulls all come back; converted back to Arrow with
    the source's schema the frame equals the input."""
    for stem in ("far_dates-v1", "int96_far-v2", "structs-v1", "ints-v1", "lists-v2", "maps_2level"):
        path = corpus[stem]
        result = run_batch_job(str(path), "passthrough", config=CONFIG, output_path=tmp_path / stem)
        df, want = read_output(result.output_uri), read_exact(path)
        assert list(df.columns) == want.column_names and len(df) == want.num_rows, stem
        assert same(frames.to_arrow(df, want.schema), want), stem
    ints = read_output(tmp_path / "ints-v1")
    assert ints["big"].dtype == "Int64" and ints["big"].max() == 2**62 + 22  # float64 would round it
    dates = read_output(tmp_path / "far_dates-v1")
    assert str(dates["far_s"].dtype) == "datetime64[ms]" and dates["far_s"].max().year == 42_115
