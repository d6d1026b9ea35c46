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
* ``encoding``: UTF-8 (with or without a BOM) and single-byte ASCII-compatible codecs (latin-1, cp1252,
  iso-8859-x, ...) are indexed on their bytes as they are (a line feed, a quote and a delimiter are the
  same bytes in all of them) and transcoded to UTF-8 per range before parsing, so offsets are the file's
  own. UTF-16 / UTF-32 (a byte-order mark, or ``encoding="utf-16"`` ...) are indexed on their code units
  (2 or 4 bytes; a line feed, a quote and a delimiter are one unit each, mapped to one byte for the scanner)
  and transcoded per range too: offsets stay the file's own bytes, so resume is exact. Any other codec
  (multi-byte CJK codecs whose second bytes can look like ASCII, stateful codecs such as ISO-2022 or UTF-7)
  is a :class:`~airflow_batch_provider.exceptions.ConfigError` that names the re-encoding command.

Values (see docs/text-sources.md): CSV nulls are pandas' defaults (:data:`PANDAS_NULL_VALUES`, the empty
field included, quoted or not) in every column type, plus ``null_values``; ``keep_default_null_values=False``
keeps only the listed ones. JSON Lines nulls are ``null`` and missing keys. The schema of a file is typed
from every row (:func:`infer_text_schema`), never from samples. :data:`READER_VERSION` is part of the job
fingerprint: raise it whenever the values a file reads as change.

No Airflow imports.
"""

from __future__ import annotations

import base64
import bisect
import codecs
import dataclasses
import json
import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from airflow_batch_provider.engine import redaction
from airflow_batch_provider.exceptions import ConfigError, DataCorruptionError, SourceError
from airflow_batch_provider.machine import usable_cpus

log = logging.getLogger(__name__)

OPTIONS_PARAM = "csv_options"  # how users pass TextOptions; used in error hints
TEXT_FORMATS = ("csv", "jsonl")
_BOM = b"\xef\xbb\xbf"
_LF, _CR = 10, 13
_MIN_PARSE_BLOCK = 1 << 20
_MAX_PARSE_BLOCK = (1 << 31) - 1  # pyarrow block sizes are int32
_UTF8 = {"utf-8", "utf-8-sig", "ascii"}  # codecs.lookup() names read as they are
#: fixed-width Unicode codecs read by code unit: codecs.lookup() name -> (unit bytes, the byte order without a BOM)
_WIDE = {"utf-16": (2, "le"), "utf-16-le": (2, "le"), "utf-16-be": (2, "be"),
         "utf-32": (4, "le"), "utf-32-le": (4, "le"), "utf-32-be": (4, "be")}  # fmt: skip
#: bumped when the values a file reads as change (1: sampled schema, empty text fields kept as "").
READER_VERSION = 2
#: pandas' default ``na_values`` (pandas._libs.parsers.STR_NA_VALUES, pandas 2.x and 3.x)
PANDAS_NULL_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_TRUE, _FALSE = ["True", "TRUE", "true"], ["False", "FALSE", "false"]  # pandas' booleans
_TYPING_BYTES = 8 << 20  # the typing pass parses the file in ranges of about this size
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


def _close(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'amount'?"`` when a candidate is close to ``name`` (difflib), else ``""``."""
    import difflib

    found = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {found[0]!r}?" if found else ""


def _check_char(name: str, value: Any) -> str:
    aliases = {"\\t": "\t", "tab": "\t"}
    value = aliases.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, str) or len(value) != 1 or not value.isascii() or value in "\r\n":
        raise ConfigError(f"{name}: {value!r} must be one ASCII character other than a line break")
    return value


def single_byte_ascii(name: str) -> bool:
    """Whether a codec maps each byte to one character on its own and keeps ASCII as ASCII (latin-1, cp1252,
    iso-8859-x, koi8-r, ...): then records can be found on the raw bytes and any range decodes alone."""
    try:
        every = bytes(range(256)).decode(name, errors="replace")
        alone = "".join(bytes([b]).decode(name, errors="replace") for b in range(256))
    except (LookupError, TypeError, UnicodeError):  # stateful or non-text codecs
        return False
    return every == alone and len(every) == 256 and every[:128] == bytes(range(128)).decode("ascii")


def _check_encoding(value: Any) -> str:
    try:
        name = codecs.lookup(str(value)).name
    except LookupError:
        raise ConfigError(
            f"encoding: {value!r} is not a codec Python knows; use e.g. 'utf-8', 'latin-1', 'cp1252'"
        ) from None
    if name in _UTF8 or name in _WIDE or single_byte_ascii(name):
        return str(value)
    raise ConfigError(
        f"encoding: {value!r} cannot be read in row ranges: stateful or multi-byte codecs (a line feed or a "
        "quote byte may sit inside a character) are not supported. Supported: UTF-8 (a BOM is fine), "
        "UTF-16 / UTF-32 (with or without a BOM) and single-byte ASCII-compatible codecs (latin-1, cp1252, "
        f"iso-8859-x, ...). Re-encode the file to UTF-8, e.g. `iconv -f {value} -t utf-8 in.csv > out.csv`"
    )


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


