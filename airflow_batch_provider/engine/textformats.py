"""CSV and JSON Lines files as row-addressable sources.

One sequential, numpy-vectorised pass (:func:`index_text_file`) finds where records start and keeps
every ``stride``-th offset. Any worker can then parse rows ``[start, stop)`` (:func:`read_text_rows`)
by reading only the bytes of those records, with the CSV header prepended.

Record rules (they match pyarrow's readers):

* CSV: a ``\\n`` ends a record iff the number of quote characters before it is even (RFC 4180;
  a doubled quote ``""`` keeps the parity). ``\\r\\n`` works; a ``\\r`` outside quotes followed
  by anything but ``\\r`` / ``\\n`` is rejected at index time. A record made only of ``\\r`` /
  ``\\n`` is a blank line and is skipped. The first non-blank record is the header.
* JSON Lines: every line holding anything but whitespace is a record.
* Only UTF-8 (with or without a BOM, ASCII included) is supported; another ``encoding`` is a
  :class:`~airflow_batch_provider.exceptions.ConfigError` telling to re-encode the file.

No Airflow imports.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from airflow_batch_provider.engine import redaction
from airflow_batch_provider.exceptions import ConfigError, DataCorruptionError, SourceError

OPTIONS_PARAM = "csv_options"  # how users pass TextOptions; used in error hints
TEXT_FORMATS = ("csv", "jsonl")
_BOM = b"\xef\xbb\xbf"
_LF, _CR = 10, 13
_MIN_PARSE_BLOCK = 1 << 20
_MAX_PARSE_BLOCK = (1 << 31) - 1  # pyarrow block sizes are int32
_ENCODINGS = {"utf-8", "utf-8-sig", "ascii"}  # codecs.lookup() names
_TS_TYPE = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_DEC_TYPE = re.compile(r"decimal(128|256)?\((\d+),\s*(\d+)\)$")
_CSV_ROW = re.compile(r"Row #(\d+):? ?")
_JSON_ROW = re.compile(r"\s*in row (\d+)")
_TYPE_HINT = "'int64', 'float64', 'string', 'bool', 'date32', 'timestamp[us]'"


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def parse_type(text: str, *, what: str = "type") -> pa.DataType:
    """A pyarrow type from a string like ``"int64"`` or ``"timestamp[us, tz=UTC]"``."""
    s = str(text).strip()
    m = _TS_TYPE.match(s)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2).strip() if m.group(2) else None)
    m = _DEC_TYPE.match(s)
    if m:
        make = pa.decimal256 if m.group(1) == "256" else pa.decimal128
        return make(int(m.group(2)), int(m.group(3)))
    try:
        return pa.type_for_alias(s)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{what}: {text!r} is not a pyarrow type; use e.g. {_TYPE_HINT}") from None


def _check_char(name: str, value: Any) -> str:
    aliases = {"\\t": "\t", "tab": "\t"}
    value = aliases.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, str) or len(value) != 1 or not value.isascii() or value in "\r\n":
        raise ConfigError(f"{name}: {value!r} must be one ASCII character other than a line break")
    return value


def _check_encoding(value: Any) -> str:
    try:
        name = codecs.lookup(str(value)).name
    except LookupError:
        name = None
    if name not in _ENCODINGS:
        raise ConfigError(
            f"encoding: {value!r} is not supported; CSV and JSON Lines files must be UTF-8 (a BOM is fine). "
            f"Re-encode the file, e.g. `iconv -f {value} -t utf-8`"
        )
    return str(value)


def _check_column_types(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, Mapping):
        raise ConfigError(f"column_types: {value!r} must be a mapping of column name -> pyarrow type string")
    out = {}
    for name, typ in value.items():
        text = str(typ)
        parse_type(text, what=f"column_types[{name!r}]")
        out[str(name)] = text
    return out


@dataclass(frozen=True)
class TextOptions:
    """How to parse CSV / JSON Lines files (``delimiter`` and ``quote_char`` are CSV only)."""

    delimiter: str = ","
    quote_char: str = '"'
    encoding: str = "utf-8"
    column_types: dict[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "delimiter", _check_char("delimiter", self.delimiter))
        object.__setattr__(self, "quote_char", _check_char("quote_char", self.quote_char))
        if self.delimiter == self.quote_char:
            raise ConfigError(f"delimiter and quote_char are both {self.delimiter!r}; they must differ")
        object.__setattr__(self, "encoding", _check_encoding(self.encoding))
        if self.column_types is not None:
            object.__setattr__(self, "column_types", _check_column_types(self.column_types))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> TextOptions:
        """Options from a plain mapping; an unknown key is a ConfigError."""
        if m is None:
            return cls()
        if isinstance(m, TextOptions):
            return m
        if not isinstance(m, Mapping):
            raise ConfigError(f"{OPTIONS_PARAM}: {m!r} must be a mapping")
        valid = [f.name for f in cls.__dataclass_fields__.values()]
        unknown = sorted(set(m) - set(valid))
        if unknown:
            raise ConfigError(f"{OPTIONS_PARAM}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")
        return cls(**m)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "quote_char": self.quote_char,
            "encoding": self.encoding,
            "column_types": dict(self.column_types) if self.column_types is not None else None,
        }

    def arrow_types(self) -> dict[str, pa.DataType]:
        """The declared ``column_types`` as pyarrow types."""
        return {k: parse_type(v) for k, v in (self.column_types or {}).items()}


# --------------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextIndex:
    """Where the records of one text file start (see the module docstring)."""

    fmt: str
    size: int
    header: bytes
    data_start: int
    rows: int
    stride: int
    offsets: tuple[int, ...]
    end: int
    newlines_in_values: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "fmt": self.fmt,
            "size": self.size,
            "header": base64.b64encode(self.header).decode("ascii"),
            "data_start": self.data_start,
            "rows": self.rows,
            "stride": self.stride,
            "offsets": list(self.offsets),
            "end": self.end,
            "newlines_in_values": self.newlines_in_values,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextIndex:
        missing = sorted(set(cls.__dataclass_fields__) - set(d))
        if missing:
            raise ValueError(f"not a TextIndex dict: missing {', '.join(missing)}")
        index = cls(
            fmt=str(d["fmt"]),
            size=int(d["size"]),
            header=base64.b64decode(d["header"]),
            data_start=int(d["data_start"]),
            rows=int(d["rows"]),
            stride=int(d["stride"]),
            offsets=tuple(int(o) for o in d["offsets"]),
            end=int(d["end"]),
            newlines_in_values=bool(d["newlines_in_values"]),
        )
        if index.fmt not in TEXT_FORMATS or len(index.offsets) != -(-index.rows // index.stride):
            raise ValueError(
                f"inconsistent TextIndex dict (fmt {index.fmt!r}, {index.rows} rows, "
                f"stride {index.stride}, {len(index.offsets)} offsets)"
            )
        return index


class _Scanner:
    """Streaming record splitter: :meth:`feed` blocks in order, then :meth:`finish`."""

    def __init__(self, path: str, fmt: str, quote: int, start: int, stride: int) -> None:
        self.path, self.csv, self.quote, self.stride = path, fmt == "csv", quote, stride
        self.quote_byte = bytes([quote])
        blank = [_LF, _CR] if self.csv else [_LF, _CR, 0x20, 0x09]
        self.insig = np.zeros(256, dtype=bool)
        self.insig[blank] = True  # bytes a blank record may consist of
        self.pos = start  # absolute offset of the next block
        self.parity = 0  # quote count parity at self.pos
        self.lines = 0  # line feeds before self.pos
        self.rec_start, self.rec_line, self.rec_sig = start, 1, False  # the open record
        self.pending_cr = -1  # offset of an unquoted CR that ended the previous block
        self.quoted_newline = False
        self.header: tuple[int, int] | None = None
        self.count, self.first_start, self.last_end = 0, -1, start
        self.kept: list[np.ndarray] = []

    def feed(self, block: bytes) -> None:
        buf = np.frombuffer(block, dtype=np.uint8)
        nl = np.flatnonzero(buf == _LF)
        bounds = self._boundaries(block, buf, nl) if self.csv else nl
        tail_from = 0
        if len(bounds):
            starts = np.empty(len(bounds), dtype=np.int64)
            starts[0] = self.rec_start - self.pos
            starts[1:] = bounds[:-1] + 1
            keep = self._nonblank(buf, starts, bounds)
            self._emit(starts[keep] + self.pos, bounds[keep] + (1 + self.pos))
            tail_from = int(bounds[-1]) + 1
            self.rec_start, self.rec_sig = self.pos + tail_from, False
            self.rec_line = self.lines + int(np.searchsorted(nl, bounds[-1], side="right")) + 1
        if not self.rec_sig and tail_from < len(buf):
            self.rec_sig = not bool(self.insig[buf[tail_from:]].all())
        self.lines += len(nl)
        self.pos += len(buf)

    def _boundaries(self, block: bytes, buf: np.ndarray, nl: np.ndarray) -> np.ndarray:
        """The line feeds that end a CSV record (even quote parity before them)."""
        parity0 = self.parity
        if block.find(self.quote_byte) < 0:
            bounds = nl if parity0 == 0 else nl[:0]
        else:
            quotes = (buf == self.quote).view(np.uint8)
            seg = np.bitwise_xor.reduceat(quotes, np.concatenate(([0], nl)))  # parity per line
            before = np.bitwise_xor.accumulate(seg[:-1]) ^ parity0 if len(nl) else seg[:0]
            bounds = nl[before == 0]
            self.parity = parity0 ^ int(np.bitwise_xor.reduce(seg))
        if len(bounds) < len(nl):
            self.quoted_newline = True
        self._check_cr(block, buf, parity0)
        return bounds

    def _check_cr(self, block: bytes, buf: np.ndarray, parity0: int) -> None:
        """Reject a CR outside quotes followed by data (pyarrow would end a record there)."""
        if self.pending_cr >= 0 and buf[0] != _LF and buf[0] != _CR:
            self._bare_cr_error(self.pending_cr)
        self.pending_cr = -1
        if block.find(b"\r") < 0:
            return
        cr = np.flatnonzero(buf == _CR)
        last_at_end = cr[-1] == len(buf) - 1
        inner = cr[:-1] if last_at_end else cr
        after = buf[inner + 1]
        bare = inner[(after != _LF) & (after != _CR)]
        if last_at_end:
            bare = np.append(bare, cr[-1])
        if not len(bare):
            return
        quotes = np.flatnonzero(buf == self.quote)
        unquoted = bare[((np.searchsorted(quotes, bare) + parity0) & 1) == 0]
        if len(unquoted) and last_at_end and unquoted[-1] == cr[-1]:
            self.pending_cr, unquoted = self.pos + int(cr[-1]), unquoted[:-1]
        if len(unquoted):
            self._bare_cr_error(self.pos + int(unquoted[0]))

    def _bare_cr_error(self, offset: int) -> None:
        raise DataCorruptionError(
            f"{self.path}: a carriage return (\\r) followed by data outside quotes at byte {offset}; "
            "classic-Mac line endings and stray \\r bytes are not supported. "
            "Convert the line endings to \\n or \\r\\n, or quote the field"
        )

    def _nonblank(self, buf: np.ndarray, starts: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Which records ``[starts, bounds)`` (block-relative) hold a significant byte."""
        keep = ~self.insig[buf[np.maximum(starts, 0)]]
        keep[0] = self.rec_sig or not bool(self.insig[buf[: bounds[0]]].all())
        check = np.flatnonzero(~keep & (bounds - starts >= 2))
        check = check[check > 0]
        if len(check):  # rare: records starting with whitespace (indented JSON, bad CSV)
            sig = np.flatnonzero(~self.insig[buf])
            at = np.searchsorted(sig, starts[check])
            found = at < len(sig)
            keep[check[found]] = sig[at[found]] < bounds[check[found]]
        return keep

    def _emit(self, starts: np.ndarray, ends: np.ndarray) -> None:
        if self.csv and self.header is None and len(starts):
            self.header = (int(starts[0]), int(ends[0]))
            starts, ends = starts[1:], ends[1:]
        if not len(starts):
            return
        if self.first_start < 0:
            self.first_start = int(starts[0])
        self.kept.append(starts[(-self.count) % self.stride :: self.stride])
        self.count += len(starts)
        self.last_end = int(ends[-1])

    def finish(self) -> None:
        if self.csv and self.parity:
            raise DataCorruptionError(
                f"{self.path}: unterminated quoted field: the record starting at byte {self.rec_start} "
                f"(line {self.rec_line}) opens a quote that is not closed by the end of the file "
                f"(byte {self.pos}). The file is truncated or badly quoted; fix the quoting, or set "
                f"{OPTIONS_PARAM}={{'quote_char': ...}} if {chr(self.quote)!r} is not the quote character"
            )
        if self.rec_sig and self.rec_start < self.pos:
            self._emit(np.array([self.rec_start]), np.array([self.pos]))


