"""Where the engine reads and writes: an fsspec filesystem plus a path on it.

Accepts a local path, an fsspec URI (``file://``, ``memory://``, ``s3://`` ...) or any
``ObjectStoragePath``/``UPath`` (anything with ``.fs`` and ``.path``), so the engine works with
Airflow's object storage without importing Airflow.

- Atomic visibility: a reader never sees a half-written object. Local files: temp file + ``os.replace``;
  object stores: one PUT (s3fs switches to a multipart upload, which is also all-or-nothing, above
  100 MiB).
- Retries: a remote filesystem is wrapped in :class:`ResilientFileSystem`. Transient storage errors
  (connection reset/refused, timeouts, throttling, HTTP 5xx) are retried with exponential backoff and full
  jitter; when the attempts run out they surface as :class:`StorageNetworkError`
  (``failure_class = "network"``). Other errors (missing object, 4xx) propagate at once.
- Fork safety: async filesystems (s3fs) refuse to run in a forked chunk worker; the wrapper opens a fresh
  instance with the same options in each process.
- No listings cache: other processes write to the same folders, so every listing and lookup asks the store.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec
import tenacity
from fsspec.dircache import DirCache

from airflow_batch_provider.exceptions import BatchProviderError, StorageNetworkError

log = logging.getLogger(__name__)

LOCAL_PROTOCOLS = {"file", "local"}
OBJECT_STORE_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "oss"}  # no directories to create
T = TypeVar("T")

# -- retries -------------------------------------------------------------------------------------------
#: errnos of a connection that failed or dropped: transient storage errors, failure class ``network``
NETWORK_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
}
# transport errors of botocore / aiohttp / fsspec, matched by class name so none of them must be installed
_TRANSIENT_NAMES = {
    "HTTPClientError",  # botocore: EndpointConnectionError, ConnectionClosedError, Read/ConnectTimeoutError
    "ClientConnectionError",  # aiohttp: ServerDisconnectedError, ClientOSError, ClientConnectorError
    "ClientPayloadError",
    "ServerTimeoutError",
    "FSTimeoutError",
    "IncompleteRead",
    "IncompleteReadError",
    "ResponseStreamingError",
    "ResponseParserError",
}
_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
}
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def backoff_delay(
    retry: int,
    base: float,
    cap: float,
    *,
    multiplier: float = 2.0,
    jitter: float = 1.0,
    rng: random.Random | None = None,
) -> float:
    """The one backoff formula of the provider (storage retries, chunk retries, Airflow retry delays).

    ``d = min(cap, base * multiplier ** (retry - 1))`` for retry number ``retry`` (1 = first), then a random
    point in ``[(1 - jitter) * d, d]``: ``jitter=1`` is full jitter, ``0`` none, ``0.5`` never below half.
    """
    d = min(cap, base * multiplier ** max(0, retry - 1))
    if jitter <= 0 or d <= 0:
        return max(0.0, d)
    return d * (1 - jitter) + (rng or random).uniform(0.0, d * jitter)


@dataclass(frozen=True)
class StorageRetryPolicy:
    """Bounded attempts with exponential backoff and full jitter: sleep ``uniform(0, min(cap, base * 2**n))``."""

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, retry: int) -> float:
        return backoff_delay(retry, self.base_delay, self.max_delay, jitter=1.0)


#: deprecated name: it shadowed ``airflow.sdk.RetryPolicy`` in code that imports both
RetryPolicy = StorageRetryPolicy
DEFAULT_RETRY_POLICY = StorageRetryPolicy()


def exception_chain(err: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first (at most 10: cycles are possible)."""
    out: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and len(out) < 10 and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _http_verdict(err: BaseException) -> bool | None:
    """True/False for an error carrying an S3-style response (botocore ``ClientError``), else None."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    status = (
        int(status) if status is not None and (isinstance(status, int) or str(status).isdigit()) else None
    )
    if code in _THROTTLE_CODES or status == 429 or (status is not None and status >= 500):
        return True
    return False if status is not None or code else None


def is_transient(err: BaseException) -> bool:
    """Whether a storage error is worth retrying: network trouble, throttling, 5xx; not 4xx, not missing."""
    if isinstance(err, (BatchProviderError, *_PERMANENT)):
        return False
    for cause in exception_chain(err):
        verdict = _http_verdict(cause)
        if verdict is not None:
            return verdict
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return True
        if isinstance(cause, OSError) and cause.errno in NETWORK_ERRNOS:
            return True
        if any(k.__name__ in _TRANSIENT_NAMES for k in type(cause).__mro__):
            return True
    return False


def with_retries(op: str, target: str, fn: Callable[[], T], policy: StorageRetryPolicy | None = None) -> T:
    """Run ``fn``; retry transient storage errors (tenacity); raise :class:`StorageNetworkError` when they
    persist. Permanent errors (missing, forbidden, 4xx) are raised at once, unchanged."""
    policy = policy or DEFAULT_RETRY_POLICY

    def _log(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        log.warning(
            "storage %s %s failed (%s: %s); retry %d/%d in %.2fs",
            op,
            target,
            type(err).__name__,
            str(err)[:200],
            state.attempt_number,
            policy.attempts - 1,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, Exception) and is_transient(e)),
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=lambda state: policy.delay(state.attempt_number),
        sleep=lambda seconds: time.sleep(seconds),  # looked up at call time: tests may patch time.sleep
        before_sleep=_log,
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as err:
        attempts = retrying.statistics.get("attempt_number", 1)
        if attempts < policy.attempts or not is_transient(err):
            raise
        raise StorageNetworkError(
            f"storage {op} {target}: still failing after {attempts} attempts "
            f"({type(err).__name__}: {err}); the storage service or the network is unavailable",
            op=op,
            target=target,
            attempts=attempts,
        ) from err


# -- the filesystem wrapper ----------------------------------------------------------------------------
def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return set(proto) if isinstance(proto, (tuple, list)) else {proto}


def is_local_filesystem(fs: Any) -> bool:
    """True for fsspec's own local filesystem (``file://`` paths), also inside the retrying wrapper; False for
    its subclasses (a mount with behaviour of its own, such as retries or faults, keeps its own ``open``)."""
    from fsspec.implementations.local import LocalFileSystem

    inner = fs.base_fs if isinstance(fs, ResilientFileSystem) else fs
    return type(inner) is LocalFileSystem


def _fresh_instance(fs: Any) -> Any:
    """The same filesystem opened anew in this process (fsspec caches instances per process)."""
    if not getattr(fs, "async_impl", False):
        return fs
    return type(fs)(*getattr(fs, "storage_args", ()), **getattr(fs, "storage_options", {}))


def _without_listings_cache(fs: Any) -> Any:
    """Turn off the filesystem's listings cache (s3fs keeps listings until the process writes there itself).

    Other processes write to a job folder too (chunk workers, a newer attempt): a cached listing would hide
    their objects from a fence check, ``exists``, and even ``cat_file`` (s3fs answers "not found" from a
    cached parent listing). The filesystem may be shared (Airflow caches one per connection); turning the
    cache off costs other users requests, never correctness.
    """
    cache = getattr(fs, "dircache", None)
    if isinstance(cache, DirCache) and cache.use_listings_cache:
        fs.dircache = DirCache(use_listings_cache=False)
    return fs


class ResilientFileSystem:
    """An fsspec filesystem whose calls retry transient errors, and which works in forked workers.

    Everything not listed in ``RETRIED`` is passed through unchanged. ``open(..., "rb")`` returns a file
    whose ``read`` retries too (the position is restored before each attempt).
    """

    RETRIED = frozenset(
        {"cat_file", "cat", "pipe_file", "info", "exists", "isdir", "isfile", "size", "ls", "glob", "find"}
        | {"rm", "rm_file", "makedirs", "mkdir", "checksum", "modified"}
    )

    def __init__(self, fs: Any, policy: StorageRetryPolicy | None = None) -> None:
        self.base_fs = fs
        self.policy = policy
        self._pid = os.getpid()
        self._fs = _without_listings_cache(fs)

    @property
    def fs(self) -> Any:
        if self._pid != os.getpid():
            self._fs = _without_listings_cache(_fresh_instance(self.base_fs))
            self._pid = os.getpid()
        return self._fs

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("base_fs", "policy", "_pid", "_fs"):
            raise AttributeError(name)
        attr = getattr(self.fs, name)
        if name not in self.RETRIED or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            target = str(args[0]) if args else ""
            return with_retries(name, target, lambda: attr(*args, **kwargs), self.policy)

        return call

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            return self.fs.open(path, mode, **kwargs)
        fh = with_retries("open", path, lambda: self.fs.open(path, mode, **kwargs), self.policy)
        return RetryingReader(fh, path, self.policy)

    def __repr__(self) -> str:
        return f"ResilientFileSystem({self.fs!r})"


class RetryingReader:
    """A binary file opened for reading whose ``read`` retries transient errors from the same position."""

    def __init__(self, fh: Any, path: str, policy: StorageRetryPolicy | None) -> None:
        self._fh = fh
        self._path = path
        self._policy = policy

    def read(self, size: int = -1) -> bytes:
        pos = self._fh.tell()

        def attempt() -> bytes:
            if self._fh.tell() != pos:
                self._fh.seek(pos)
            return self._fh.read(size)

        return with_retries("read", self._path, attempt, self._policy)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_fh", "_path", "_policy"):
            raise AttributeError(name)
        return getattr(self._fh, name)

    def __enter__(self) -> RetryingReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fh.close()

    def __iter__(self) -> Any:
        return iter(self._fh)


def _resilient(fs: Any) -> Any:
    if isinstance(fs, ResilientFileSystem) or _protocols(fs) & LOCAL_PROTOCOLS:
        return fs
    return ResilientFileSystem(fs)


def _unwrapped(fs: Any) -> Any:
    """The filesystem itself, without the retrying wrapper (for calls that retry on their own terms)."""
    return fs.fs if isinstance(fs, ResilientFileSystem) else fs


def _is_precondition_failure(err: BaseException) -> bool:
    """The store refused a conditional create because the object exists (HTTP 412 / PreconditionFailed)."""
    for cause in exception_chain(err):
        if isinstance(cause, FileExistsError):
            return True
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)
    return False


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
            return cls(_resilient(fs), path.rstrip("/") or "/", str(target))
        target = os.fspath(target)
        if "://" in target:
            fs, path = fsspec.core.url_to_fs(target)
            if _protocols(fs) & LOCAL_PROTOCOLS:
                path = os.path.abspath(path)
            return cls(_resilient(fs), path.rstrip("/") or "/", target.rstrip("/"))
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

    def is_link(self) -> bool:
        """A symbolic link (local storage; object stores have none). Looked at, never followed."""
        return self.is_local and os.path.islink(self.path)

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

    def _make_parent(self) -> str:
        parent = posixpath.dirname(self.path)
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
        elif not _protocols(self.fs) & OBJECT_STORE_PROTOCOLS:
            self.fs.makedirs(parent, exist_ok=True)
        return parent

    def _local_temp(self, data: bytes) -> str:
        parent = self._make_parent()
        tmp = posixpath.join(parent, f".{posixpath.basename(self.path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def write_bytes(self, data: bytes) -> None:
        """Write atomically: the object is either absent, the old version, or complete."""
        if self.is_local:
            os.replace(self._local_temp(data), self.path)
            return
        self._make_parent()
        self.fs.pipe_file(self.path, data)  # one PUT (or a multipart upload completed at once)

    def write_json(self, value: Any) -> None:
        self.write_bytes(json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode())

    def create_exclusive(self, data: bytes) -> bool:
        """Create the object with ``data`` only if it does not exist: True if created, False if it existed.

        Atomic against concurrent writers on one store: locally a complete temp file is hard-linked into
        place (``link`` fails if the name exists, so readers never see a partial file); on S3 a conditional
        PUT (``If-None-Match: *``). Put a unique token (attempt id) in ``data``: when the object exists, equal
        bytes mean this call created it with a PUT whose response was lost and that was sent again (by this
        layer, or unseen by it: aiohttp resends an idempotent request once after a dropped connection).
        """
        if self.is_local:
            return self._create_exclusive_local(data)
        self._make_parent()

        def attempt() -> bool:
            try:
                _unwrapped(self.fs).pipe_file(self.path, data, mode="create")
            except Exception as err:
                if not _is_precondition_failure(err):
                    raise
                return self.read_bytes() == data
            return True

        return with_retries("create", self.path, attempt, getattr(self.fs, "policy", None))

    def _create_exclusive_local(self, data: bytes) -> bool:
        tmp = self._local_temp(data)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError as err:  # a filesystem without hard links: O_EXCL, then write in place
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return self._create_exclusive_excl(data)
        finally:
            os.unlink(tmp)
        return True

    def _create_exclusive_excl(self, data: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def remove(self, recursive: bool = False) -> None:
        try:
            self.fs.rm(self.path, recursive=recursive)
        except FileNotFoundError:
            pass

    def remove_if_empty(self) -> None:
        """Remove this folder when nothing is left in it (object stores have no folders to remove)."""
        if _protocols(self.fs) & OBJECT_STORE_PROTOCOLS:
            return
        try:
            if self.is_local:
                os.rmdir(self.path)  # refuses a non-empty folder and never follows a link
            elif not self.listdir():
                self.fs.rmdir(self.path)
        except OSError:
            pass
