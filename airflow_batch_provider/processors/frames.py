"""Chunk frames in the three forms a processor may ask for (``input_format``), and conversions between them.

``"pandas"`` (the default), ``"arrow"`` (a ``pyarrow.Table``) or ``"polars"`` (a ``polars.DataFrame`` built
from the Arrow table without a pandas copy). Row outputs may be any of the three (:func:`to_arrow` turns them
into the table that is written). Heavy libraries are imported inside the functions. No Airflow imports.

Types are never lost on the way to pandas and back (:func:`to_pandas`, :func:`restore_types`): numbers,
booleans, text, timestamps (in their own unit: ``s``/``ms``/``us``/``ns``, so year 52951 or 1600 fit) and
durations get pandas' own dtypes; an integer column with nulls a nullable ``Int64``-style dtype (never float64,
which rounds above 2**53); types no numpy dtype holds exactly (nested lists, structs, maps, decimals, dates,
times, large and fixed-size binary) a ``pd.ArrowDtype``. A row output column that still has the pandas dtype
its source column came in is written back with the source's exact Arrow type.
"""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.exceptions import ConfigError

INPUT_FORMATS = ("pandas", "arrow", "polars")
#: the fixed seed of the 64-bit hashes polars computes for distinct counts and duplicate keys (the hash is stable
#: within one polars version; the job fingerprint records the version, so an upgrade restarts clean)
HASH_SEED = 0x243F6A8885A308D3


def check_input_format(value: Any, where: str = "input_format") -> str:
    """``value`` if it is one of :data:`INPUT_FORMATS`, else ``ValueError`` naming them."""
    if value not in INPUT_FORMATS:
        raise ConfigError(f"{where}={value!r}: use one of {', '.join(repr(f) for f in INPUT_FORMATS)}")
    if value == "polars":
        import importlib.util

        if importlib.util.find_spec("polars") is None:  # found without importing it (parse time stays light)
            raise ConfigError(
                f"{where}='polars' needs polars, which is not installed: "
                "pip install 'airflow-batch-provider[polars]'"
            )
    return str(value)


def kind_of_frame(frame: Any) -> str:
    """``"arrow"``, ``"polars"`` or ``"pandas"`` (anything else is treated as pandas)."""
    module = type(frame).__module__ or ""
    if module.startswith("pyarrow"):
        return "arrow"
    if module.startswith("polars"):
        return "polars"
    return "pandas"


