"""Vectorised 64-bit hashes of Arrow columns and rows, computed with numpy straight from the Arrow buffers.

No Python object per value, no pandas copy, and no thread pool: plain numpy in the calling thread, so it is
safe in forked chunk workers whatever the parent process ran (polars' pool is not, see ``docs/tuning.md``).
A hash is a function of the value alone (never of the chunk, its dictionary or its layout), so chunk states
merge exactly; the only inexactness is a 64-bit collision (about n^2 / 2^65, as in
:mod:`~airflow_batch_provider.processors.hashing`). The function is part of the processors' ``version``.

- numbers, timestamps, booleans: the value's 64 bits (-0.0 as 0.0, NaN as null), mixed (splitmix64);
- text (and dictionary-encoded text): 8-byte words of the UTF-8 bytes folded with splitmix64, then the length;
  values longer than ``LONG_TEXT`` bytes by BLAKE2b (rare; keeps the vector loop short);
- lists, structs, maps: the canonical hash of :mod:`~airflow_batch_provider.processors.nested_hashing`;
- anything else (decimals, binary, ...): pandas' ``hash_pandas_object`` of the column;
- null: one constant per type family; a row hash folds its columns' hashes in column order.

No Airflow imports.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC909)
#: the hash of a null value (every type)
NULL_HASH = _NULL
_ROW = np.uint64(0x3C6EF372FE94F82B)
LONG_TEXT = 256
_MASKS = np.array([(1 << (8 * t)) - 1 for t in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64), vectorised; wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _C1
        z = (z ^ (z >> np.uint64(27))) * _C2
        return z ^ (z >> np.uint64(31))


def _single(col: Any) -> Any:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        return col.combine_chunks() if len(col) else pa.array([], type=col.type)
    return col


def _valid(arr: Any) -> np.ndarray | None:
    """Boolean validity per value, or None when there is no null."""
    if not arr.null_count:
        return None
    import pyarrow.compute as pc

    return pc.is_valid(arr).to_numpy(zero_copy_only=False)


def _text_bytes(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets int64, data uint8)`` of a string array (a slice's offset applied; string views cast)."""
    import pyarrow as pa

    width: type[np.signedinteger[Any]]
    if pa.types.is_string(arr.type):
        width = np.int32
    else:
        width = np.int64
        if not pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.large_string())
    buffers = arr.buffers()
    size = np.dtype(width).itemsize
    offsets = np.frombuffer(buffers[1], dtype=width, count=len(arr) + 1, offset=arr.offset * size)
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    return offsets, data


def text_hashes(arr: Any) -> np.ndarray:
    """uint64 hash of every value of a string array (nulls hash as :data:`_NULL`)."""
    offsets, data = _text_bytes(arr)
    n = len(offsets) - 1
    starts, lengths = offsets[:-1], np.diff(offsets)
    width = int(lengths[0]) if n else 0
    if 0 < width <= LONG_TEXT and bool((lengths == width).all()):
        h = _fixed_width_hashes(data[offsets[0] : offsets[0] + n * width], n, width)
    else:
        h = _variable_width_hashes(starts, lengths, data)
    valid = _valid(arr)
    if valid is not None:
        h[~valid] = _NULL
    return h[:n]