def _scan(
    fs: Any, path: str, fmt: str, options: TextOptions, stride: int, block_size: int
) -> tuple[_Scanner, int]:
    """Run the scanner over the file; returns it and the offset where scanning began."""
    with fs.open(path, "rb") as fh:
        start = 3 if fh.read(3) == _BOM else 0
        fh.seek(start)
        scanner = _Scanner(path, fmt, ord(options.quote_char), start, stride)
        while True:
            block = fh.read(block_size)
            if not block:
                break
            scanner.feed(block)
    scanner.finish()
    return scanner, start


def _read_bytes(fs: Any, path: str, begin: int, end: int) -> bytes:
    with fs.open(path, "rb") as fh:
        fh.seek(begin)
        return fh.read(end - begin)


def index_text_file(
    fs: Any, path: str, fmt: str, options: TextOptions, *, stride: int = 1024, block_size: int = 8 << 20
) -> TextIndex:
    """Index the records of a CSV / JSON Lines file in one streaming pass.

    A missing file is a SourceError, a malformed one a DataCorruptionError; other OSErrors (often
    transient on object storage) propagate. A CSV header without a line terminator gets ``\\n``.
    """
    if fmt not in TEXT_FORMATS:
        raise SourceError(f"{path}: text format {fmt!r} is not one of {', '.join(TEXT_FORMATS)}")
    if stride < 1 or block_size < 1:
        raise ValueError(f"stride ({stride}) and block_size ({block_size}) must be >= 1")
    try:
        sc, start = _scan(fs, path, fmt, options, stride, block_size)
    except FileNotFoundError as err:
        raise SourceError(f"{path} does not exist (or vanished while indexing): {err}") from err
    header = b""
    data_start = start
    if sc.header is not None:
        header = _read_bytes(fs, path, *sc.header)
        header = header if header.endswith(b"\n") else header + b"\n"
        data_start = sc.header[1]
    if sc.count:
        data_start = sc.first_start
    offsets = np.concatenate(sc.kept) if sc.kept else np.empty(0, dtype=np.int64)
    return TextIndex(
        fmt=fmt,
        size=sc.pos,
        header=header,
        data_start=data_start,
        rows=sc.count,
        stride=stride,
        offsets=tuple(offsets.tolist()),
        end=sc.last_end if sc.count else data_start,
        newlines_in_values=sc.quoted_newline,
    )