def _check_null_values(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"null_values: {value!r} must be a list of strings, e.g. ['-', 'missing']")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class TextOptions:
    """How to parse CSV / JSON Lines files (all but ``encoding`` and ``column_types`` are CSV only).

    ``null_values`` are read as null in addition to pandas' defaults (:data:`PANDAS_NULL_VALUES`), or
    instead of them with ``keep_default_null_values=False`` (pandas' ``na_values`` / ``keep_default_na``).
    ``decimal`` and ``thousands`` are pandas' options of the same names.
    """

    delimiter: str = ","
    quote_char: str = '"'
    encoding: str = "utf-8"
    column_types: dict[str, str] | None = field(default=None, hash=False)
    null_values: tuple[str, ...] | None = None
    keep_default_null_values: bool = True
    decimal: str = "."
    thousands: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "delimiter", _check_char("delimiter", self.delimiter))
        object.__setattr__(self, "quote_char", _check_char("quote_char", self.quote_char))
        if self.delimiter == self.quote_char:
            raise ConfigError(f"delimiter and quote_char are both {self.delimiter!r}; they must differ")
        object.__setattr__(self, "encoding", _check_encoding(self.encoding))
        if self.column_types is not None:
            object.__setattr__(self, "column_types", _check_column_types(self.column_types))
        object.__setattr__(self, "null_values", _check_null_values(self.null_values))
        if not isinstance(self.keep_default_null_values, bool):
            raise ConfigError(
                f"keep_default_null_values: {self.keep_default_null_values!r} must be true or false"
            )
        object.__setattr__(self, "decimal", _check_char("decimal", self.decimal))
        if self.thousands is not None:
            object.__setattr__(self, "thousands", _check_char("thousands", self.thousands))
        for name in ("decimal", "thousands"):  # either may equal the delimiter in quoted fields, as in pandas
            if getattr(self, name) == self.quote_char:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is also the quote_char")
        if self.thousands == self.decimal:
            raise ConfigError(f"decimal and thousands are both {self.decimal!r}; they must differ")

    @property
    def nulls(self) -> list[str]:
        """Every text read as null in a CSV field (pandas' defaults unless switched off, then ``null_values``)."""
        base = PANDAS_NULL_VALUES if self.keep_default_null_values else ()
        return list(dict.fromkeys((*base, *(self.null_values or ()))))

    @property
    def transcode(self) -> bool:
        """Whether bytes must be decoded to UTF-8 before pyarrow parses them."""
        return codecs.lookup(self.encoding).name not in _UTF8

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
            raise ConfigError(
                f"{OPTIONS_PARAM}: unknown key {unknown[0]!r}{_close(unknown[0], valid)}; "
                f"valid keys: {', '.join(valid)}"
            )
        return cls(**m)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "quote_char": self.quote_char,
            "encoding": self.encoding,
            "column_types": dict(self.column_types) if self.column_types is not None else None,
            "null_values": list(self.null_values or ()),
            "keep_default_null_values": self.keep_default_null_values,
            "decimal": self.decimal,
            "thousands": self.thousands,
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
    #: UTF-16 / UTF-32 files: the codec every range is decoded with (``"utf-16-le"`` ..., from the byte-order
    #: mark or the declared encoding); offsets count the file's bytes. ``""``: the options' encoding.
    codec: str = ""

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
            "codec": self.codec,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextIndex:
        missing = sorted(set(cls.__dataclass_fields__) - set(d) - {"codec"})  # codec: plans of older releases
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
            codec=str(d.get("codec") or ""),
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
        self.width, self.origin = 1, 0  # UTF-16/32: offsets count code units after ``origin`` (the BOM)

    def at(self, offset: int) -> int:
        """The file's byte offset of scanner offset ``offset`` (for messages)."""
        return self.origin + self.width * offset

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
            f"{self.path}: a carriage return (\\r) followed by data outside quotes at byte {self.at(offset)}; "
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
                f"{self.path}: unterminated quoted field: the record starting at byte {self.at(self.rec_start)} "
                f"(line {self.rec_line}) opens a quote that is not closed by the end of the file "
                f"(byte {self.at(self.pos)}). The file is truncated or badly quoted; fix the quoting, or set "
                f"{OPTIONS_PARAM}={{'quote_char': ...}} if {chr(self.quote)!r} is not the quote character"
            )
        if self.rec_sig and self.rec_start < self.pos:
            self._emit(np.array([self.rec_start]), np.array([self.pos]))


_WIDE_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def wide_codec(path: str, head: bytes, options: TextOptions) -> tuple[str, int]:
    """The fixed-width codec a file is read with and the length of its byte-order mark: a UTF-16/32 mark
    wins (whatever ``encoding`` says: such a file cannot be anything else), else a declared UTF-16/32
    ``encoding`` (``"utf-16"`` / ``"utf-32"`` without a mark: little-endian). ``("", 0)``: a byte codec."""
    for bom, codec in _WIDE_BOMS:
        if head.startswith(bom):
            declared = codecs.lookup(options.encoding).name
            if declared in _WIDE and not codec.startswith(declared):
                log.warning("%s: starts with a %s byte-order mark; read as %s, not as the declared %s",
                            path, codec.upper(), codec.upper(), options.encoding)  # fmt: skip
            return codec, len(bom)
    declared = codecs.lookup(options.encoding).name
    if declared in _WIDE:
        width, order = _WIDE[declared]
        return f"utf-{8 * width}-{order}", 0
    return "", 0


