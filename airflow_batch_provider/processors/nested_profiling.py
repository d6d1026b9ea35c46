"""``data_profiling`` of nested columns (lists, large and fixed-size lists, maps, structs) and of the scalar types
whose Python objects cannot hold every value (dates past 9999, times with nanoseconds), on Arrow alone.

A nested column's state holds its own numbers (nulls; distinct values by the canonical hash of
:mod:`~airflow_batch_provider.processors.nested_hashing`; for lists and maps the empty count and the length
statistics) and the state of each child, profiled like a column of its own:

- a list's elements: ``tags[]`` (their rows are the elements of the non-null lists; nested lists ``m[][]``);
- a struct's fields: ``address.city`` (a row whose struct is null is null in every field);
- a map's keys and values: ``attrs.key``, ``attrs.value``.

Children of numbers, booleans, timestamps and text use the kernels of
:mod:`~airflow_batch_provider.processors.profiling_kernels` (numeric children get histogram edges from the
statistics pass like top-level columns); dates are profiled as timestamps; other types (decimals, times,
durations, binary) count nulls, distinct values and, rendered as text, top values. Every part merges exactly in
source order, so the profile does not depend on chunking. No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from airflow_batch_provider.processors import profiling_kernels as pk
from airflow_batch_provider.processors.arrow_hashing import column_hashes
from airflow_batch_provider.processors.hashing import HashSet, sorted_unique
from airflow_batch_provider.processors.nested_hashing import is_nested, list_parts

KINDS = ("list", "struct", "map")
#: the numbers reported for a list's or map's lengths
LENGTH_KEYS = ("min", "max", "mean", "std", "quantiles", "quantiles_exact")


def handles(arrow_type: Any) -> bool:
    """True for a top-level column this module profiles: nested, or a date/time (no Python-object detour)."""
    import pyarrow as pa

    return is_nested(arrow_type) or pa.types.is_date(arrow_type) or pa.types.is_time(arrow_type)


def children(path: str, arrow_type: Any) -> list[tuple[str, Any]]:
    """``(path, type)`` of the direct children of a nested type."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return [(f"{path}.{f.name}", f.type) for f in arrow_type]
    if pa.types.is_map(arrow_type):
        return [(f"{path}.key", arrow_type.key_type), (f"{path}.value", arrow_type.item_type)]
    return [(f"{path}[]", arrow_type.value_type)]


def numeric_paths(path: str, arrow_type: Any) -> list[str]:
    """The paths of the integer/float leaves under a nested type (their histograms need the statistics pass)."""
    import pyarrow as pa

    if not is_nested(arrow_type):
        numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
        return [path] if numeric else []
    return [p for child, t in children(path, arrow_type) for p in numeric_paths(child, t)]


def stats_columns(schema: Any, selected: list[str] | None) -> list[str]:
    """The nested columns with numeric leaves (read by the statistics pass)."""
    return [
        f.name
        for f in schema
        if (selected is None or f.name in selected) and is_nested(f.type) and numeric_paths(f.name, f.type)
    ]


def _child_arrays(arr: Any) -> list[Any]:
    """The children of a nested array, in :func:`children` order (a null struct row is null in each field)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_struct(arr.type):
        return [pc.struct_field(arr, [i]) for i in range(arr.type.num_fields)]
    _, values = list_parts(arr)
    if pa.types.is_map(arr.type):
        return [pc.struct_field(values, [0]), pc.struct_field(values, [1])]
    return [values]


def ranges(name: str, col: Any) -> dict[str, list[float] | None]:
    """Statistics pass: the finite ``[min, max]`` of every numeric leaf under a nested column."""
    out: dict[str, list[float] | None] = {}
    _ranges(name, pk._single(col), out)
    return out


def _ranges(path: str, arr: Any, out: dict[str, Any]) -> None:
    import pyarrow as pa

    if not is_nested(arr.type):
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            out[path] = pk.finite_range(arr)
        return
    for (child, _), values in zip(children(path, arr.type), _child_arrays(arr), strict=True):
        _ranges(child, values, out)


class _Context:
    """What the states of one column's tree need from the processor: settings, edges and spill file names."""

    def __init__(self, processor: Any, key: str) -> None:
        self.bits = processor.quantile_bits
        self.limit = processor.exact_quantile_limit
        self.capacity = processor.top_values_capacity
        self.edges = getattr(processor, "edges_", None) or {}
        self.spill: Callable[[str], str | None] = processor._spill_to
        self.key, self.count = key, 0

    def spill_to(self) -> str | None:
        self.count += 1
        return self.spill(f"{self.key}-{self.count}")