# --------------------------------------------------------------------------------------------------
# Parsing row ranges
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """Records ``[first, first + count)`` live in bytes ``[begin, end)``."""

    first: int
    count: int
    begin: int
    end: int


def _span(index: TextIndex, start: int, stop: int) -> _Span:
    """The stride-aligned byte range covering records ``[start, stop)``."""
    i0, i1 = start // index.stride, -(-stop // index.stride)
    end = index.offsets[i1] if i1 < len(index.offsets) else index.end
    first = i0 * index.stride
    return _Span(first, min(i1 * index.stride, index.rows) - first, index.offsets[i0], end)


def _fetch(fs: Any, path: str, index: TextIndex, span: _Span) -> bytes:
    """The bytes of ``span``; the file must still be the one that was indexed."""
    with fs.open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(span.begin)
        data = fh.read(span.end - span.begin)
    if size != index.size or len(data) != span.end - span.begin:
        raise DataCorruptionError(
            f"{path}: the file changed since it was indexed ({index.size} bytes then, {size} now); "
            "records cannot be located. Re-run the job on an unchanged file"
        )
    return data


def _block_size(n: int) -> int:
    return min(max(n + 1, _MIN_PARSE_BLOCK), _MAX_PARSE_BLOCK)


def _parse_csv(data: bytes, index: TextIndex, options: TextOptions, types: pa.Schema | None) -> pa.Table:
    buf = index.header + data
    return pacsv.read_csv(
        pa.py_buffer(buf),
        read_options=pacsv.ReadOptions(block_size=_block_size(len(buf)), use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=options.delimiter,
            quote_char=options.quote_char,
            newlines_in_values=index.newlines_in_values,
        ),
        convert_options=pacsv.ConvertOptions(column_types=types) if types is not None else None,
    )


