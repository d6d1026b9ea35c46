"""A canonical 64-bit hash of nested Arrow values (lists, large and fixed-size lists, structs, maps), vectorised.

The hash is a function of the value alone, never of its layout: ``list`` and ``large_list`` (and a fixed-size
list) of the same elements hash alike, a slice hashes like the same rows of the whole array, and the element
hashes come from :func:`arrow_hashing.column_hashes` (so text, numbers and timestamps hash as they do at the top
level). Used for distinct counts of nested columns and for duplicate rows. Rules:

- list: its length, then each element's hash mixed with its position, summed (order matters);
- map: its length, then each entry's (key, value) hash summed without position (a map is a set of keys);
- struct: its fields' hashes folded in field order;
- null: one constant per family (a null list differs from an empty one).

No Airflow imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_LIST = np.uint64(0x510E527FADE682D1)
_MAP = np.uint64(0x9B05688C2B3E6C1F)
_STRUCT = np.uint64(0x1F83D9ABFB41BD6B)
_NULL_NESTED = np.uint64(0x5BE0CD19137E2179)


def is_nested(arrow_type: Any) -> bool:
    import pyarrow as pa

    t = pa.types
    return bool(
        t.is_list(arrow_type)
        or t.is_large_list(arrow_type)
        or t.is_fixed_size_list(arrow_type)
        or t.is_list_view(arrow_type)
        or t.is_large_list_view(arrow_type)
        or t.is_struct(arrow_type)
        or t.is_map(arrow_type)
    )


def list_parts(arr: Any) -> tuple[np.ndarray, Any]:
    """``(lengths, values)`` of a list-like array (list, large, fixed-size, view, map): the length of every row
    (0 for a null row) and the elements of the non-null rows, in row order, a slice's offset applied (a map's
    elements are its ``key``/``value`` entries as a struct array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_map(arr.type):
        offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        entries = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        rebased = pa.array(offsets - offsets[0], pa.int64())
        valid = pc.is_valid(arr)
        arr = pa.LargeListArray.from_arrays(
            rebased, entries, mask=pc.invert(valid) if arr.null_count else None
        )
    elif pa.types.is_list_view(arr.type) or pa.types.is_large_list_view(arr.type):
        arr = arr.cast(pa.large_list(arr.type.value_field))
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths, arr.flatten()


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The wrapping uint64 sum of each row's run of ``values`` (rows of ``lengths`` values, in order)."""
    with np.errstate(over="ignore"):
        sums = np.concatenate([[np.uint64(0)], np.cumsum(values, dtype=np.uint64)])
    ends = np.cumsum(lengths)
    with np.errstate(over="ignore"):
        return sums[ends] - sums[ends - lengths]


def nested_hashes(arr: Any) -> np.ndarray:
    """uint64 hash of every value of a nested Arrow array (nulls hash alike; see the module docstring)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_batch_provider.processors.arrow_hashing import column_hashes, mix

    t = arr.type
    if pa.types.is_struct(t):
        h = np.full(len(arr), mix(np.array([_STRUCT ^ np.uint64(t.num_fields)]))[0], dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i in range(t.num_fields):
                h = mix(h * np.uint64(0x9E3779B97F4A7C15) ^ column_hashes(pc.struct_field(arr, [i])))
    else:
        mapped = pa.types.is_map(t)
        lengths, values = list_parts(arr)
        element = column_hashes(values)
        if not mapped and len(element):
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            position = np.arange(len(element), dtype=np.uint64) - starts.astype(np.uint64)
            element = mix(element ^ mix(position ^ _LIST))
        elif len(element):
            element = mix(element ^ _MAP)
        with np.errstate(over="ignore"):
            h = mix(
                _segment_sums(element, lengths) ^ mix(lengths.astype(np.uint64) ^ (_MAP if mapped else _LIST))
            )
    if arr.null_count:
        h[~pc.is_valid(arr).to_numpy(zero_copy_only=False)] = _NULL_NESTED
    return h