def code_units(block: bytes, codec: str) -> bytes:
    """One byte per UTF-16/32 code unit of ``block``: ASCII units as themselves, every other unit (surrogates
    included) as 0x80, which is neither a line break, a quote, a delimiter nor whitespace. Record boundaries
    found on these bytes are the file's, counted in units."""
    width = int(codec[4:6]) // 8
    units = np.frombuffer(block, dtype=("<" if codec.endswith("le") else ">") + f"u{width}")
    return np.where(units < 0x80, units, 0x80).astype(np.uint8).tobytes()


def _range_codec(index: TextIndex, options: TextOptions) -> str | None:
    """The codec a range's bytes are decoded with before parsing (None: UTF-8, parsed as they are)."""
    return index.codec or (options.encoding if options.transcode else None)


def _scan(
    fs: Any, path: str, fmt: str, options: TextOptions, stride: int, block_size: int
) -> tuple[_Scanner, int, str]:
    """Run the scanner over the file; returns it, the offset where scanning began and the file's wide codec
    (``""`` for byte codecs). For UTF-16/32 the scanner counts code units: :func:`_to_bytes` converts."""
    with fs.open(path, "rb") as fh:
        head = fh.read(4)
        codec, start = wide_codec(path, head, options)
        if not codec:
            start = 3 if head[:3] == _BOM else 0
        fh.seek(start)
        scanner = _Scanner(path, fmt, ord(options.quote_char), 0 if codec else start, stride)
        width = int(codec[4:6]) // 8 if codec else 1
        scanner.width, scanner.origin = width, start if codec else 0
        block_size = max(width, block_size - block_size % width)
        rest = b""
        while True:
            block = fh.read(block_size)
            if not block:
                break
            if codec:
                block = rest + block
                cut = len(block) - len(block) % width
                block, rest = block[:cut], block[cut:]
                block = code_units(block, codec)
            scanner.feed(block)
        if rest:
            raise DataCorruptionError(
                f"{path}: {start + scanner.pos * width + len(rest)} bytes is not a whole number of "
                f"{codec.upper()} code units ({width} bytes each): the file is truncated or not {codec.upper()}. "
                f"Re-export it, or set {OPTIONS_PARAM}={{'encoding': ...}} to its encoding"
            )
    scanner.finish()
    if codec:
        _to_bytes(scanner, width, start)
    return scanner, start, codec


def _to_bytes(sc: _Scanner, width: int, origin: int) -> None:
    """Turn a scanner's code-unit offsets (UTF-16/32) into the file's byte offsets."""
    sc.kept = [k * width + origin for k in sc.kept]
    if sc.header is not None:
        sc.header = (sc.header[0] * width + origin, sc.header[1] * width + origin)
    if sc.first_start >= 0:
        sc.first_start = sc.first_start * width + origin
    sc.last_end = sc.last_end * width + origin
    sc.pos = sc.pos * width + origin


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
        sc, start, codec = _scan(fs, path, fmt, options, stride, block_size)
    except FileNotFoundError as err:
        raise SourceError(f"{path} does not exist (or vanished while indexing): {err}") from err
    header = b""
    data_start = start
    if sc.header is not None:
        header = _read_bytes(fs, path, *sc.header)
        newline = "\n".encode(codec) if codec else b"\n"
        header = header if header.endswith(newline) else header + newline
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
        codec=codec,
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


_INT_TEXT = r"^[+-]?[0-9]+$"
_FLOAT_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _number_text(col: pa.ChunkedArray, options: TextOptions) -> pa.ChunkedArray:
    """``col``'s texts with the thousands separator removed and the decimal mark made ``.`` (pandas' rule)."""
    import pyarrow.compute as pc

    if options.thousands is not None:
        col = pc.replace_substring(col, options.thousands, "")
    return pc.replace_substring(col, options.decimal, ".") if options.decimal != "." else col


def _numbers(table: pa.Table, options: TextOptions, types: pa.Schema | None) -> pa.Table:
    """``thousands``: numeric columns were read as text; convert them to their type in ``types``, and a text
    column ``types`` does not list to int64/float64 when every value is a number once separators are gone."""
    import pyarrow.compute as pc

    for i, name in enumerate(table.column_names):
        col = table.column(i)
        target = types.field(name).type if types is not None and name in types.names else None
        if not pa.types.is_string(col.type) or (target is not None and not _is_number(target)):
            continue
        text = _number_text(col, options)
        if target is None:
            valid = text.drop_null()
            if not len(valid) or not pc.all(pc.match_substring_regex(valid, _FLOAT_TEXT)).as_py():
                continue
            target = (
                pa.int64() if pc.all(pc.match_substring_regex(valid, _INT_TEXT)).as_py() else pa.float64()
            )
        pattern = _INT_TEXT if pa.types.is_integer(target) else _FLOAT_TEXT
        bad = pc.invert(pc.fill_null(pc.match_substring_regex(text, pattern), True))
        if pc.any(bad).as_py():  # pyarrow's own wording, so the row and column are reported the same way
            row = pc.index(bad, True).as_py()
            value = text[row].as_py()
            raise pa.ArrowInvalid(
                f"In CSV column #{i}: Row #{row + 2}: CSV conversion error to {target}: invalid value {value!r}"
            )
        table = table.set_column(i, name, pc.cast(text, target))
    return table


