"""Output compaction at commit: a job's many small part files merged, in source order, into few files of about
``target_file_size_mb`` each.

A job writes one part per chunk (``g0001/parts/f00000-r000000000000.parquet``), so 100,000 chunks leave 100,000
files for every reader to list and open. At commit (:meth:`JobRunner.finalize`), with compaction on, the parts
are streamed in the committed order into ``g0001/compacted/c000000.parquet``, ``c000001.parquet`` ... and the
committed manifest lists those instead. The steps, each of which a crash may interrupt:

1. the compacted files are written, each atomically (locally a temporary name renamed into place; on other
   stores a local temporary file uploaded as one object, the upload retried on transient errors). No manifest
   lists them yet: readers still see the previous output, and a resume (the generation is unfinished: failed,
   or still ``finalizing`` after a kill) writes them again from the parts;
2. the committed manifest switches to them (one atomic write): the output is the new one;
3. the parts, no longer listed, are removed.

Memory stays bounded by one part's row group plus the row group being built (``ROW_GROUP_BYTES``), never the
output. A compacted file holds parts of one schema (metadata included): a part whose schema differs starts a
new file, so every file keeps exactly the schema its parts had. Only the row output is compacted; quarantine
parts stay as they are (listed apart, read by no downstream job, removed by the work retention). No Airflow
imports.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from airflow_batch_provider.engine import parquet_out
from airflow_batch_provider.storage import Location, with_retries

log = logging.getLogger("airflow_batch_provider.engine")

COMPACTED = "compacted"
MB = 2**20
#: auto mode compacts when the parts average under this fraction of the target file size (8 MB of 128 MB):
#: small files cost readers (one open and footer each), larger ones little; rewriting costs a read and a write
#: of the whole output (about 1 s per 2,000,000 16-column rows)
AUTO_FRACTION = 1 / 16
#: a compacted file's row groups: at most this many rows, and about this many bytes in memory
ROW_GROUP_ROWS = 1024 * 1024
ROW_GROUP_BYTES = 64 * MB


def compacted_name(index: int) -> str:
    return f"c{index:06d}.parquet"


@dataclass(frozen=True)
class Compaction:
    """What compaction did at commit: the committed manifest's ``compaction`` entry and ``JobResult.extra``."""

    mode: str  # "on", "off" or "auto" (compact_output True, False or None)
    compacted: bool
    reason: str
    parts: int
    files: int
    target_file_size_mb: int
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mode_of(setting: bool | None) -> str:
    return "auto" if setting is None else "on" if setting else "off"


def planned_files(sizes: list[int], target: int) -> int:
    """How many files parts of these sizes (in order) merge into when no file grows past ``target`` bytes
    (a part larger than the target is a file of its own; schema changes can only add files)."""
    files, filled = 0, 0
    for size in sizes:
        if files == 0 or (filled and filled + size > target):
            files, filled = files + 1, 0
        filled += size
    return files


def decide(setting: bool | None, sizes: list[int], target_mb: int) -> tuple[bool, str]:
    """Whether to compact parts of ``sizes`` bytes, and why (the reason the manifest and the log give)."""
    target = target_mb * MB
    if setting is False:
        return False, "compact_output=False"
    if len(sizes) < 2:
        return False, f"{len(sizes)} part(s): nothing to merge"
    files = planned_files(sizes, target)
    if files >= len(sizes):
        return False, f"every part is already about target_file_size_mb={target_mb} or larger"
    mean = sum(sizes) / len(sizes)
    if setting is None and mean >= AUTO_FRACTION * target:
        return False, (
            f"auto: parts average {mean / MB:.1f} MB, not under {AUTO_FRACTION:g} of "
            f"target_file_size_mb={target_mb} (set compact_output=True to merge them anyway)"
        )
    why = "compact_output=True" if setting else f"auto: parts average {mean / MB:.3f} MB"
    return True, f"{why}; about {files:,} file(s) of at most target_file_size_mb={target_mb}"


def part_sizes(folder: Location, names: list[str]) -> tuple[list[int], list[str]]:
    """The size in bytes of each part ``names`` lists in ``folder`` (one listing, not one request per part), and
    the names of the parts that are not there."""
    try:
        listing = folder.fs.ls(folder.path, detail=True)
    except FileNotFoundError:
        listing = []
    sizes = {posixpath.basename(str(e["name"]).rstrip("/")): int(e.get("size") or 0) for e in listing}
    missing = []
    for name in (n for n in names if n not in sizes):  # not listed: ask for the part itself
        try:
            sizes[name] = int(folder.child(name).fs.size(folder.child(name).path) or 0)
        except FileNotFoundError:
            missing.append(name)
    return [sizes.get(n, 0) for n in names], missing


