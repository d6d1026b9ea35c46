"""Binary side files of chunk states on any storage: a local job folder, or object storage (S3, GCS ...).

Large chunk states (key runs, hash sets, value distributions) are raw little-endian arrays in side files the
JSON state references by path (``{"n", "file": base}``). On a local job folder the path is a local path, as it
always was. On object storage it is the object's URI under the job folder, ``s3://bucket/job/_keys/...``:

- **Writing**: the array goes to a local scratch copy first (atomically: temp file + ``os.replace``), and is
  then uploaded with one PUT (``fs.put_file``; s3fs switches to an all-or-nothing multipart upload for large
  files) before the state referencing it is returned, so a checkpointed state never points at a missing
  object. The scratch copy stays as this machine's cached copy.
- **Reading**: :func:`localize` streams the object to the scratch cache once (``fs.get_file``: block by
  block, never the whole object in memory) and returns the local path; the merges then read it by slices
  exactly as they read a local job's side files. Memory is bounded the same way on every storage; only
  local disk (the scratch cache) holds the state's bytes, as the job folder does for a local job.
- **Which filesystem**: the engine registers each job's folder (:func:`register`, with the filesystem and
  credentials of its connection); a URI under a registered folder is read and written through that
  filesystem. Forked chunk workers inherit the registry and the cache folder, so a worker's upload is
  already in the parent's cache (same machine: no download).
- **Scratch cache**: ``{TMPDIR}/abp-side-files-<pid>/<job folder hash>/...``, removed by :func:`release` when
  the job ends and at the exit of the process that created it (a crash leaves only files a later run of the
  same process id replaces). A retry on another machine downloads what it needs again: the objects in the
  job folder are the truth, the cache only a copy.

No Airflow imports.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from typing import Any

from airflow_batch_provider.storage import Location

_LOCK = threading.Lock()
_ROOTS: dict[str, Location] = {}  # job folder uri (no trailing slash) -> its location
_CACHE: dict[str, Any] = {"dir": None, "owner": None}


def is_remote(path: str | None) -> bool:
    """True for a URI on a non-local filesystem (``s3://``, ``gs://``, ``memory://`` ...)."""
    return bool(path) and "://" in str(path) and not str(path).startswith(("file://", "local://"))


def register(location: Any) -> None:
    """Make a job folder's filesystem known to the side-file readers and writers of this process (and of the
    chunk workers it forks later). Local folders need no registration (registering one is a no-op)."""
    loc = Location.of(location)
    if loc.is_local:
        return
    with _LOCK:
        _ROOTS[loc.uri.rstrip("/")] = loc


def release(location: Any) -> None:
    """Forget a job folder and drop this machine's cached copies of its side files (the job ended)."""
    loc = Location.of(location)
    if loc.is_local:
        return
    root = loc.uri.rstrip("/")
    with _LOCK:
        _ROOTS.pop(root, None)
    if _CACHE["dir"] is not None:
        shutil.rmtree(os.path.join(_CACHE["dir"], _digest(root)), ignore_errors=True)


def folder(output_uri: str | None, *parts: str) -> str | None:
    """Where a job's side files go: ``{output_uri}/_keys/<parts>``, a local path for a local job folder and a
    URI for one on object storage; None without a folder (states then stay inline)."""
    if not output_uri:
        return None
    if is_remote(output_uri):
        return posixpath.join(str(output_uri).rstrip("/"), "_keys", *parts)
    loc = Location.of(output_uri)
    return os.path.join(loc.path, "_keys", *parts)


def scratch_dir(near: str | None) -> str | None:
    """A local folder for temporary merge runs next to side files at ``near``: its own folder when local,
    else this process's scratch cache (None: the OS temp folder)."""
    if not near:
        return None
    if is_remote(near):
        return os.path.join(_cache_dir(), "merge")
    return os.path.dirname(near)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def _cache_dir() -> str:
    with _LOCK:
        if _CACHE["dir"] is None or not os.path.isdir(_CACHE["dir"]):
            path = os.path.join(tempfile.gettempdir(), f"abp-side-files-{os.getpid()}")
            os.makedirs(path, exist_ok=True)
            if _CACHE["owner"] is None:
                atexit.register(_cleanup)
            _CACHE.update(dir=path, owner=os.getpid())
        return str(_CACHE["dir"])


def _cleanup() -> None:
    if _CACHE["dir"] is not None and _CACHE["owner"] == os.getpid():  # never a forked worker's exit
        shutil.rmtree(_CACHE["dir"], ignore_errors=True)


def _resolve(uri: str) -> tuple[Location, str, str]:
    """``(filesystem location, path on it, cache key)`` of a side-file URI."""
    uri = str(uri)
    with _LOCK:
        roots = sorted(_ROOTS.items(), key=lambda kv: -len(kv[0]))
    for root, loc in roots:
        if uri == root or uri.startswith(root + "/"):
            rel = uri[len(root) :].lstrip("/")
            return loc, posixpath.join(loc.path, rel) if rel else loc.path, posixpath.join(_digest(root), rel)
    loc = Location.of(
        uri
    )  # not under a registered job folder: the URI's own filesystem (environment credentials)
    return loc, loc.path, posixpath.join("unregistered", _digest(uri), posixpath.basename(uri))


def cache_path(uri: str) -> str:
    """This machine's cached copy of a side-file URI (it may not exist yet)."""
    return os.path.join(_cache_dir(), *_resolve(uri)[2].split("/"))


def local_target(path: str) -> str:
    """The local file to write a side file ``path`` to: ``path`` itself when local, else its cache copy
    (publish it with :func:`publish` once complete)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return path
    local = cache_path(path)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    return local


def publish(path: str) -> None:
    """Upload the completed local copy of side file ``path`` (no-op for a local path)."""
    if not is_remote(path):
        return
    loc, remote, _ = _resolve(path)
    loc.fs.put_file(cache_path(path), remote)


def localize(path: str) -> str | None:
    """A local path holding side file ``path`` (downloaded once to the cache when remote), or None when it
    does not exist."""
    if not is_remote(path):
        return path if os.path.exists(path) else None
    local = cache_path(path)
    if os.path.exists(local):
        return local
    loc, remote, _ = _resolve(path)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = f"{local}.{uuid.uuid4().hex}.tmp"
    try:
        loc.fs.get_file(remote, tmp)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        return None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    os.replace(tmp, local)
    return local


def size(path: str) -> int:
    """The side file's size in bytes, or -1 when it does not exist."""
    local = localize(path)
    return os.path.getsize(local) if local is not None else -1