def _convert_options(options: TextOptions, types: pa.Schema | None) -> pacsv.ConvertOptions:
    column_types = {f.name: f.type for f in types} if types is not None else {}
    if options.thousands is not None:  # numbers with separators are converted after parsing (_numbers)
        column_types = {k: pa.string() if _is_number(t) else t for k, t in column_types.items()}
    return pacsv.ConvertOptions(
        column_types=column_types,
        null_values=options.nulls,
        strings_can_be_null=True,  # pandas: a null marker is null in a text column too
        quoted_strings_can_be_null=True,  # pandas: '""' and '"NA"' are null like '' and 'NA'
        true_values=_TRUE,
        false_values=_FALSE,
        decimal_point=options.decimal,  # with ``thousands``, "1.234" (decimal ",") stays text for _numbers
    )


def _parse_csv(data: bytes, index: TextIndex, options: TextOptions, types: pa.Schema | None) -> pa.Table:
    buf = index.header + data
    table = pacsv.read_csv(
        pa.py_buffer(buf),
        read_options=pacsv.ReadOptions(block_size=_block_size(len(buf)), use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=options.delimiter,
            quote_char=options.quote_char,
            newlines_in_values=index.newlines_in_values,
        ),
        convert_options=_convert_options(options, types),
    )
    return _numbers(table, options, types) if options.thousands is not None else table


def _parse_json(data: bytes, schema: pa.Schema | None) -> pa.Table:
    parse = pajson.ParseOptions(explicit_schema=schema) if schema is not None else None
    read = pajson.ReadOptions(block_size=_block_size(len(data)), use_threads=False)
    return pajson.read_json(pa.py_buffer(data), read_options=read, parse_options=parse)


_UNDECODABLE = "cannot be decoded as"  # the phrase _hint recognises


def _to_utf8(data: bytes, encoding: str, begin: int = 0) -> bytes:
    """``data`` (file bytes from offset ``begin``) re-encoded from ``encoding`` to UTF-8."""
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as err:
        raise pa.ArrowInvalid(
            f"the byte(s) at file offset {begin + err.start} {_UNDECODABLE} {encoding} ({err.reason})"
        ) from None


def _parse(
    data: bytes, index: TextIndex, options: TextOptions, schema: pa.Schema | None, begin: int = 0
) -> pa.Table:
    """Parse one whole range (the file's bytes from offset ``begin``) in a single pyarrow block,
    single-threaded: workers are processes already, the block fits the largest record, and errors then
    carry row numbers."""
    codec = _range_codec(index, options)
    if codec:
        data = _to_utf8(data, codec, begin)
    if index.fmt == "csv":
        if codec:
            data = _to_utf8(index.header, codec) + data
            index = dataclasses.replace(index, header=b"")
        return _parse_csv(data, index, options, schema)
    return _parse_json(data, schema)


def _column_name(reason: str, index: TextIndex, options: TextOptions) -> str:
    """The column a pyarrow error message points at (CSV: by position in the header)."""
    m = re.search(r"Column\(/([^)/]+)", reason)
    if m:
        return m.group(1)
    m = re.search(r"column #(\d+)", reason)
    names = _header_names(index, options) if m else []
    return names[int(m.group(1))] if m and int(m.group(1)) < len(names) else "<column>"


def _guess_delimiter(header: bytes, current: str) -> str:
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t", "|") if d != current}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"


def _hint(reason: str, index: TextIndex, options: TextOptions) -> str:
    """A sentence telling how to fix the failure pyarrow reported as ``reason``."""
    if "UTF8" in reason or "UTF-8" in reason or _UNDECODABLE in reason:
        return (
            f"the bytes are not {index.codec or options.encoding}: set {OPTIONS_PARAM}={{'encoding': ...}} to the file's "
            "encoding (e.g. cp1252 or latin-1), or re-encode it to UTF-8 (e.g. with iconv)"
        )
    if "conversion error" in reason or "changed from" in reason:
        name = _column_name(reason, index, options)
        declared = options.column_types or {}
        if name in declared:
            return (
                f"the value is not a valid {declared[name]}, as {OPTIONS_PARAM}['column_types'] declares for "
                f"{name!r}: fix the value, declare another type (e.g. string), or let the job quarantine such "
                "rows with recovery={'max_skipped_fraction': ...}"
            )
        mixed = " or make the field hold one JSON kind (e.g. all numbers)" if index.fmt == "jsonl" else ""
        return (
            f"if the column really holds such values, declare its type with "
            f"{OPTIONS_PARAM}={{'column_types': {{{name!r}: 'string'}}}}{mixed}; otherwise fix the value"
        )
    if "Expected" in reason and "columns" in reason:
        codec = _range_codec(index, options)
        header = index.header.decode(codec, errors="replace").encode() if codec else index.header
        guess = _guess_delimiter(header, options.delimiter)
        return (
            f"check the delimiter (now {options.delimiter!r}; e.g. set "
            f"{OPTIONS_PARAM}={{'delimiter': {guess!r}}}) and the quoting (quote_char "
            f"{options.quote_char!r}), or fix the row"
        )
    return "fix or remove the malformed record, or check the file's format and options"