def _parse_json(data: bytes, schema: pa.Schema | None) -> pa.Table:
    parse = pajson.ParseOptions(explicit_schema=schema) if schema is not None else None
    read = pajson.ReadOptions(block_size=_block_size(len(data)), use_threads=False)
    return pajson.read_json(pa.py_buffer(data), read_options=read, parse_options=parse)


def _parse(data: bytes, index: TextIndex, options: TextOptions, schema: pa.Schema | None) -> pa.Table:
    """Parse one whole range in a single pyarrow block, single-threaded: workers are processes
    already, the block fits the largest record, and errors then carry row numbers."""
    if index.fmt == "csv":
        return _parse_csv(data, index, options, schema)
    return _parse_json(data, schema)


def _column_name(reason: str, index: TextIndex, options: TextOptions) -> str:
    """The column a pyarrow error message points at (CSV: by position in the header)."""
    m = re.search(r"Column\(/([^)/]+)", reason)
    if m:
        return m.group(1)
    m = re.search(r"column #(\d+)", reason)
    if m and index.header:
        parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote_char)
        names = pacsv.read_csv(pa.py_buffer(index.header), parse_options=parse).column_names
        if int(m.group(1)) < len(names):
            return names[int(m.group(1))]
    return "<column>"


def _guess_delimiter(header: bytes, current: str) -> str:
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t", "|") if d != current}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"


