"""Struct field paths (``address.city``, ``address.geo.lat``) as columns for ``data_quality`` rules.

A path names a top-level struct column and then fields inside it, joined with ``.``; a column whose own name
holds a dot wins over a path. A row whose struct (or any struct on the way) is null is null in the field, so
``not_null`` on ``address.city`` fails when ``address`` is null. Elements of lists and entries of maps have no
row of their own and cannot be addressed: a ``ConfigError`` before any chunk says so. No Airflow imports.
"""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.exceptions import ConfigError


def split(path: str, schema: Any, where: str = "column") -> list[str] | None:
    """``[column, field, field, ...]`` of a struct path in ``schema``, or None when ``path`` is a plain column or
    no column of ``schema`` starts it (the caller reports the unknown column); ``ConfigError`` for a path through
    a list or map, or to a field that does not exist."""
    import pyarrow as pa

    names = list(schema.names)
    if path in names:
        return None
    roots = sorted((n for n in names if path.startswith(f"{n}.")), key=len, reverse=True)
    if not roots:
        return None
    root = roots[0]
    parts, rest, t = [root], path[len(root) + 1 :], schema.field(root).type
    while rest:
        if not pa.types.is_struct(t):
            kind = (
                "a map"
                if pa.types.is_map(t)
                else "a list"
                if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
                else f"type {t}"
            )
            raise ConfigError(
                f"{where}: {path!r}: {'.'.join(parts)!r} is {kind}, not a struct; rules address struct fields "
                "(address.city), not list elements or map entries (profile those with data_profiling)"
            )
        fields = sorted((f.name for f in t if rest == f.name or rest.startswith(f"{f.name}.")), key=len)
        if not fields:
            raise ConfigError(
                f"{where}: {path!r}: the struct {'.'.join(parts)!r} has no field {rest.split('.')[0]!r}; its "
                f"fields are {[f.name for f in t]}"
            )
        name = fields[-1]
        parts.append(name)
        t = t.field(name).type
        rest = rest[len(name) + 1 :]
    return parts


def source_columns(columns: Any, schema: Any, where: str) -> list[str]:
    """``columns`` with each struct path replaced by its top-level column (what the source must have)."""
    out = []
    for c in columns:
        parts = split(str(c), schema, where)
        out.append(str(c) if parts is None else parts[0])
    return out


def column(table: Any, path: str) -> Any:
    """The values at ``path`` in an Arrow table (nulls where a struct on the way is null), or None when
    ``path`` is not a struct path of the table."""
    import pyarrow.compute as pc

    parts = split(path, table.schema)
    if parts is None:
        return None
    values = table.column(parts[0])
    for name in parts[1:]:
        values = pc.struct_field(values, [values.type.get_field_index(name)])
    return values


def with_paths(table: Any, paths: Any) -> Any:
    """``table`` with a column for each struct path among ``paths`` appended (named by the path)."""
    for path in paths:
        values = column(table, str(path)) if str(path) not in table.column_names else None
        if values is not None:
            table = table.append_column(str(path), values)
    return table


def field_type(path: str, schema: Any, where: str = "column") -> Any:
    """The Arrow type at ``path`` in ``schema`` (a top-level column or a struct field path), or None when no
    column of ``schema`` has it; ``ConfigError`` as :func:`split` for a path through a list or map."""
    parts = split(path, schema, where)
    if parts is None:
        return schema.field(path).type if path in schema.names else None
    t = schema.field(parts[0]).type
    for name in parts[1:]:
        t = t.field(name).type
    return t