def _error_row(reason: str, index: TextIndex, span: _Span) -> int | None:
    """The file's data row (0-based) that pyarrow's range-relative row number in ``reason`` points at."""
    if index.fmt == "csv":
        m = _CSV_ROW.search(reason)
        return span.first + int(m.group(1)) - 2 if m else None  # pyarrow counts the header as row 1
    m = _JSON_ROW.search(reason)
    return span.first + int(m.group(1)) if m else None


def _where(reason: str, index: TextIndex, span: _Span) -> str:
    row = _error_row(reason, index, span)
    return f" at data row {row + 1} (1-based, header and blank lines not counted)" if row is not None else ""


def _corrupt(
    path: str, index: TextIndex, span: _Span, err: Exception, options: TextOptions
) -> DataCorruptionError:
    reason = str(err).strip()
    where = _where(reason, index, span)
    relative = _CSV_ROW if index.fmt == "csv" else _JSON_ROW
    shown = relative.sub("", reason).strip(" :")
    if not redaction.row_values_logged():  # pyarrow quotes the bad value or prints the whole row
        known = [path, *_header_names(index, options), "string", *(options.column_types or {}).values()]
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
        codec = _range_codec(index, options)
        header = _to_utf8(index.header, codec) if codec else index.header
        parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote_char)
        return pacsv.read_csv(pa.py_buffer(header), parse_options=parse).column_names
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


def _record_starts(path: str, data: bytes, index: TextIndex, options: TextOptions, span: _Span) -> np.ndarray:
    """The file offsets where each of ``span``'s records starts, found by splitting ``span``'s bytes (``data``)
    into records again (the index keeps every ``stride``-th offset only)."""
    wide = int(index.codec[4:6]) // 8 if index.codec else 0
    scanner = _Scanner(path, index.fmt, ord(options.quote_char), 0 if wide else span.begin, 1)
    scanner.header = (scanner.pos, scanner.pos)  # the span holds data records only
    if wide:
        scanner.width, scanner.origin = wide, span.begin
    scanner.feed(code_units(data, index.codec) if wide else data)
    scanner.finish()
    if wide:
        _to_bytes(scanner, wide, span.begin)
    starts = np.concatenate(scanner.kept) if scanner.kept else np.empty(0, dtype=np.int64)
    if len(starts) != span.count:
        raise DataCorruptionError(
            f"{path}: records {span.first}-{span.first + span.count} (bytes {span.begin}-{span.end}) split "
            f"into {len(starts)} records, but the index found {span.count}; the file changed since indexing"
        )
    return starts


def _exact(
    path: str, data: bytes, index: TextIndex, options: TextOptions, span: _Span, start: int, stop: int
) -> tuple[bytes, _Span]:
    """The bytes of records ``[start, stop)`` alone, cut out of ``span``'s bytes (``data``)."""
    starts = _record_starts(path, data, index, options, span)
    begin = int(starts[start - span.first])
    end = int(starts[stop - span.first]) if stop - span.first < len(starts) else span.end
    return data[begin - span.begin : end - span.begin], _Span(start, stop - start, begin, end)


_STRING_INDEX = re.compile(r"string index (\d+)")


def _check_utf8(table: pa.Table) -> None:
    """JSON Lines: pyarrow's JSON reader keeps bytes that are not UTF-8 in string values as they are; such a
    value is an undecodable record (named by row, 0-based in the range, when the column is a top-level string)."""
    for i, (name, col) in enumerate(zip(table.column_names, table.columns, strict=True)):
        seen = 0
        for chunk in col.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as err:
                m = _STRING_INDEX.search(str(err))
                flat = pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)
                row = f" in row {seen + int(m.group(1))}" if m and flat else ""
                raise pa.ArrowInvalid(f"a value of column #{i} ({name}) {_UNDECODABLE} UTF-8{row}") from None
            seen += len(chunk)


def _read_range(
    path: str, data: bytes, index: TextIndex, options: TextOptions, schema: pa.Schema, span: _Span
) -> pa.Table:
    """``span``'s records (``data``: their bytes alone) as a table with exactly ``schema``."""
    table = _parse(data, index, options, schema, span.begin)
    if index.fmt == "jsonl":
        _check_utf8(table)
    return _conform(path, table, schema, span)


@dataclass(frozen=True)
class BadRecord:
    """A data record that cannot be read: row ``row`` (0-based, header and blank lines not counted) in bytes
    ``[begin, end)`` of the file, and why (the message names the fix)."""

    row: int
    begin: int
    end: int
    reason: str