def _fixed_width_hashes(data: np.ndarray, n: int, width: int) -> np.ndarray:
    """:func:`text_hashes` of ``n`` values of ``width`` bytes each, stored back to back (ids, codes): the same
    hashes as :func:`_variable_width_hashes`, with the 8-byte words read as columns of one reshaped block."""
    words_n = -(-width // 8)
    block = np.zeros((n, words_n * 8), np.uint8)
    block[:, :width] = data.reshape(n, width)
    words = block.view("<u8")
    h = mix(np.full(n, np.uint64(width), dtype=np.uint64) ^ _ROW)
    for word in range(words_n):
        h = mix(h ^ words[:, word])
    return h


def _variable_width_hashes(starts: np.ndarray, lengths: np.ndarray, data: np.ndarray) -> np.ndarray:
    """:func:`text_hashes` of the values at ``data[starts[i] : starts[i] + lengths[i]]`` (nulls not masked)."""
    # the little-endian 8-byte word at byte offset o, from the two aligned words around it
    words_n = len(data) // 8 + 2
    padded = np.zeros(words_n * 8, np.uint8)
    padded[: len(data)] = data
    aligned = padded.view("<u8")
    h = mix(lengths.astype(np.uint64) ^ _ROW)
    short = lengths <= LONG_TEXT
    idx = np.flatnonzero(short & (lengths > 0))
    word = 0
    while len(idx):
        at = starts[idx] + 8 * word
        take = np.minimum(lengths[idx] - 8 * word, 8)
        q, r = at >> 3, (at & 7).astype(np.uint64) * np.uint64(8)
        # (x << 1) << (63 - r) is x << (64 - r), and 0 when r == 0 (a shift by 64 is undefined)
        words = (aligned[q] >> r) | ((aligned[q + 1] << np.uint64(1)) << (np.uint64(63) - r))
        words &= _MASKS[take]
        h[idx] = mix(h[idx] ^ words)
        word += 1
        idx = idx[lengths[idx] > 8 * word]
    for i in np.flatnonzero(~short).tolist():
        digest = hashlib.blake2b(data[starts[i] : starts[i] + lengths[i]].tobytes(), digest_size=8).digest()
        h[i] = np.frombuffer(digest, dtype="<u8")[0]
    return h


def _bits(arr: Any) -> np.ndarray | None:
    """The 64-bit pattern of every value of a numeric, temporal or boolean array, or None for other types."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_floating(t):
        values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False) + 0.0  # -0.0 -> 0.0
        bits = values.view(np.uint64).copy()
        bits[np.isnan(values)] = _NULL
        return bits
    if pa.types.is_boolean(t):
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
    if pa.types.is_integer(t):
        wide = pa.uint64() if t == pa.uint64() else pa.int64()
        return arr.cast(wide).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    if pa.types.is_temporal(t) and t.bit_width in (32, 64):
        # date32 / time32 cast only to int32 (pyarrow has no date32 -> int64 cast), then widen
        ints = arr.cast(pa.int32() if t.bit_width == 32 else pa.int64()).cast(pa.int64())
        return ints.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    return None


def column_hashes(col: Any) -> np.ndarray:
    """uint64 hash of every value of an Arrow column (see the module docstring); nulls hash alike."""
    import pyarrow as pa

    arr = _single(col)
    t = arr.type
    if pa.types.is_dictionary(t):
        dictionary = column_hashes(arr.dictionary)
        indices = arr.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        h = dictionary[indices] if len(dictionary) else np.full(len(arr), _NULL, dtype=np.uint64)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return text_hashes(arr)
    elif pa.types.is_nested(t) and not pa.types.is_union(t):
        from airflow_batch_provider.processors.nested_hashing import nested_hashes

        return nested_hashes(arr)
    else:
        bits = _bits(arr)
        if bits is None:
            import pandas as pd

            from airflow_batch_provider.processors.hashing import _EMPTY

            series = arr.to_pandas()
            if not len(series):
                return _EMPTY
            return pd.util.hash_pandas_object(series, index=False).to_numpy(dtype=np.uint64)
        h = mix(bits)
    valid = _valid(arr)
    if valid is not None:
        h[~valid] = _NULL
    if pa.types.is_floating(t):
        h[bits == _NULL] = _NULL  # NaN hashes as null
    return h


def row_hashes(
    table: Any, columns: list[str] | None = None, *, known: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """uint64 hash of every row over ``columns`` (all by default): nulls equal, NaN as null. ``known``: column
    position -> :func:`column_hashes` of that column, already computed."""
    names = list(table.column_names)
    positions = list(range(len(names))) if columns is None else [names.index(c) for c in columns]
    h = np.full(table.num_rows, _ROW, dtype=np.uint64)
    known = known or {}
    with np.errstate(over="ignore"):
        for i in positions:
            col = known[i] if i in known else column_hashes(table.column(i))
            h = mix(h * _GOLDEN ^ col)
    return h
