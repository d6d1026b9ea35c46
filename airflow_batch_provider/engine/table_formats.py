"""Folders that hold a lakehouse table (Delta Lake, Apache Iceberg) are refused as sources.

Such a folder's Parquet files are not its table: the transaction log (``_delta_log/``) or the metadata files
(``metadata/*.metadata.json``) say which files are live, and files of removed rows, old versions and
compactions stay on disk until a vacuum. Reading the files raw would count deleted and superseded rows.
Until table support exists, :func:`refuse_table_folder` stops such a source at planning with a
:class:`~airflow_batch_provider.exceptions.SourceError` saying what it is and how to read it instead.

The folder itself and up to :data:`PARENT_LEVELS` of its parents are looked at (a partition folder such as
``table/date=2026-01-01/`` is part of the table above it). No Airflow imports.
"""

from __future__ import annotations

import posixpath
from typing import Any

from airflow_batch_provider.exceptions import SourceError

#: parents of a source folder looked at besides the folder itself (partition folders of a table)
PARENT_LEVELS = 3
_FIX = (
    "read the table through a lakehouse reader and give this job what it returns, e.g. a snapshot exported "
    "to Parquet ({export}) or a processor that reads the table itself; the Parquet files alone include "
    "removed rows and old versions"
)


def _table_kind(fs: Any, folder: str) -> str | None:
    """``"Delta Lake"`` / ``"Iceberg"`` when ``folder`` is the root of such a table, else None."""
    if fs.exists(posixpath.join(folder, "_delta_log")):
        return "Delta Lake"
    metadata = posixpath.join(folder, "metadata")
    if fs.exists(metadata) and fs.glob(posixpath.join(metadata, "*.metadata.json")):
        return "Iceberg"
    return None


def _folders(path: str, levels: int) -> list[str]:
    out = [path.rstrip("/") or "/"]
    for _ in range(levels):
        parent = posixpath.dirname(out[-1])
        if not parent or parent == out[-1]:
            break  # the filesystem's root, or an object store's bucket
        out.append(parent)
    return out


def refuse_table_folder(fs: Any, folder: str, uri: str, levels: int = PARENT_LEVELS) -> None:
    """Raise ``SourceError`` when ``folder`` (a source folder, or the fixed part of a glob) or one of its
    ``levels`` parents holds a Delta Lake or Iceberg table."""
    for candidate in _folders(folder, levels):
        kind = _table_kind(fs, candidate)
        if kind is None:
            continue
        marker = "_delta_log/" if kind == "Delta Lake" else "metadata/*.metadata.json"
        export = (
            "deltalake.DeltaTable(path).to_pyarrow_dataset(), or Spark/duckdb delta_scan"
            if kind == "Delta Lake"
            else "pyiceberg's table.scan().to_arrow(), or Spark/duckdb iceberg_scan"
        )
        article = "an" if kind == "Iceberg" else "a"
        where = "" if candidate == folder.rstrip("/") else " (the source lies inside it)"
        raise SourceError(
            f"source {uri}: {candidate} holds {article} {kind} table (it has {marker}){where}; reading its Parquet "
            f"files directly is not supported. Fix: {_FIX.format(export=export)}"
        )