def to_arrow(frame: Any, schema: Any = None, dictionaries: Any = None) -> Any:
    """A ``pyarrow.Table`` of ``frame`` (a table, record batch, polars or pandas DataFrame); ``schema``: the
    source's, whose types columns converted from it get back (:func:`restore_types`); ``dictionaries``: the
    chunk's own dictionaries (:func:`chunk_dictionaries`), which its dictionary columns get back."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if kind_of_frame(frame) == "polars":
        return restore_types(_signed_dictionaries(frame.to_arrow()), schema, dictionaries)
    return restore_types(pa.Table.from_pandas(frame, preserve_index=False), schema, dictionaries)


def chunk_dictionaries(table: Any) -> dict[str, Any]:
    """``{column: dictionary}`` of a chunk's unordered dictionary columns whose chunks share one dictionary
    (small: the distinct values, never the rows), for :func:`restore_types`."""
    import pyarrow as pa

    out = {}
    for i, f in enumerate(table.schema):
        if not pa.types.is_dictionary(f.type) or f.type.ordered:
            continue
        chunks = table.column(i).chunks
        if chunks and all(c.dictionary.equals(chunks[0].dictionary) for c in chunks[1:]):
            out[f.name] = chunks[0].dictionary
    return out


def _encoded_like(col: Any, dictionary: Any) -> Any:
    """A dictionary column re-encoded on ``dictionary`` (the source chunk's), when its values are all in it and
    its own dictionary differs (polars builds dictionaries in the order values appear); else ``col``. The
    values do not change, only the codes: ``pq.read_table`` of the output then equals the input's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if not pa.types.is_dictionary(t) or t.ordered or t.value_type != dictionary.type:
        return col
    if all(c.dictionary.equals(dictionary) for c in col.chunks):
        return col
    values = col.cast(t.value_type)
    codes = pc.index_in(values, value_set=dictionary, skip_nulls=True)
    if codes.null_count != values.null_count:  # a value the source chunk did not have: keep polars' codes
        return col
    codes = codes.cast(t.index_type)
    return pa.chunked_array([pa.DictionaryArray.from_arrays(c, dictionary) for c in codes.chunks], t)


def _signed_dictionaries(table: Any) -> Any:
    """polars writes Categorical/Enum columns as dictionaries with ``uint32`` indices, which pyarrow before 17
    cannot convert to pandas ("unsigned dictionary indices ... not yet supported"): cast them to ``int32``
    (the values and the order of the dictionary are unchanged)."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type) and pa.types.is_unsigned_integer(f.type.index_type):
            target = pa.dictionary(
                pa.int32() if f.type.index_type.bit_width <= 32 else pa.int64(), f.type.value_type
            )
            table = table.set_column(i, f.name, table.column(i).cast(target))
    return table


def arrow_dtype_only(arrow_type: Any) -> bool:
    """True for the Arrow types pandas' own dtypes cannot hold exactly (converted to ``pd.ArrowDtype``):
    nested, decimal, date, time, large/fixed-size/view binary, union, extension types."""
    import pyarrow as pa

    t = pa.types
    return bool(
        t.is_nested(arrow_type)
        or t.is_decimal(arrow_type)
        or t.is_date(arrow_type)
        or t.is_time(arrow_type)
        or t.is_large_binary(arrow_type)
        or t.is_fixed_size_binary(arrow_type)
        or t.is_binary_view(arrow_type)
        or isinstance(arrow_type, pa.ExtensionType)
    )


def _masked_int(arrow_type: Any) -> Any:
    import pandas as pd

    return pd.api.types.pandas_dtype(str(arrow_type).capitalize().replace("Uint", "UInt"))


def _column_to_pandas(col: Any) -> Any:
    """One Arrow column as a pandas Series by the rules of :func:`to_pandas`, or None for pyarrow's own."""
    import pandas as pd
    import pyarrow as pa

    t = col.type
    if arrow_dtype_only(t):
        return col.to_pandas(types_mapper=pd.ArrowDtype)
    if pa.types.is_integer(t) and col.null_count:
        return col.to_pandas(types_mapper={t: _masked_int(t)}.get)
    return None


def arrow_to_pandas(table: Any) -> Any:
    """An Arrow table as a pandas DataFrame that holds every value (see the module docstring)."""
    import pandas as pd

    special = {}
    for i, col in enumerate(table.columns):
        series = _column_to_pandas(col)
        if series is not None:
            special[i] = series
    if not special:
        return table.to_pandas()
    plain = [i for i in range(table.num_columns) if i not in special]
    frame = table.select(plain).to_pandas() if plain else pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for i in sorted(special):
        frame.insert(i, table.column_names[i], special[i].set_axis(frame.index), allow_duplicates=True)
    return frame


def arrow_to_pandas_column(values: Any) -> Any:
    """One Arrow column as the pandas Series a chunk's column would be (:func:`arrow_to_pandas`)."""
    import pyarrow as pa

    return arrow_to_pandas(pa.table({"v": values}))["v"]


def pandas_dtypes(schema: Any) -> Any:
    """The pandas dtype of every column of ``schema`` as :func:`to_pandas` gives it (for ``validate``)."""
    return arrow_to_pandas(schema.empty_table()).dtypes


def to_pandas(frame: Any) -> Any:
    kind = kind_of_frame(frame)
    if kind == "arrow":
        import pyarrow as pa

        return arrow_to_pandas(pa.Table.from_batches([frame]) if isinstance(frame, pa.RecordBatch) else frame)
    if kind == "polars":
        return arrow_to_pandas(to_arrow(frame))
    return frame


def _wide(arrow_type: Any) -> Any:
    """``arrow_type`` with 32-bit offsets widened, views as plain types and dictionary indices as int64: two
    types with one wide form differ only in layout, never in the values they hold."""
    import pyarrow as pa

    t = pa.types
    if t.is_string(arrow_type) or t.is_string_view(arrow_type):
        return pa.large_string()
    if t.is_binary(arrow_type) or t.is_binary_view(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return pa.large_binary()
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_list_view(arrow_type):
        return pa.large_list(_wide(arrow_type.value_type))
    if t.is_fixed_size_list(arrow_type):
        return pa.list_(_wide(arrow_type.value_type), arrow_type.list_size)
    if t.is_map(arrow_type):
        return pa.map_(_wide(arrow_type.key_type), _wide(arrow_type.item_type))
    if t.is_struct(arrow_type):
        return pa.struct([f.with_type(_wide(f.type)) for f in arrow_type])
    if t.is_dictionary(arrow_type):
        return pa.dictionary(pa.int64(), _wide(arrow_type.value_type))
    if t.is_time(arrow_type):  # polars has one time type (ns) and no seconds duration
        return pa.time64("ns")
    if t.is_duration(arrow_type):
        return pa.duration("ns")
    return arrow_type


def restore_types(table: Any, schema: Any, dictionaries: Any = None) -> Any:
    """``table`` with each column named like a column of ``schema`` cast back to that column's type when the
    trip through pandas or polars changed only its layout (``string`` -> ``large_string``, dictionary index
    width, ``list`` -> ``large_list``, fields of structs, maps and fixed-size lists alike, a time's or
    duration's unit) or made it all-null (``null``). Decided by the types alone, never by the values, so every
    chunk's part gets the same schema; a column a processor really changed is left alone. ``dictionaries``
    (:func:`chunk_dictionaries`): dictionary columns get the source chunk's dictionary back when their values
    all come from it (:func:`_encoded_like`)."""
    import pyarrow as pa

    if schema is None:
        return table
    wanted = {f.name: f.type for f in schema}
    for i, field in enumerate(table.schema):
        source = wanted.get(field.name)
        if source is None or field.type == source:
            continue
        if pa.types.is_null(field.type) or _wide(field.type) == _wide(source):
            try:
                table = table.set_column(i, field.name, table.column(i).cast(source))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # e.g. more categories than the source's index type counts: keep what came out
    for name, dictionary in (dictionaries or {}).items():
        i = table.schema.get_field_index(name)
        if i >= 0 and table.schema.field(i).type == wanted.get(name):
            table = table.set_column(i, name, _encoded_like(table.column(i), dictionary))
    return table


def to_polars(frame: Any) -> Any:
    pl = polars()
    if kind_of_frame(frame) == "polars":
        return frame
    return pl.from_arrow(_compact_fixed_size_lists(to_arrow(frame)), rechunk=False)


def _has_fixed_size_list(arrow_type: Any) -> bool:
    import pyarrow as pa

    t = pa.types
    if t.is_fixed_size_list(arrow_type):
        return True
    if t.is_list(arrow_type) or t.is_large_list(arrow_type):
        return _has_fixed_size_list(arrow_type.value_type)
    if t.is_map(arrow_type):
        return _has_fixed_size_list(arrow_type.key_type) or _has_fixed_size_list(arrow_type.item_type)
    if t.is_struct(arrow_type):
        return any(_has_fixed_size_list(f.type) for f in arrow_type)
    return False


def _compact_fixed_size_lists(table: Any) -> Any:
    """Columns holding a fixed-size list as fresh arrays (offset 0, exactly ``rows x size`` child values).
    polars refuses a fixed-size list array whose child is longer than that ("validity mask length must be
    equal to the number of values divided by size"), which is what every slice of one with nulls is (a chunk
    read from Parquet is a slice of a row group). polars converts record batch by record batch, slicing columns
    whose chunks end elsewhere, so the chunks are aligned first (zero-copy); ``take`` copies only these
    columns."""
    import numpy as np
    import pyarrow as pa

    wanted = [i for i, f in enumerate(table.schema) if _has_fixed_size_list(f.type)]
    if wanted:
        table = pa.Table.from_batches(table.to_batches(), table.schema)
    for i in wanted:
        f = table.schema.field(i)
        compact = [c.take(pa.array(np.arange(len(c), dtype=np.int64))) for c in table.column(i).chunks]
        table = table.set_column(i, f.name, pa.chunked_array(compact, f.type))
    return table


def convert(frame: Any, input_format: str) -> Any:
    """``frame`` in the form ``input_format`` names."""
    if input_format == "arrow":
        return to_arrow(frame)
    if input_format == "polars":
        return to_polars(frame)
    return to_pandas(frame)


def like(table: Any, original: Any) -> Any:
    """An Arrow ``table`` in the form ``original`` came in (row outputs keep the caller's frame type)."""
    kind = kind_of_frame(original)
    if kind == "arrow":
        return table
    if kind == "polars":
        return polars().from_arrow(table)
    return arrow_to_pandas(table)


def check_polars_types(schema: Any, where: str = "input_format='polars'") -> None:
    """A ``ConfigError`` naming the first column whose Arrow type polars cannot hold (e.g. ``decimal256``),
    found on a one-row null column of each type before any chunk (a polars panic cannot cross a worker)."""
    import pyarrow as pa

    pl = polars()
    for field in schema:
        try:
            pl.from_arrow(pa.table({field.name: pa.nulls(1, field.type)}))
        except BaseException as err:  # noqa: BLE001 - polars panics are BaseExceptions (pyo3 PanicException)
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            raise ConfigError(
                f"{where}: column {field.name!r} has type {field.type}, which polars cannot hold "
                f"({type(err).__name__}); use input_format='arrow' or 'pandas' (pd.ArrowDtype holds it)"
            ) from None


def polars() -> Any:
    """The polars module (imported on first use: DAG parsing and the job parent never need it)."""
    import polars as pl

    return pl