class _Search:
    """The records of one span that cannot be read (see :func:`find_bad_records`)."""

    def __init__(
        self, path: str, index: TextIndex, options: TextOptions, schema: pa.Schema, span: _Span
    ) -> None:
        self.path, self.index, self.options, self.schema, self.span = path, index, options, schema, span
        self.data = b""
        self.bounds = np.empty(0, dtype=np.int64)

    def load(self, fs: Any) -> None:
        self.data = _fetch(fs, self.path, self.index, self.span)
        starts = _record_starts(self.path, self.data, self.index, self.options, self.span)
        self.bounds = np.append(starts, self.span.end)

    def attempt(self, a: int, b: int) -> tuple[_Span, Exception | None]:
        """Read records ``[a, b)`` alone: their span and the error (None: they read)."""
        lo, hi = int(self.bounds[a - self.span.first]), int(self.bounds[b - self.span.first])
        sub, data = _Span(a, b - a, lo, hi), self.data[lo - self.span.begin : hi - self.span.begin]
        try:
            table = _read_range(self.path, data, self.index, self.options, self.schema, sub)
        except (*_ARROW_ERRORS, DataCorruptionError) as err:
            return sub, err
        if table.num_rows == b - a:
            return sub, None
        return sub, DataCorruptionError(
            f"{self.path}: records {a}-{b} (bytes {lo}-{hi}) parsed into {table.num_rows} rows; check the "
            f"quoting and line endings, and {OPTIONS_PARAM}"
        )

    def read_together(self, ranges: list[tuple[int, int]]) -> bool:
        """Whether the records of ``ranges`` read in one parse, their bytes joined (one parse instead of one
        per range between undecodable rows)."""
        lo = [int(self.bounds[a - self.span.first]) - self.span.begin for a, _ in ranges]
        hi = [int(self.bounds[b - self.span.first]) - self.span.begin for _, b in ranges]
        data = b"".join(self.data[x:y] for x, y in zip(lo, hi, strict=True))
        count = sum(b - a for a, b in ranges)
        joined = _Span(ranges[0][0], count, self.span.begin + lo[0], self.span.begin + hi[-1])
        try:
            table = _read_range(self.path, data, self.index, self.options, self.schema, joined)
        except (*_ARROW_ERRORS, DataCorruptionError):
            return False
        return table.num_rows == count

    def bad(self, sub: _Span, err: Exception) -> BadRecord:
        reason = (
            str(err)
            if isinstance(err, DataCorruptionError)
            else str(_corrupt(self.path, self.index, sub, err, self.options))
        )
        return BadRecord(sub.first, sub.begin, sub.end, reason)

    def undecodable(self, a: int, b: int, limit: int) -> list[int]:
        """UTF-8 CSV: the rows of ``[a, b)`` whose text fields are not UTF-8 (up to one more than ``limit``),
        found in one parse with the text columns read as bytes; ``[]`` when that parse fails too."""
        text = {f.name for f in self.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
        if self.index.fmt != "csv" or _range_codec(self.index, self.options) or not text:
            return []
        as_bytes = pa.schema([pa.field(f.name, pa.binary()) if f.name in text else f for f in self.schema])
        try:
            table = _parse(self.data, self.index, self.options, as_bytes, self.span.begin)
        except _ARROW_ERRORS:
            return []
        if table.num_rows != self.span.count:
            return []
        rows = [self.span.first + i for i in _undecodable_rows(table)]
        return [r for r in rows if a <= r < b][: limit + 1]

    def step(self, a: int, b: int, found: list[BadRecord]) -> list[tuple[int, int]]:
        """Search records ``[a, b)``: the ranges still to search."""
        sub, err = self.attempt(a, b)
        if err is None:
            return []
        if b - a == 1:
            found.append(self.bad(sub, err))
            return []
        row = None if isinstance(err, DataCorruptionError) else _error_row(str(err), self.index, sub)
        if row is not None and a <= row < b:
            one, err1 = self.attempt(row, row + 1)
            if err1 is not None:  # pyarrow's row fails alone: bad; search the records around it
                found.append(self.bad(one, err1))
                mid = row + 1 + (b - row - 1) // 2
                return [r for r in ((mid, b), (row + 1, mid), (a, row)) if r[0] < r[1]]
        mid = a + (b - a) // 2
        return [(mid, b), (a, mid)]


def find_bad_records(
    fs: Any,
    path: str,
    index: TextIndex,
    start: int,
    stop: int,
    schema: pa.Schema,
    options: TextOptions,
    *,
    limit: int,
) -> tuple[list[BadRecord], bool]:
    """The records of ``[start, stop)`` that cannot be read with ``schema``, in row order, and whether the
    search was complete (False: it stopped after finding more than ``limit``).

    A record is bad when it cannot be read on its own (undecodable bytes, a value not of its column's type,
    a wrong number of fields): the same rows whatever the row ranges a job reads, so quarantining exactly
    these is chunk-invariant. A range that fails is searched through pyarrow's row number (checked on that
    row alone) or halved; a file that changed since indexing raises ``DataCorruptionError``.
    """
    if start >= stop:
        return [], True
    search = _Search(path, index, options, schema, _span(index, start, stop))
    search.load(fs)
    found: list[BadRecord] = []
    todo, pos = [], start
    for row in [*search.undecodable(start, stop, limit), stop]:  # found in one pass, each checked alone
        if pos < row:
            todo.append((pos, row))
        if row < stop:
            todo += search.step(row, row + 1, found)
        pos = row + 1
    if len(todo) > 1 and search.read_together(todo):
        todo = []  # the records between the undecodable ones read: nothing else to search
    todo.reverse()  # searched in row order
    while todo and len(found) <= limit:
        todo += search.step(*todo.pop(), found)
    return sorted(found, key=lambda r: r.row), not todo and len(found) <= limit


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
        table = _read_range(path, data, index, options, schema, span)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        row = _error_row(str(err), index, span)
        if row is None or start <= row < stop:
            raise _corrupt(path, index, span, err, options) from err
        # the bad record is in the stride but not in these rows (another chunk's): parse these rows alone
        data, span = _exact(path, data, index, options, span, start, stop)
        try:
            table = _read_range(path, data, index, options, schema, span)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err2:
            raise _corrupt(path, index, span, err2, options) from err2
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


def _typing_spans(index: TextIndex, target_bytes: int) -> list[_Span]:
    """Stride-aligned spans of about ``target_bytes`` each that cover every record of the file, in order."""
    spans: list[_Span] = []
    slot, n = 0, len(index.offsets)
    while slot < n:
        nxt = max(
            slot + 1, bisect.bisect_left(index.offsets, index.offsets[slot] + target_bytes, lo=slot + 1)
        )
        end = index.offsets[nxt] if nxt < n else index.end
        first = slot * index.stride
        spans.append(_Span(first, min(nxt * index.stride, index.rows) - first, index.offsets[slot], end))
        slot = nxt
    return spans


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _typing_types(index: TextIndex, options: TextOptions) -> pa.Schema | None:
    """What the typing pass parses with: CSV columns with a declared type are read as text there (their
    values are converted, and reported or quarantined per chunk, when the rows are read); JSON Lines
    parses declared fields with their type (a JSON kind cannot be read as text)."""
    declared = options.arrow_types()
    if not declared:
        return None
    if index.fmt == "csv":
        return pa.schema([(k, pa.string()) for k in declared])
    return pa.schema(list(declared.items()))


_MAX_UNTYPED = 100  # malformed records one typing range may leave to the chunks that hold them


def _span_schema(fs: Any, path: str, index: TextIndex, options: TextOptions, span: _Span) -> list[pa.Schema]:
    data = _fetch(fs, path, index, span) if span.count else b""
    skipped: list[tuple[int, bool]] = []  # (data row, whether its bytes are undecodable)
    schemas = _typed(path, data, index, options, span, skipped)
    if skipped:
        undecodable = sum(bad for _, bad in skipped)
        fix = (
            f"; {undecodable} of them hold bytes that are not {index.codec or options.encoding}: if the file has "
            f"another encoding, set {OPTIONS_PARAM}={{'encoding': ...}} (e.g. 'cp1252', 'latin-1') or re-encode "
            "it as UTF-8 (e.g. with iconv)"
        )
        log.warning(
            "%s: %d malformed record(s) (data rows %s, 1-based) were left out of the typing pass; "
            "reading them fails the job naming the row, or quarantines them under max_skipped_fraction%s",
            path, len(skipped), sorted(r + 1 for r, _ in skipped)[:10], fix if undecodable else "",
        )  # fmt: skip
    return schemas


def _binary_names(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]


def _undecodable_rows(table: pa.Table) -> list[int]:
    """CSV: pyarrow types a column binary when some of its values are not UTF-8; the rows (0-based in the
    range) holding such values."""
    rows: set[int] = set()
    for name in _binary_names(table.schema):
        for i, value in enumerate(table.column(name).to_pylist()):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                rows.add(i)
    return sorted(rows)


def _typing_parse(
    data: bytes, index: TextIndex, options: TextOptions, types: pa.Schema | None, begin: int
) -> pa.Table:
    if index.fmt == "jsonl" and types is not None:  # fields in file order unless inference needs them
        try:
            return _parse(data, index, options, None, begin)
        except _ARROW_ERRORS:
            return _parse(data, index, options, types, begin)  # declared fields first
    return _parse(data, index, options, types, begin)  # the other columns are inferred


def _typed(
    path: str,
    data: bytes,
    index: TextIndex,
    options: TextOptions,
    span: _Span,
    skipped: list[tuple[int, bool]],
) -> list[pa.Schema]:
    """The inferred schema(s) of ``span``'s records. A malformed record (pyarrow names its row) and the records
    with undecodable bytes are left out and the records around them typed on their own, so a bad row is
    quarantined with (or fails) the chunk that holds it, not the whole job at planning, and changes no type."""
    try:
        table = _typing_parse(data, index, options, _typing_types(index, options), span.begin)
    except _ARROW_ERRORS as err:
        row = _error_row(str(err), index, span)
        if row is None or not span.first <= row < span.first + span.count or len(skipped) >= _MAX_UNTYPED:
            raise _corrupt(path, index, span, err, options) from err
        return _typed_around(path, data, index, options, span, skipped, [row], undecodable=False)
    if table.num_rows != span.count:
        raise DataCorruptionError(
            f"{path}: records {span.first}-{span.first + span.count} (bytes {span.begin}-{span.end}) "
            f"parsed into {table.num_rows} rows, but the index found {span.count}; check the quoting and "
            f"line endings, and {OPTIONS_PARAM}"
        )
    bad = _undecodable_rows(table) if index.fmt == "csv" else []
    if bad and len(bad) < span.count:
        rows = [span.first + i for i in bad]
        return _typed_around(path, data, index, options, span, skipped, rows, undecodable=True)
    return [table.schema]  # (all rows undecodable: the column is read as text, see _undecodable_as_text)


def _typed_around(
    path: str,
    data: bytes,
    index: TextIndex,
    options: TextOptions,
    span: _Span,
    skipped: list[tuple[int, bool]],
    rows: list[int],
    *,
    undecodable: bool,
) -> list[pa.Schema]:
    """The schemas of ``span``'s records but ``rows`` (sorted file rows), typed run by run."""
    skipped.extend((r, undecodable) for r in rows)
    starts = _record_starts(path, data, index, options, span)
    bounds = np.append(starts, span.end)
    out, pos = [], span.first
    for r in [*rows, span.first + span.count]:
        if pos < r:
            lo, hi = int(bounds[pos - span.first]), int(bounds[r - span.first])
            part = data[lo - span.begin : hi - span.begin]
            out += _typed(path, part, index, options, _Span(pos, r - pos, lo, hi), skipped)
        pos = r + 1
    return out


def _check_names(path: str, schema: pa.Schema) -> None:
    dup = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if dup:
        raise DataCorruptionError(
            f"{path}: the header repeats column name(s) {sorted(set(dup))}; "
            "rename them so every column name is unique"
        )


def _undecodable_as_text(path: str, fields: list[pa.Field], options: TextOptions) -> list[pa.Field]:
    """Columns typed binary (bytes that are not valid UTF-8 somewhere in the file) are text columns: the
    chunks that hold such bytes fail when read (file, row and the encoding fix named; skipped under
    ``max_skipped_fraction``), the others are read. Planning does not fail for one bad byte."""
    binary = [f.name for f in fields if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if binary:
        log.warning(
            "%s: column(s) %s hold bytes that are not valid %s; the chunks holding them will fail (or be "
            "skipped under max_skipped_fraction). Set %s={'encoding': ...} to the file's encoding (e.g. "
            "'cp1252', 'latin-1') or re-encode the file as UTF-8 (e.g. with iconv)",
            path, binary, options.encoding, OPTIONS_PARAM,
        )  # fmt: skip
    return [pa.field(f.name, pa.string()) if f.name in binary else f for f in fields]


def _apply_declared(path: str, fmt: str, schema: pa.Schema, options: TextOptions) -> pa.Schema:
    declared = options.arrow_types()
    unknown = [n for n in declared if n not in schema.names]
    if unknown and fmt == "csv":
        raise ConfigError(
            f"column_types names column {unknown[0]!r}, which is not in the header of {path}"
            f"{_close(unknown[0], schema.names)}; its columns are {schema.names}"
        )
    fields = [pa.field(f.name, declared.get(f.name, f.type)) for f in schema]
    return pa.schema(fields + [pa.field(n, declared[n]) for n in unknown])


def infer_text_schema(
    fs: Any,
    path: str,
    index: TextIndex,
    options: TextOptions,
    *,
    span_bytes: int | None = None,
    threads: int | None = None,
) -> pa.Schema:
    """The schema of the whole file: every row is typed (parsed with inference) in ranges of about
    ``span_bytes`` (default ``_TYPING_BYTES``), ``threads`` at a time (pyarrow parses without the GIL), and the ranges' types are
    reconciled with :func:`merge_types` (int64 -> float64 -> string), so a type that changes late in the
    file widens the column before any chunk is read.

    ``column_types`` override the inferred types. For JSON Lines a declared column that the file does not
    hold is appended (there is no header to check it against). A header-only CSV keeps its columns (typed
    null, unless declared).
    """
    t0 = time.perf_counter()
    spans = _typing_spans(index, max(1, span_bytes or _TYPING_BYTES))
    if not spans:  # a CSV header alone still names the columns
        spans = [_Span(0, 0, 0, 0)] if index.header else []
    workers = max(1, min(len(spans), threads or min(usable_cpus(), 8)))
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="abp-typing") as pool:
            found = list(pool.map(lambda s: _span_schema(fs, path, index, options, s), spans))
    else:
        found = [_span_schema(fs, path, index, options, s) for s in spans]
    fields: list[pa.Field] = []
    for schema in (schema for group in found for schema in group):
        _check_names(path, schema)
        fields = _merge_fields(fields, list(schema)) if fields else list(schema)
    fields = _undecodable_as_text(path, fields, options)
    if index.rows:
        seconds = time.perf_counter() - t0
        log.info(
            "%s: typed %d rows (%d bytes) in %.2f s, %d range(s) on %d thread(s)",
            path, index.rows, index.end - index.data_start, seconds, len(spans), workers,
        )  # fmt: skip
    return _apply_declared(path, index.fmt, pa.schema(fields), options)
