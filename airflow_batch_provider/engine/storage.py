"""Where the engine reads and writes: an fsspec filesystem plus a path on it.

Accepts a local path, an fsspec URI (``file://``, ``memory://``, ``s3://`` ...) or any
``ObjectStoragePath``/``UPath`` (anything with ``.fs`` and ``.path``), so the engine works with
Airflow's object storage without importing Airflow. Writes are atomic: a reader never sees a
half-written object (local files: temp file + ``os.replace``; object stores: one PUT).
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec

LOCAL_PROTOCOLS = {"file", "local"}


def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return set(proto) if isinstance(proto, (tuple, list)) else {proto}


@dataclass(frozen=True)
class Location:
    """A folder or file: ``fs`` + ``path`` (fsspec-style, no scheme) + the ``uri`` users see."""

    fs: Any
    path: str
    uri: str

    @classmethod
    def of(cls, target: Any) -> Location:
        if isinstance(target, Location):
            return target
        if hasattr(target, "fs") and hasattr(target, "path") and not isinstance(target, str):
            fs = target.fs
            path = str(target.path)
            if _protocols(fs) & LOCAL_PROTOCOLS:
                path = os.path.abspath(path)
            return cls(fs, path.rstrip("/") or "/", str(target))
        target = os.fspath(target)
        if "://" in target:
            fs, path = fsspec.core.url_to_fs(target)
            if _protocols(fs) & LOCAL_PROTOCOLS:
                path = os.path.abspath(path)
            return cls(fs, path.rstrip("/") or "/", target.rstrip("/"))
        path = os.path.abspath(os.path.expanduser(target))
        return cls(fsspec.filesystem("file"), path, path)

    @property
    def is_local(self) -> bool:
        return bool(_protocols(self.fs) & LOCAL_PROTOCOLS)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def child(self, *parts: str) -> Location:
        rel = "/".join(p.strip("/") for p in parts if p)
        return Location(self.fs, posixpath.join(self.path, rel), self.uri.rstrip("/") + "/" + rel)

    def relative(self, full_path: str) -> str:
        return posixpath.relpath(full_path, self.path)

    # -- reads ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def isdir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_json(self, default: Any = None) -> Any:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return default
        return json.loads(data)

    def listdir(self) -> list[str]:
        """Names (not paths) in this folder; empty when it does not exist."""
        try:
            entries = self.fs.ls(self.path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    # -- writes --------------------------------------------------------------------------------
    def makedirs(self) -> None:
        self.fs.makedirs(self.path, exist_ok=True)

    def write_bytes(self, data: bytes) -> None:
        """Write atomically: the object is either absent, the old version, or complete."""
        parent = posixpath.dirname(self.path)
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f".{posixpath.basename(self.path)}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            return
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(self.path, data)

    def write_json(self, value: Any) -> None:
        self.write_bytes(json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode())

    def remove(self, recursive: bool = False) -> None:
        try:
            self.fs.rm(self.path, recursive=recursive)
        except FileNotFoundError:
            pass