class _FileWriter:
    """One compacted file being written: row groups of about ``ROW_GROUP_BYTES``, atomic at :meth:`close`.

    The file is written to a local temporary file: next to its final name locally (renamed into place), in the
    machine's temporary folder for other stores (then uploaded as one object, the upload retried on transient
    errors like every other write of the engine, and the temporary file removed)."""

    def __init__(self, loc: Location, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.loc, self.schema = loc, schema
        if loc.is_local:
            parent = loc._make_parent()
            self.tmp = posixpath.join(parent, f".{loc.name}.{uuid.uuid4().hex}.tmp")
        else:
            handle, self.tmp = tempfile.mkstemp(prefix="batch-compact-", suffix=".parquet")
            os.close(handle)
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by close() or abort()
        self.writer: pq.ParquetWriter | None = None  # opened by the first row group: its encodings
        self.buffer: list[Any] = []
        self.buffered_rows = self.buffered_bytes = 0
        self.bytes_in = 0

    def add(self, table: Any) -> None:
        if not table.num_rows:
            return
        self.buffer.append(table)
        self.buffered_rows += table.num_rows
        self.buffered_bytes += table.nbytes
        if self.buffered_rows >= ROW_GROUP_ROWS or self.buffered_bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.buffer:
            return
        table = pa.concat_tables(self.buffer)
        self.buffer, self.buffered_rows, self.buffered_bytes = [], 0, 0
        self._open(table).write_table(table, row_group_size=table.num_rows)

    def _open(self, first: Any) -> Any:
        """The file's writer, with the dictionary-encoded columns chosen on its first row group as for parts
        (:mod:`~airflow_batch_provider.engine.parquet_out`)."""
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.fh, self.schema, **parquet_out.write_options(first))
        return self.writer

    def close(self) -> int:
        """Finish the file and put it in place; return its size in bytes."""
        self.flush()
        self._open(self.schema.empty_table()).close()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        size = os.path.getsize(self.tmp)
        if self.loc.is_local:
            os.replace(self.tmp, self.loc.path)
            return size
        try:
            self.loc._make_parent()
            fs, path = self.loc.fs, self.loc.path
            with_retries("put", path, lambda: fs.put_file(self.tmp, path), getattr(fs, "policy", None))
        finally:
            os.remove(self.tmp)
        return size

    def abort(self) -> None:
        """Give the file up (an error while writing it): nothing is left under its name, nor a temporary file."""
        closers = [self.writer.close] if self.writer is not None else []
        for close in [*closers, self.fh.close]:
            try:
                close()
            except Exception:  # noqa: BLE001 - already failing: the first error is the one raised
                pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def _iter_part(loc: Location) -> tuple[Any, Any]:
    """A part's Arrow schema (with its metadata) and an iterator over its row groups, read one at a time."""
    import pyarrow.parquet as pq

    fh = open(loc.path, "rb") if loc.is_local else loc.fs.open(loc.path, "rb")  # noqa: SIM115 - see groups()
    try:
        pf = pq.ParquetFile(fh, pre_buffer=False)
    except BaseException:
        fh.close()
        raise

    def groups() -> Any:
        try:
            for i in range(pf.num_row_groups):
                yield pf.read_row_group(i)
        finally:
            fh.close()

    return pf.schema_arrow, groups()


def compact(
    parts: Location,
    names: list[str],
    sizes: list[int],
    target: Location,
    target_mb: int,
    *,
    check: Callable[[], None] = lambda: None,
) -> tuple[list[str], int]:
    """Merge the parts ``names`` of folder ``parts`` (in that order) into ``target/c000000.parquet`` ...; return
    the names written and their total size. ``check`` runs before each file is started (the fence)."""
    limit = target_mb * MB
    written: list[str] = []
    bytes_out = 0
    current: _FileWriter | None = None
    try:
        for name, size in zip(names, sizes, strict=True):
            schema, groups = _iter_part(parts.child(name))
            full = current is not None and current.bytes_in and current.bytes_in + size > limit
            if current is None or full or not schema.equals(current.schema, check_metadata=True):
                if current is not None:
                    bytes_out += current.close()
                    current = None
                check()
                written.append(compacted_name(len(written)))
                current = _FileWriter(target.child(written[-1]), schema)
            for table in groups:
                current.add(table)
            current.bytes_in += size
        if current is not None:
            bytes_out += current.close()
            current = None
    finally:
        if current is not None:
            current.abort()
    return written, bytes_out


def compact_output(
    gen: Location,
    names: list[str],
    setting: bool | None,
    target_mb: int,
    *,
    job_id: str,
    check: Callable[[], None] = lambda: None,
) -> tuple[list[str] | None, Compaction]:
    """Decide and, when on, compact the generation ``gen``'s parts ``names`` (its committed order) into
    ``gen/compacted/``. Returns the compacted files' names (None when not compacted) and what was done. Logs one
    line: how many parts became how many files, or why they were left as they are."""
    started = time.monotonic()
    folder = gen.child("parts")
    sizes, missing = part_sizes(folder, names) if setting is not False and len(names) > 1 else ([], [])
    on, reason = decide(setting, sizes or [0] * len(names), target_mb)
    if on and missing:  # e.g. memory:// written by forked workers: nothing to read the rows from
        on, reason = (
            False,
            (f"{len(missing):,} part(s) not found under {folder.uri} (first {missing[0]}): left as they are"),
        )
    mode = mode_of(setting)
    if not on:
        level = logging.WARNING if missing else logging.INFO if len(names) > 1 else logging.DEBUG
        log.log(level, "job %s: output not compacted (%d part(s)): %s", job_id, len(names), reason)
        return None, Compaction(
            mode, False, reason, len(names), len(names), target_mb, sum(sizes), sum(sizes)
        )
    files, bytes_out = compact(folder, names, sizes, gen.child(COMPACTED), target_mb, check=check)
    seconds = time.monotonic() - started
    log.info(
        "job %s: compacted %d part(s) (%.1f MB) into %d file(s) (%.1f MB, target %d MB) in %.1fs",
        job_id,
        len(names),
        sum(sizes) / MB,
        len(files),
        bytes_out / MB,
        target_mb,
        seconds,
    )
    done = Compaction(mode, True, reason, len(names), len(files), target_mb, sum(sizes), bytes_out)
    return files, Compaction(**{**done.to_dict(), "seconds": round(seconds, 3)})