def _hint(reason: str, index: TextIndex, options: TextOptions) -> str:
    """A sentence telling how to fix the failure pyarrow reported as ``reason``."""
    if "UTF8" in reason or "UTF-8" in reason:
        return "the file must be UTF-8: re-encode it (e.g. with iconv)"
    if "conversion error" in reason or "changed from" in reason:
        name = _column_name(reason, index, options)
        mixed = " or make the field hold one JSON kind (e.g. all numbers)" if index.fmt == "jsonl" else ""
        return (
            f"if the column really holds such values, declare its type with "
            f"{OPTIONS_PARAM}={{'column_types': {{{name!r}: 'string'}}}}{mixed}; otherwise fix the value"
        )
    if "Expected" in reason and "columns" in reason:
        guess = _guess_delimiter(index.header, options.delimiter)
        return (
            f"check the delimiter (now {options.delimiter!r}; e.g. set "
            f"{OPTIONS_PARAM}={{'delimiter': {guess!r}}}) and the quoting (quote_char "
            f"{options.quote_char!r}), or fix the row"
        )
    return "fix or remove the malformed record, or check the file's format and options"


def _where(reason: str, index: TextIndex, span: _Span) -> str:
    """Turn pyarrow's range-relative row number into the file's data row number."""
    if index.fmt == "csv":
        m = _CSV_ROW.search(reason)
        row = span.first + int(m.group(1)) - 1 if m else None  # pyarrow counts the header as row 1
    else:
        m = _JSON_ROW.search(reason)
        row = span.first + int(m.group(1)) + 1 if m else None
    return f" at data row {row} (1-based, header and blank lines not counted)" if row is not None else ""


