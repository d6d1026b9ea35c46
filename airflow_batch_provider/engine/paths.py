"""Path containment: whether a path or URI lies inside a root folder, decided on the names alone.

Used wherever a name that is not DAG code decides where the engine reads or writes: a templated
``output_path`` or ``source`` (run conf can set them), the parts a stored ``_manifest.json`` lists, the
folders a shard derives. No I/O except resolving local symlinks, no Airflow imports.

- Local paths (plain, ``file://``, ``local://``) are resolved with ``os.path.realpath``: ``..`` and symlinks in
  the existing part of the path cannot lead out of the root (a ``..`` that means one folder to the OS and
  another once normalised, as after a symlink, is inside nothing).
- Other URIs (``s3://conn@bucket/key``, ``memory://``) compare scheme, bucket and key segments. An empty,
  ``.`` or ``..`` segment is never inside anything (object stores keep them as literal key parts, some clients
  normalise them: either way the key is not what it looks like). A root that names a connection (``conn@bucket``) only contains URIs naming the same
  connection or none.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LOCAL_SCHEMES = {"", "file", "local"}
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs", "local": "file", "": "file"}


@dataclass(frozen=True)
class Place:
    """A path or URI split into what containment compares."""

    scheme: str
    conn: str | None
    host: str
    parts: tuple[str, ...]
    sound: bool  # False: a ``..`` segment on a store where it cannot be resolved

    def __str__(self) -> str:
        if self.scheme == "file":
            return "/" + "/".join(self.parts)
        conn = f"{self.conn}@" if self.conn else ""
        return f"{self.scheme}://{conn}{self.host}/" + "/".join(self.parts)


def _text(target: Any) -> str:
    uri = getattr(target, "uri", None)  # a storage Location
    if isinstance(uri, str) and hasattr(target, "fs"):
        return uri
    if not isinstance(target, str) and hasattr(target, "path") and hasattr(target, "protocol"):
        return str(target)  # an ObjectStoragePath / UPath
    return os.fspath(target) if not isinstance(target, str) else target


def _local(path: str) -> Place:
    """Resolved the way the OS resolves it (a ``..`` after a symlink climbs out of the link's target), and the
    way ``os.path.abspath`` (what ``Location`` does) reads it; when the two disagree, it is inside nothing."""
    path = os.path.expanduser(path)
    physical = os.path.realpath(path)
    lexical = os.path.realpath(os.path.abspath(path))
    return Place("file", None, "", tuple(p for p in physical.split(os.sep) if p), physical == lexical)


def parse(target: Any) -> Place:
    """``target`` (a path, URI, ``ObjectStoragePath`` or ``Location``) as a :class:`Place`."""
    text = _text(target).strip()
    if "://" not in text:
        return _local(text)
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme in LOCAL_SCHEMES:
        netloc, _, path = rest.partition("/")
        return _local("/" + path if netloc in ("", "localhost") else f"/{netloc}/{path}")
    netloc, _, path = rest.partition("/")
    conn, _, host = netloc.rpartition("@")
    segments = path.split("/") if path else []
    if scheme == "memory":  # fsspec's memory filesystem: the "host" is the first folder
        segments, host, conn = [host, *segments] if host else segments, "", ""
    if segments and segments[-1] == "":
        segments = segments[:-1]  # one trailing slash
    # object stores keep "", "." and ".." as literal key parts ("a//b" is not "a/b"): never inside anything
    sound = bool(host or scheme == "memory") and not any(s in ("", ".", "..") for s in segments)
    return Place(_SCHEME_ALIASES.get(scheme, scheme), conn or None, host, tuple(segments), sound)


def is_within(target: Any, root: Any, *, strict: bool = False) -> bool:
    """Whether ``target`` is ``root`` or lies under it (``strict``: under it, not the root itself)."""
    t, r = parse(target), parse(root)
    if not (t.sound and r.sound) or t.scheme != r.scheme or t.host != r.host:
        return False
    if r.conn and t.conn and t.conn != r.conn:
        return False
    if t.conn and not r.conn:
        return False  # the URI picks a connection the root does not name
    if len(t.parts) < len(r.parts) + (1 if strict else 0):
        return False
    return t.parts[: len(r.parts)] == r.parts


def within_any(target: Any, roots: Iterable[Any], *, strict: bool = False) -> bool:
    return any(is_within(target, root, strict=strict) for root in roots if str(root).strip())


def split_roots(value: str | Iterable[str] | None) -> list[str]:
    """A comma-separated option value (or a list) as a list of roots; blanks dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(i).strip() for i in items if str(i).strip()]


def child_inside(folder: str, name: str) -> str | None:
    """``folder/name`` (fsspec-style paths) when ``name`` is a relative path that stays inside ``folder``;
    None for an absolute name, a URI, a ``..`` that leaves the folder, or an empty name."""
    if not isinstance(name, str) or not name.strip() or "://" in name or name.startswith(("/", "\\")):
        return None
    if "\\" in name or "\x00" in name:
        return None
    joined = posixpath.normpath(posixpath.join(folder, name))
    base = posixpath.normpath(folder)
    if not joined.startswith(base.rstrip("/") + "/"):
        return None
    return joined