def column_state(processor: Any, j: int, name: str, col: Any) -> tuple[dict[str, Any], np.ndarray]:
    """One top-level column's state (see the module docstring), and its per-row hashes (for duplicate rows)."""
    arr = pk._single(col)
    ctx = _Context(processor, f"x{j}")
    return state_of(name, arr, ctx), column_hashes(arr)


def state_of(path: str, arr: Any, ctx: _Context) -> dict[str, Any]:
    """The state of ``arr`` (the values at ``path``), nested or not; ``n``: how many values it has."""
    state = _nested_state(path, arr, ctx) if is_nested(arr.type) else _leaf_state(path, arr, ctx)
    state["n"] = len(arr)
    return state


def _hash_set(arr: Any, hashes: np.ndarray, ctx: _Context) -> dict[str, Any]:
    import pyarrow.compute as pc

    keys = HashSet()
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False) if arr.null_count else None
    keys.values = sorted_unique(hashes if valid is None else hashes[valid])
    return keys.to_state(spill_to=ctx.spill_to())


def _nested_state(path: str, arr: Any, ctx: _Context) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    kind = "struct" if pa.types.is_struct(t) else "map" if pa.types.is_map(t) else "list"
    kids = {
        child: state_of(child, values, ctx)
        for (child, _), values in zip(children(path, t), _child_arrays(arr), strict=True)
    }
    state: dict[str, Any] = {
        "t": kind,
        "dtype": str(t),
        "nulls": int(arr.null_count),
        "hs": _hash_set(arr, column_hashes(arr), ctx),
        # a pointer per row and what the children hold (a layout-free estimate: the same for any chunking)
        "mem": int(8 * len(arr) + sum(k["mem"] for k in kids.values())),
        "kids": kids,
    }
    if kind != "struct":
        lengths, _ = list_parts(arr)
        present = lengths[pc.is_valid(arr).to_numpy(zero_copy_only=False)] if arr.null_count else lengths
        state["empty"] = int((present == 0).sum())
        state["len"] = pk.numeric_state(
            pa.array(present, pa.int64()), "integer", "int64", None, ctx.bits, ctx.limit, ctx.spill_to()
        )
    return state


