"""In-memory sources: a pandas DataFrame, a polars DataFrame or a pyarrow Table, stored once in the job folder.

A frame cannot be re-read by a retry, a shard on another worker or a chunk worker, so the first run writes it to
the job folder as Parquet (``{job folder}/_input/frame-<sha256>.parquet``, row groups of
:data:`ROW_GROUP_ROWS` rows, fewer for wide rows, like any exported source) and the job then runs on that file
like on any source. The file name holds a hash of the frame's content (its Arrow IPC stream), so the job's
fingerprint changes when the data does, and only then:

- the same frame given again (a resumed ``run_batch_job``, an operator's retry pulling the same XCom) is hashed,
  found stored, and not written again; a frame with other content replaces the copy (and the job starts clean);
- :func:`stage` with ``reuse_only`` (shards) and :func:`stored_copy` (an operator whose ``source`` is a callable,
  on a retry) use the stored copy without the frame: the callable is not called again.

``_input/_source.json`` is written after the Parquet file is complete, and a copy is only trusted through it.
A pandas index with no name is dropped; a named index becomes columns, first (as ``reset_index()`` would).

No Airflow imports; pandas and polars are never imported here (a frame's type is recognised by its module).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from airflow_batch_provider.exceptions import ShardIncompleteError, SourceError
from airflow_batch_provider.storage import Location

log = logging.getLogger(__name__)

INPUT_DIR = "_input"
MARKER = "_source.json"
#: rows per row group of the stored copy (what typical Parquet exports and the demo data use) ...
ROW_GROUP_ROWS = 100_000
#: ... and at most this much Arrow data per row group, so wide rows give smaller groups
ROW_GROUP_BYTES = 64 * 2**20
MIN_ROW_GROUP_ROWS = 1_000
ACCEPTED = (
    "a path or URI (str or os.PathLike), an ObjectStoragePath, a pandas DataFrame, a polars DataFrame "
    "or a pyarrow Table"
)
_KINDS = {"pandas": "pandas.DataFrame", "polars": "polars.DataFrame", "arrow": "pyarrow.Table"}


@dataclass(frozen=True)
class StoredFrame:
    """The stored copy of an in-memory source: what a job reads instead of the frame."""

    location: Location
    sha256: str
    rows: int
    columns: int
    kind: str  # "pandas" | "polars" | "arrow"

    @property
    def uri(self) -> str:
        return self.location.uri

    def __repr__(self) -> str:
        return f"StoredFrame({self.uri!r}, {_KINDS.get(self.kind, self.kind)}, {self.rows} rows)"


def frame_kind(obj: Any) -> str | None:
    """``"pandas"``, ``"polars"`` or ``"arrow"`` for the frames a source may be, else None."""
    cls = type(obj)
    module = cls.__module__ or ""
    if module.startswith("pandas") and cls.__name__ == "DataFrame":
        return "pandas"
    if module.startswith("polars") and cls.__name__ == "DataFrame":
        return "polars"
    if module.startswith("pyarrow") and cls.__name__ == "Table":
        return "arrow"
    return None


def is_in_memory(obj: Any) -> bool:
    """A frame, or the stored copy of one."""
    return isinstance(obj, StoredFrame) or frame_kind(obj) is not None


def _is_path_like(obj: Any) -> bool:
    if isinstance(obj, (str, os.PathLike, Location)):
        return True
    return hasattr(obj, "fs") and hasattr(obj, "path")  # ObjectStoragePath, UPath


def check_source(source: Any, where: str = "source") -> None:
    """``SourceError`` naming the type and the accepted ones, unless ``source`` is a supported source."""
    if is_in_memory(source) or _is_path_like(source):
        return
    cls = type(source)
    hint = ""
    if callable(source):
        hint = (
            "; a callable source is called by the operators when the task runs (as "
            "make_source(context=..., jinja_env=...)): from Python, call it and pass the frame it returns"
        )
    elif cls.__name__ in ("LazyFrame", "Series", "RecordBatch", "ChunkedArray"):
        hint = "; collect or convert it to a DataFrame or Table first"
    raise SourceError(
        f"{where} of type {cls.__module__}.{cls.__qualname__} is not supported; a source is {ACCEPTED}{hint}"
    )


def to_arrow(frame: Any, kind: str | None = None) -> Any:
    """The ``pyarrow.Table`` of a frame; ``SourceError`` naming the column when a column cannot convert."""
    import pyarrow as pa

    kind = kind or frame_kind(frame)
    try:
        if kind == "arrow":
            return frame
        if kind == "polars":
            return frame.to_arrow()
        if all(n is None for n in frame.index.names):
            return pa.Table.from_pandas(frame, preserve_index=False)
        return _index_as_columns(pa.Table.from_pandas(frame, preserve_index=True))
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise SourceError(
            f"in-memory source ({_KINDS.get(kind or '', kind)}): cannot convert it to Arrow: {err}. Give each "
            "column one type (e.g. df[column] = df[column].astype(str) for mixed text and numbers)"
        ) from err


def _index_as_columns(table: Any) -> Any:
    """A table converted with its pandas index: the index columns first, as plain columns (``reset_index()``),
    so chunks converted back to pandas keep them as columns, not as an index."""
    meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
    index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    meta["index_columns"] = []
    table = table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
    return table.select(index + [n for n in table.column_names if n not in index])


class _HashSink:
    """A write-only file that only hashes what is written (for the Arrow IPC stream of a table)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        return len(view)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