def _corrupt(
    path: str, index: TextIndex, span: _Span, err: Exception, options: TextOptions
) -> DataCorruptionError:
    reason = str(err).strip()
    where = _where(reason, index, span)
    relative = _CSV_ROW if index.fmt == "csv" else _JSON_ROW
    shown = relative.sub("", reason).strip(" :")
    if not redaction.row_values_logged():  # pyarrow quotes the bad value or prints the whole row
        known = [path, *_header_names(index, options)]
        shown = redaction.scrub_message(shown, known, limit=None)
        err.args = (redaction.scrub_message(reason, known, limit=None),)  # the cause: tracebacks show it
    return DataCorruptionError(
        f"{path}: cannot parse {index.fmt.upper()} records {span.first}-{span.first + span.count} "
        f"(bytes {span.begin}-{span.end}){where}: {shown}. Fix: {_hint(reason, index, options)}"
    )


def _header_names(index: TextIndex, options: TextOptions) -> list[str]:
    if not index.header:
        return []
    try:
        parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote_char)
        return pacsv.read_csv(pa.py_buffer(index.header), parse_options=parse).column_names
    except (pa.ArrowException, ValueError):
        return []


def _conform(path: str, table: pa.Table, schema: pa.Schema, span: _Span) -> pa.Table:
    """Select ``schema``'s columns in order; other or missing columns are corruption."""
    names = table.column_names
    extra = [n for n in names if n not in schema.names]
    missing = [n for n in schema.names if n not in names]
    if extra or missing:
        raise DataCorruptionError(
            f"{path}: records {span.first}-{span.first + span.count} have columns {names}, expected "
            f"{schema.names} (unexpected: {extra}, missing: {missing}). Align the file with the source's "
            f"columns, or declare the extra columns with {OPTIONS_PARAM}={{'column_types': {{...}}}}"
        )
    table = table.select(schema.names)
    return table if table.schema == schema else table.cast(schema)


def read_text_rows(
    fs: Any, path: str, index: TextIndex, start: int, stop: int, schema: pa.Schema, options: TextOptions
) -> pa.Table:
    """Rows ``[start, stop)`` of an indexed text file, as a table with exactly ``schema``."""
    if not 0 <= start <= stop <= index.rows:
        raise ValueError(f"{path}: row range {start}-{stop} is outside 0-{index.rows}")
    if start == stop:
        return schema.empty_table()
    span = _span(index, start, stop)
    data = _fetch(fs, path, index, span)
    try:
        table = _conform(path, _parse(data, index, options, schema), schema, span)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise _corrupt(path, index, span, err, options) from err
    if table.num_rows != span.count:
        raise DataCorruptionError(
            f"{path}: records {span.first}-{span.first + span.count} (bytes {span.begin}-{span.end}) "
            f"parsed into {table.num_rows} rows, but the index found {span.count}; the file changed "
            "since indexing or its quoting/line endings confuse the parser. Check the file and "
            f"{OPTIONS_PARAM} (delimiter {options.delimiter!r}, quote_char {options.quote_char!r})"
        )
    return table.slice(start - span.first, stop - start)


# --------------------------------------------------------------------------------------------------
# Schema inference
# --------------------------------------------------------------------------------------------------