def _leaf_state(path: str, arr: Any, ctx: _Context) -> dict[str, Any]:
    """A scalar column (or child) by its Arrow type."""
    import pyarrow as pa

    t, n = arr.type, len(arr)
    width = max(1, (t.bit_width if _fixed_width(t) else 64) // 8)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        kind = "integer" if pa.types.is_integer(t) else "float"
        state = pk.numeric_state(arr, kind, str(t), ctx.edges.get(path), ctx.bits, ctx.limit, ctx.spill_to())
        return {**state, "mem": width * n}
    if pa.types.is_boolean(t):
        return {**pk.boolean_state(arr, str(t), ctx.spill_to(), ctx.capacity), "mem": n}
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        stamps = (
            arr
            if pa.types.is_timestamp(t)
            else arr.cast(pa.timestamp("s" if pa.types.is_date32(t) else "ms"))
        )
        return {**pk.datetime_state(stamps, str(t), ctx.spill_to()), "mem": width * n}
    text = pk.as_text(arr)
    if text is not None:
        kind = "categorical" if pa.types.is_dictionary(t) else "text"
        state, _ = pk.text_state(text, kind, str(t), n, ctx.spill_to(), ctx.capacity, None)
        return state
    return _other_state(arr, ctx, width)


def _fixed_width(t: Any) -> bool:
    try:
        return bool(t.bit_width)
    except ValueError:
        return False


def _renders_as_text(t: Any) -> bool:
    """Types whose text form always exists (cast to string), so every chunk reports top values alike."""
    import pyarrow as pa

    return bool(
        pa.types.is_decimal(t) or pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_null(t)
    )


def _other_state(arr: Any, ctx: _Context, width: int) -> dict[str, Any]:
    """Decimals, times, durations, binary, null: nulls, distinct (value hashes), top values as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    state: dict[str, Any] = {
        "t": "other",
        "dtype": str(arr.type),
        "nulls": int(arr.null_count),
        "hs": _hash_set(arr, column_hashes(arr), ctx),
        "mem": int(width * len(arr)),
    }
    if _renders_as_text(arr.type):
        text = pc.drop_null(
            arr.cast(pa.string()) if not pa.types.is_null(arr.type) else pa.array([], pa.string())
        )
        counted = pc.value_counts(text)
        counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
        state["tv"] = pk.top_of(counted.field("values"), counts, ctx.capacity).to_state()
    return state


# -- merge and report ------------------------------------------------------------------------------------
def merge(parts: list[dict[str, Any]], merge_column: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> Any:
    """Merge one nested column's chunk states (in source order); ``merge_column`` merges a child's states."""
    first = parts[0]
    out: dict[str, Any] = {
        "t": first["t"],
        "dtype": first["dtype"],
        "nulls": sum(p["nulls"] for p in parts),
        "mem": sum(p["mem"] for p in parts),
        "n": sum(p["n"] for p in parts),
        "hs": {"n": HashSet.count_distinct_runs([p["hs"] for p in parts])},
        "kids": {
            path: _merge_child([p["kids"][path] for p in parts], merge_column) for path in first["kids"]
        },
    }
    if "len" in first:
        out["empty"] = sum(p["empty"] for p in parts)
        out["len"] = merge_column([p["len"] for p in parts])
    return out


def _merge_child(parts: list[dict[str, Any]], merge_column: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    if parts[0]["t"] in KINDS:
        return merge(parts, merge_column)
    merged = merge_column(parts)
    merged["n"] = sum(p["n"] for p in parts)
    return merged


def report(
    col: dict[str, Any], rows: int, qs: list[float], top_k: int, column_report: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """A nested column's report: the keys of a scalar column's, ``empty`` and ``length`` (lists and maps), and
    ``children``: ``{path: report}`` of its elements, fields or keys and values (each with its ``values``)."""
    nulls = int(col["nulls"])
    out: dict[str, Any] = {
        "type": col["t"],
        "dtype": col["dtype"],
        "count": rows - nulls,
        "nulls": nulls,
        "null_ratio": nulls / rows if rows else None,
        "distinct": HashSet.state_len(col["hs"]),
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": None,
        "histogram": None,
        "top_values": None,
    }
    if "len" in col:
        lengths = column_report(col["len"], rows - nulls, qs, top_k)
        out["empty"] = int(col["empty"])
        out["length"] = {k: lengths.get(k) for k in LENGTH_KEYS}
    out["children"] = {path: child_report(kid, qs, top_k, column_report) for path, kid in col["kids"].items()}
    return out


def child_report(
    kid: dict[str, Any], qs: list[float], top_k: int, column_report: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    n = int(kid["n"])
    body = report(kid, n, qs, top_k, column_report) if kid["t"] in KINDS else column_report(kid, n, qs, top_k)
    return {"values": n, **body}


def find(report_columns: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The report of ``path`` (``address.city``, ``tags[]``) in a profile's ``columns``, or None."""
    if path in report_columns:
        return report_columns[path]
    for col in report_columns.values():
        found = find(col.get("children") or {}, path)
        if found is not None:
            return found
    return None
