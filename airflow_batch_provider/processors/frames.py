"""Chunk frames in the three forms a processor may ask for (``input_format``), and conversions between them.

``"pandas"`` (the default), ``"arrow"`` (a ``pyarrow.Table``) or ``"polars"`` (a ``polars.DataFrame`` built
from the Arrow table without a pandas copy). Row outputs may be any of the three (:func:`to_arrow` turns them
into the table that is written). Heavy libraries are imported inside the functions. No Airflow imports.
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


def to_arrow(frame: Any) -> Any:
    """A ``pyarrow.Table`` of ``frame`` (a table, record batch, polars or pandas DataFrame)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if kind_of_frame(frame) == "polars":
        return _signed_dictionaries(frame.to_arrow())
    return pa.Table.from_pandas(frame, preserve_index=False)


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


def to_pandas(frame: Any) -> Any:
    kind = kind_of_frame(frame)
    if kind == "arrow":
        return frame.to_pandas()
    if kind == "polars":
        return frame.to_pandas()
    return frame


def to_polars(frame: Any) -> Any:
    pl = polars()
    if kind_of_frame(frame) == "polars":
        return frame
    return pl.from_arrow(to_arrow(frame), rechunk=False)


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
    return table.to_pandas()


def polars() -> Any:
    """The polars module (imported on first use: DAG parsing and the job parent never need it)."""
    import polars as pl

    return pl