_SCALAR_RANK = {pa.null(): 0, pa.bool_(): 1, pa.int64(): 2, pa.float64(): 3, pa.string(): 4}
_TS_RANK = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """Reconcile two inferred types: null < int64 < float64 < string, else string.

    bool joins only null (a bool column cannot be read as numbers); timestamps with one time
    zone take the finer unit; structs and lists merge recursively (JSON Lines).
    """
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b) and a.tz == b.tz:
        return a if _TS_RANK[a.unit] >= _TS_RANK[b.unit] else b
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return pa.struct(_merge_fields(list(a), list(b)))
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type))
    numeric = {pa.int64(), pa.float64()}
    if a in numeric and b in numeric:
        return pa.float64()
    return pa.string()


def _merge_fields(a: list[pa.Field], b: list[pa.Field]) -> list[pa.Field]:
    """Union of two field lists by name (first-seen order), types merged."""
    merged = {f.name: f.type for f in a}
    for f in b:
        merged[f.name] = merge_types(merged[f.name], f.type) if f.name in merged else f.type
    return [pa.field(name, typ) for name, typ in merged.items()]


def _sample_spans(index: TextIndex, sample_rows: int) -> list[_Span]:
    """Spans at the beginning, middle and end of the file (one span if the file is small)."""
    if index.rows <= sample_rows:
        return [_span(index, 0, index.rows)]
    n = max(1, sample_rows // 3)
    mid = index.rows // 2 - n // 2
    spans: list[_Span] = []
    for a, b in ((0, n), (mid, mid + n), (index.rows - n, index.rows)):
        done = spans[-1].first + spans[-1].count if spans else 0  # stride-aligned
        if max(a, done) < b:
            spans.append(_span(index, max(a, done), b))
    return spans


def _sample_schema(fs: Any, path: str, index: TextIndex, options: TextOptions, span: _Span) -> pa.Schema:
    data = _fetch(fs, path, index, span) if span.count else b""
    try:
        table = _parse(data, index, options, None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise _corrupt(path, index, span, err, options) from err
    if table.num_rows != span.count:
        raise DataCorruptionError(
            f"{path}: sample records {span.first}-{span.first + span.count} parsed into "
            f"{table.num_rows} rows; check the quoting and line endings, and {OPTIONS_PARAM}"
        )
    return table.schema


def _check_names(path: str, schema: pa.Schema) -> None:
    dup = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if dup:
        raise DataCorruptionError(
            f"{path}: the header repeats column name(s) {sorted(set(dup))}; "
            "rename them so every column name is unique"
        )
    binary = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if binary:
        raise DataCorruptionError(
            f"{path}: column(s) {binary} hold bytes that are not valid UTF-8; "
            "re-encode the file as UTF-8 (e.g. with iconv)"
        )


def _apply_declared(path: str, fmt: str, schema: pa.Schema, options: TextOptions) -> pa.Schema:
    declared = options.arrow_types()
    unknown = [n for n in declared if n not in schema.names]
    if unknown and fmt == "csv":
        raise ConfigError(
            f"column_types names column {unknown[0]!r}, which is not in the header of {path}; "
            f"its columns are {schema.names}"
        )
    fields = [pa.field(f.name, declared.get(f.name, f.type)) for f in schema]
    return pa.schema(fields + [pa.field(n, declared[n]) for n in unknown])


def infer_text_schema(
    fs: Any, path: str, index: TextIndex, options: TextOptions, *, sample_rows: int = 10_000
) -> pa.Schema:
    """Infer a schema from rows at the beginning, middle and end of the file.

    ``column_types`` override the inferred types. For JSON Lines a declared column that the
    samples do not hold is appended (there is no header to check it against).
    """
    if index.rows:
        spans = _sample_spans(index, max(1, sample_rows))
    else:  # a CSV header alone still names the columns
        spans = [_Span(0, 0, 0, 0)] if index.header else []
    fields: list[pa.Field] = []
    for span in spans:
        schema = _sample_schema(fs, path, index, options, span)
        _check_names(path, schema)
        fields = _merge_fields(fields, list(schema)) if fields else list(schema)
    return _apply_declared(path, index.fmt, pa.schema(fields), options)