def content_hash(table: Any) -> str:
    """sha256 (24 hex digits) of the table's Arrow IPC stream: its schema (with metadata) and its data."""
    import pyarrow as pa

    sink = _HashSink()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.digest.hexdigest()[:24]


def row_group_rows(table: Any) -> int:
    """Rows per row group of the stored copy: :data:`ROW_GROUP_ROWS`, fewer when rows are wide."""
    if not table.num_rows:
        return ROW_GROUP_ROWS
    per_row = max(1.0, table.nbytes / table.num_rows)
    return max(MIN_ROW_GROUP_ROWS, min(ROW_GROUP_ROWS, int(ROW_GROUP_BYTES / per_row)))


def stored_copy(job_folder: Any) -> StoredFrame | None:
    """The copy a job folder holds (its ``_input/_source.json`` and the file it names), or None."""
    folder = Location.of(job_folder).child(INPUT_DIR)
    marker = folder.child(MARKER).read_json()
    if not isinstance(marker, dict) or not isinstance(marker.get("file"), str) or "/" in marker["file"]:
        return None
    data = folder.child(marker["file"])
    if not data.exists():
        return None
    return StoredFrame(
        data,
        str(marker.get("sha256", "")),
        int(marker.get("rows", 0)),
        int(marker.get("columns", 0)),
        str(marker.get("kind", "")),
    )


def _write_parquet(table: Any, target: Location) -> None:
    """Write ``table`` as Parquet: locally to a temporary name renamed into place, on object storage as one
    upload (the object appears when it is complete)."""
    import pyarrow.parquet as pq

    from airflow_batch_provider.engine.parquet_out import write_options

    rows, options = row_group_rows(table), write_options(table)
    if target.is_local:
        target._make_parent()
        tmp = os.path.join(os.path.dirname(target.path), f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, tmp, row_group_size=rows, **options)
            os.replace(tmp, target.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    target._make_parent()
    with target.fs.open(target.path, "wb") as fh:
        pq.write_table(table, fh, row_group_size=rows, **options)


def store(frame: Any, job_folder: Any, kind: str | None = None) -> StoredFrame:
    """The frame's copy in ``{job_folder}/_input``: the stored one when its content hash matches, else a new one
    (older copies are removed)."""
    kind = kind or frame_kind(frame)
    if kind is None:
        check_source(frame)
        raise SourceError(f"source of type {type(frame).__name__} is not an in-memory frame")
    job = Location.of(job_folder)
    started = time.perf_counter()
    table = to_arrow(frame, kind)
    digest = content_hash(table)
    log.debug(
        "in-memory source (%s): %d rows x %d columns, %.1f MB in Arrow, content sha256 %s (%.2fs)",
        _KINDS[kind],
        table.num_rows,
        table.num_columns,
        table.nbytes / 2**20,
        digest,
        time.perf_counter() - started,
    )
    found = stored_copy(job)
    if found is not None and found.sha256 == digest:
        log.info(
            "in-memory source (%s, %d rows): the copy stored by an earlier run is reused: %s",
            _KINDS[kind],
            table.num_rows,
            found.uri,
        )
        return found
    folder = job.child(INPUT_DIR)
    name = f"frame-{digest}.parquet"
    started = time.perf_counter()
    _write_parquet(table, folder.child(name))
    folder.child(MARKER).write_json(
        {
            "file": name,
            "sha256": digest,
            "rows": table.num_rows,
            "columns": table.num_columns,
            "kind": kind,
            "row_group_rows": row_group_rows(table),
            "written_at": time.time(),
        }
    )
    for old in folder.listdir():
        if old.startswith("frame-") and old != name:
            folder.child(old).remove()
    log.info(
        "in-memory source (%s, %d rows x %d columns) stored once as %s (row groups of %d rows, %.2fs)%s",
        _KINDS[kind],
        table.num_rows,
        table.num_columns,
        folder.child(name).uri,
        row_group_rows(table),
        time.perf_counter() - started,
        "; it replaces a copy with other content" if found is not None else "",
    )
    return StoredFrame(folder.child(name), digest, table.num_rows, table.num_columns, kind)


def stage(source: Any, job_folder: Any, *, reuse_only: bool = False) -> Any:
    """The source as the engine opens it: a path source unchanged; a frame's stored copy (written now if the job
    folder has none with its content); ``reuse_only`` (a shard): the copy the plan stored, frame or not.

    :raises SourceError: a source of an unsupported type (naming it and the accepted ones).
    :raises ShardIncompleteError: ``reuse_only`` and the job folder holds no copy (the plan did not run).
    """
    if isinstance(source, StoredFrame):
        return source.location
    kind = frame_kind(source)
    if kind is None and not (reuse_only and callable(source)):
        check_source(source)
        return source
    if reuse_only:
        found = stored_copy(job_folder)
        if found is None:
            raise ShardIncompleteError(
                f"the in-memory source's copy is missing in {Location.of(job_folder).child(INPUT_DIR).uri}; "
                "the plan task stores it: run the plan first"
            )
        log.debug("in-memory source: using the copy the plan stored, %s (%d rows)", found.uri, found.rows)
        return found.location
    return store(source, job_folder, kind).location
