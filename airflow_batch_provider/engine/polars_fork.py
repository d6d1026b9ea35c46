"""Polars in forked chunk workers: a fresh polars runtime in every worker, whatever the parent ran.

Polars runs its work on a thread pool that is created on first use. ``fork`` copies the pool's state but not
its threads, so in a child forked after the parent used polars (a DAG file that computes something with
polars at parse time, a callable's ``fit``, a merge) the first parallel polars call waits forever for threads
that do not exist. ``POLARS_MAX_THREADS`` is read when the pool is created, so it cannot help a child whose
parent already created it; ``spawn``/``forkserver`` workers cannot run functions defined in a DAG file.

What works, and what the chunk workers do (tested under a real scheduler in
``tests/integration/test_polars_fork.py`` and
``tests/unit/engine/test_frames_and_planning.py``):

- polars not imported in the parent: nothing to repair; the child creates its own pool on first use, sized
  by ``POLARS_MAX_THREADS`` (set to 1 when there are as many workers as cores, as for Arrow and BLAS);
- polars imported in the parent: before forking, the parent copies polars' native runtime (one shared library)
  once per process to a temporary file; each worker loads that copy (a second, independent set of the
  runtime's globals, thread pool included), re-imports the ``polars`` package on it and points the existing
  ``polars`` module objects at the fresh ones, so the ``pl`` a DAG-file function captured uses the fresh
  runtime too. Polars objects created in the parent before the fork still belong to the old runtime: build
  them inside the function (from the chunk), not at DAG-file top level.

No Airflow imports.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

log = logging.getLogger("airflow_batch_provider.engine")

_COPY: str | None = None
_FRESH_NAME = "_abp_fresh_polars._polars_runtime"


def runtime_copy() -> str | None:
    """In the parent, before forking: the path of a private copy of polars' native runtime when polars is
    imported in this process (made once per process), else None (the children need no repair)."""
    global _COPY
    runtime = sys.modules.get("polars._plr")
    source = getattr(runtime, "__file__", None)
    if "polars" not in sys.modules or not source:
        return None
    if _COPY is not None and os.path.exists(_COPY):
        return _COPY
    errors = []
    for folder in _candidate_folders():
        try:
            target = os.path.join(
                tempfile.mkdtemp(prefix="abp-polars-", dir=folder), os.path.basename(source)
            )
            shutil.copyfile(source, target)
            # removed when this process exits; workers that mapped it keep their mapping (Linux unlinks lazily)
            atexit.register(shutil.rmtree, os.path.dirname(target), ignore_errors=True)
            _COPY = target
            return target
        except OSError as err:
            errors.append(f"{folder}: {err}")
    log.warning("polars is imported but its runtime could not be copied for the chunk workers: %s", errors)
    return None


def _candidate_folders() -> list[str]:
    out = [tempfile.gettempdir()]
    if os.path.isdir("/dev/shm"):
        out.append("/dev/shm")
    return out


def fresh_polars(copy: str | None, single_thread: bool) -> None:
    """In a freshly forked worker: make polars usable. ``copy``: what :func:`runtime_copy` returned in the
    parent (None: polars was not imported there, so only the pool size is set)."""
    if single_thread:
        os.environ["POLARS_MAX_THREADS"] = "1"
    if copy is None or "polars" not in sys.modules:
        return
    loader = importlib.machinery.ExtensionFileLoader(_FRESH_NAME, copy)
    spec = importlib.util.spec_from_file_location(_FRESH_NAME, copy, loader=loader)
    assert spec is not None
    runtime = importlib.util.module_from_spec(spec)
    loader.exec_module(runtime)
    old = {k: m for k, m in sys.modules.items() if k == "polars" or k.startswith("polars.")}
    for name in old:
        del sys.modules[name]
    previous = getattr(builtins, "__POLARS_PLR", None)
    builtins.__POLARS_PLR = runtime  # type: ignore[attr-defined]  # polars/_plr.py's documented override
    try:
        import polars  # noqa: F401 - the fresh package, on the fresh runtime
    finally:
        if previous is None:
            del builtins.__POLARS_PLR  # type: ignore[attr-defined]
        else:
            builtins.__POLARS_PLR = previous  # type: ignore[attr-defined]
    _repoint(old)


def _repoint(old: dict[str, Any]) -> None:
    """Give the old module objects (still referenced by code that imported polars) the fresh contents."""
    for name, module in old.items():
        fresh = sys.modules.get(name)
        if fresh is None or fresh is module or name == "polars._plr":
            continue
        try:
            module.__dict__.update(fresh.__dict__)
        except (AttributeError, TypeError):  # a native module object: nothing references it by name
            continue
        sys.modules[name] = module
