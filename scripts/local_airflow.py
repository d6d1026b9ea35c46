#!/usr/bin/env python
"""Run a real local Apache Airflow 3.3 (api-server, scheduler, dag-processor, triggerer) for dev and tests.

Library use (pytest integration tests)::

    from local_airflow import LocalAirflow

    with LocalAirflow(tmp_path / "home", dags_dir) as af:      # __enter__ calls start()
        af.wait_for_dag("my_dag")
        run_id = af.trigger("my_dag", conf={"n": 3})
        assert af.wait_for_run("my_dag", run_id) == "success"

CLI (foreground; Ctrl-C or SIGTERM stops every component and exits 0)::

    python scripts/local_airflow.py --home .airflow-home --dags dags [--port 8080]

Design notes:

* Every component is started directly (not ``airflow standalone``) in its own session/process group,
  with stdout+stderr going to ``<log_dir>/<component>.log``. The scheduler and triggerer run with
  ``--skip-serve-logs``: their log servers would otherwise listen on 0.0.0.0:8793/8794 with no host
  option. The api-server reads task logs from the shared local log folder instead.
* Everything binds to 127.0.0.1. The execution API URL always follows the api-server port.
* ``stop()`` signals whole sessions, not only the direct children. LocalExecutor task processes are put
  in their own process groups by the task supervisor, so ``killpg`` on the scheduler does not reach them,
  but they stay in the scheduler's session. Anything left in a component's session after the grace
  period is SIGKILLed.
* Components get ``PR_SET_PDEATHSIG=SIGTERM``: if the process that called ``start()`` dies (even by
  SIGKILL), they are terminated as well. Linux delivers it when the *thread* that started them exits,
  so call ``start()`` from a long-lived thread (normally the main thread).
* Inherited ``AIRFLOW__*``, ``AIRFLOW_HOME`` and ``AIRFLOW_CONFIG`` variables are dropped, so a test
  process's own Airflow settings (e.g. ``UNIT_TEST_MODE`` for ``dag.test()``) don't leak in. Pass
  settings through ``extra_env`` (CLI: ``-e KEY=VALUE``). ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` are kept.
* Another executor or database: set ``AIRFLOW__CORE__EXECUTOR`` / ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (and
  e.g. the ``[celery]`` settings) in ``extra_env`` and start the workers as ``extra_components``
  (tests/celery/conftest.py runs a CeleryExecutor this way).
* Secrets (JWT secret, api secret key, fernet key) are random per home and persisted in
  ``<home>/local_airflow_secrets.json``, so tokens and encrypted connections survive restarts.

Only the standard library and ``requests`` are used.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

__all__ = ["LocalAirflow", "LocalAirflowError"]

USERNAME = "admin"
TERMINAL_RUN_STATES = ("success", "failed")
DEFAULT_CLI_PORT = 8080

# (component name, airflow sub-command). Start order; stop order is defined in stop().
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("api-server", ("api-server",)),  # host/port are added in _component_args()
    ("scheduler", ("scheduler", "--skip-serve-logs")),
    ("dag-processor", ("dag-processor",)),
    ("triggerer", ("triggerer", "--skip-serve-logs")),
)

_PR_SET_PDEATHSIG = 1
try:  # Linux only; elsewhere components simply don't get a parent-death signal.
    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover
    _LIBC = None


class LocalAirflowError(RuntimeError):
    """Start-up failure, REST error, import error or timeout of a LocalAirflow instance."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _q(value: str) -> str:
    """Percent-encode one URL path segment (run ids contain ':' and '+')."""
    return urllib.parse.quote(str(value), safe="")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def _proc_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, sid, state) for every process, read from /proc."""
    table: dict[int, tuple[int, int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
        except (IndexError, ValueError):
            continue
    return table


def _session_members(sids: set[int]) -> list[tuple[int, int, int]]:
    """Live (non-zombie) processes in any of ``sids``: list of (pid, pgid, sid)."""
    me = os.getpid()
    return [
        (pid, pgid, sid)
        for pid, (_ppid, pgid, sid, state) in _proc_table().items()
        if sid in sids and state != "Z" and pid != me
    ]


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _load_or_create_secrets(home: Path) -> dict[str, str]:
    path = home / "local_airflow_secrets.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if all(
            isinstance(data.get(k), str) and data[k] for k in ("jwt_secret", "api_secret_key", "fernet_key")
        ):
            return data
    data = {
        "jwt_secret": secrets.token_urlsafe(64),  # 86 chars: >= 64 bytes, no InsecureKeyLengthWarning
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data


class _Component:
    __slots__ = ("name", "popen", "log_path")

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid  # == its pgid and sid (start_new_session=True)


class LocalAirflow:
    """A real Airflow (LocalExecutor, SQLite, SimpleAuthManager) on 127.0.0.1, plus a small REST client."""

    #: keys of GET /api/v2/monitor/health that must report "healthy" before start() returns
    required_health: tuple[str, ...] = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    username: str = USERNAME

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        port: int | None = None,
        parallelism: int = 4,
        extra_env: dict[str, str] | None = None,
        airflow_bin: str | None = None,
        log_dir: Path | None = None,
        extra_components: Sequence[tuple[str, Sequence[str], Mapping[str, str] | None]] = (),
    ) -> None:
        self.home = Path(home).expanduser().absolute()
        self.dags_folder = Path(dags_folder).expanduser().absolute()
        self.port = int(port) if port is not None else _free_port()
        self.parallelism = int(parallelism)
        self.log_dir = Path(log_dir).expanduser().absolute() if log_dir else self.home / "component-logs"
        # (name, airflow sub-command, extra env) started after the standard components, e.g. Celery workers
        # ("w1", ("celery", "worker", "--skip-serve-logs", "-H", "w1@%h"), {"WORKER_ID": "w1"}).
        self.extra_components: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
            (str(name), tuple(sub), dict(env or {})) for name, sub, env in extra_components
        ]
        self.airflow_bin = airflow_bin or self._default_airflow_bin()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = self._build_env(extra_env or {})
        self.startup_seconds: float | None = None
        self.timings: dict[str, float] = {}  # start-up phases, seconds (informational)

        self._components: list[_Component] = []
        self._lock = threading.RLock()
        self._session = requests.Session()
        self._token: str | None = None

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _default_airflow_bin() -> str:
        candidate = Path(sys.executable).parent / "airflow"  # no resolve(): keep the venv's bin dir
        if candidate.exists():
            return str(candidate)
        found = shutil.which("airflow")
        if found:
            return found
        raise LocalAirflowError(f"no 'airflow' executable next to {sys.executable} or on PATH")

    def _build_env(self, extra_env: dict[str, str]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AIRFLOW__") and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
        }
        bin_dir = str(Path(self.airflow_bin).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        keys = _load_or_create_secrets(self.home)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                # core
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),  # LocalExecutor forks this many workers
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # trigger() unpauses explicitly
                "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                # api-server
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
                "AIRFLOW__API__EXPOSE_CONFIG": "non-sensitive-only",
                "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
                # dag processor: new files show up within seconds instead of 5 min
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                # scheduler: detect dead task supervisors after 60 s instead of 300 s
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "False",
                # logging
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            }
        )
        env.update({str(k): str(v) for k, v in extra_env.items()})
        return env

    # ------------------------------------------------------------------ properties
    @property
    def password(self) -> str:
        """Admin password generated by SimpleAuthManager on the first api-server start."""
        path = Path(
            self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
            or self.home / "simple_auth_manager_passwords.json.generated"
        )
        try:
            return json.loads(path.read_text())[self.username]
        except (OSError, ValueError, KeyError) as e:
            raise LocalAirflowError(f"admin password not available in {path}: {e!r}") from e

    @property
    def component_logs(self) -> dict[str, Path]:
        names = [name for name, _ in COMPONENTS] + [name for name, _, _ in self.extra_components]
        return {name: self.log_dir / f"{name}.log" for name in names}

    def component_pids(self) -> dict[str, int]:
        """Running components: name -> pid (each is its own session and process group leader)."""
        with self._lock:
            return {c.name: c.pid for c in self._components}

    @property
    def running(self) -> bool:
        return bool(self._components)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalAirflow:
        if not self._components:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _component_args(self, name: str, sub: tuple[str, ...]) -> list[str]:
        args = [self.airflow_bin, *sub]
        if name == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
        return args

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> _Component:
        log_path = self.log_dir / f"{name}.log"
        parent_pid = os.getpid()

        def child_setup() -> None:  # runs in the child between fork and exec
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if _LIBC is not None:
                _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent_pid:  # parent died before prctl took effect
                os._exit(1)

        with open(log_path, "ab") as log:
            log.write(
                f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} local_airflow: {' '.join(args)}\n".encode()
            )
            log.flush()
            popen = subprocess.Popen(
                args,
                env={**self.env, **env} if env else self.env,
                cwd=str(self.home),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session + process group; terminal Ctrl-C doesn't reach it
                preexec_fn=child_setup,
            )
        comp = _Component(name, popen, log_path)
        with self._lock:
            self._components.append(comp)
        return comp

    def start(self, timeout: float = 240) -> LocalAirflow:
        """Migrate the DB, start all components and wait until the health endpoint is green."""
        with self._lock:
            if self._components:
                raise LocalAirflowError("already started")
            atexit.register(self.stop)
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            if not self.dags_folder.is_dir():
                raise LocalAirflowError(f"dags folder {self.dags_folder} does not exist")
            if not _port_is_free(self.port):
                raise LocalAirflowError(f"port 127.0.0.1:{self.port} is already in use")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._migrate(deadline)
            self.timings["db_migrate"] = time.monotonic() - t0
            for name, sub in COMPONENTS:
                self._spawn(name, self._component_args(name, sub))
            for name, sub, env in self.extra_components:
                self._spawn(name, [self.airflow_bin, *sub], env)
            self._wait_healthy(deadline)
        except BaseException as e:
            tails = self._log_tails()
            self.stop()
            if not isinstance(e, Exception):  # KeyboardInterrupt, SystemExit, CLI stop signal
                raise
            raise LocalAirflowError(f"Airflow failed to start: {e}\n{tails}") from e
        self.startup_seconds = time.monotonic() - t0
        self._token = None
        return self

    def _migrate(self, deadline: float) -> None:
        comp = self._spawn("db-migrate", [self.airflow_bin, "db", "migrate"])
        try:
            rc = comp.popen.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise LocalAirflowError("'airflow db migrate' timed out") from None
        with self._lock:
            self._components.remove(comp)  # reaped: never signal its (reusable) pid again
        if rc != 0:
            raise LocalAirflowError(f"'airflow db migrate' exited with {rc}")

    def _wait_healthy(self, deadline: float) -> None:
        last: Any = None
        warmed = False
        while True:
            for comp in list(self._components):
                rc = comp.popen.poll()
                if rc is not None:
                    raise LocalAirflowError(f"component {comp.name} exited with code {rc} during start-up")
            try:
                r = self._session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                last = f"HTTP {r.status_code}: {r.text[:500]}"
                if r.status_code == 200:
                    if not warmed:
                        # The first request to the execution API sub-app takes ~5-6 s (lazy init), longer
                        # than the workers' 5 s [workers] execution_api_timeout: without this warm-up the
                        # first task's first call times out and is retried. Overlaps the other start-ups.
                        t = time.monotonic()
                        self._session.get(f"{self.base_url}/execution/health", timeout=120)
                        self.timings["execution_api_warmup"] = time.monotonic() - t
                        warmed = True
                        continue
                    health = r.json()
                    last = health
                    if all((health.get(k) or {}).get("status") == "healthy" for k in self.required_health):
                        return
            except (requests.RequestException, ValueError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise LocalAirflowError(f"timed out waiting for a healthy Airflow; last health: {last}")
            time.sleep(0.5)

    def _log_tails(self, lines: int = 40) -> str:
        out = []
        for name in ["db-migrate", *self.component_logs]:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                out.append(f"----- {name} ({path}), last {lines} lines -----\n{_tail(path, lines)}")
        return "\n".join(out)

    def stop(self, timeout: float = 30) -> None:
        """Stop every component and everything they started. Idempotent; SIGKILLs whatever is left."""
        with self._lock:
            comps = list(self._components)
            if not comps:
                return
            deadline = time.monotonic() + timeout
            # Keep a few seconds for the api-server: task supervisors report their final state through it.
            api_reserve = min(10.0, timeout / 3)
            api = [c for c in comps if c.name == "api-server"]
            others = [c for c in comps if c.name != "api-server"]

            # 1. scheduler/dag-processor/triggerer (and db-migrate if interrupted): SIGTERM the process
            #    group, and SIGTERM the task-process groups in the same session (they are in their own
            #    process groups), so running tasks don't delay the LocalExecutor shutdown.
            for c in others:
                _signal_group(c.pid, signal.SIGTERM)
            other_sids = {c.pid for c in others}
            for pid, pgid, _sid in _session_members(other_sids):
                if pgid not in other_sids:
                    _signal_pid(pid, signal.SIGTERM)
            self._wait_sessions(others, deadline - api_reserve)
            self._kill_sessions(others)

            # 2. api-server last.
            for c in api:
                _signal_group(c.pid, signal.SIGTERM)
            self._wait_sessions(api, max(deadline, time.monotonic() + 2.0))
            self._kill_sessions(comps)
            self._components.clear()
            self._token = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)

    @staticmethod
    def _wait_sessions(comps: list[_Component], until: float) -> bool:
        sids = {c.pid for c in comps}
        while True:
            for c in comps:
                c.popen.poll()  # reap the leaders
            if not _session_members(sids):
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(0.2)

    @staticmethod
    def _kill_sessions(comps: list[_Component]) -> None:
        sids = {c.pid for c in comps}
        for _ in range(50):
            members = _session_members(sids)
            if not members:
                break
            for pid, _pgid, _sid in members:
                _signal_pid(pid, signal.SIGKILL)
            time.sleep(0.1)
            for c in comps:
                c.popen.poll()
        for c in comps:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.popen.wait(timeout=5)

    def unexpected_exits(self) -> dict[str, int]:
        """Components that have exited although stop() was not called: name -> return code."""
        with self._lock:
            return {c.name: rc for c in self._components if (rc := c.popen.poll()) is not None}

    # ------------------------------------------------------------------ REST helpers
    def _fetch_token(self) -> str:
        r = self._session.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=30,
        )
        if r.status_code not in (200, 201):
            raise LocalAirflowError(f"POST /auth/token -> HTTP {r.status_code}: {r.text[:500]}")
        return r.json()["access_token"]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Authenticated request to ``base_url + path`` (e.g. ``"/api/v2/dags"``); returns the response."""
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        kwargs.setdefault("timeout", 60)
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            headers["Authorization"] = f"Bearer {self._token}"
            r = self._session.request(method, url, headers=headers, **kwargs)
            if r.status_code != 401 or attempt:
                return r
            self._token = None  # expired or server restarted with another secret: fetch a new one
        return r  # pragma: no cover

    def _json(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        r = self.api(method, path, **kwargs)
        if r.status_code not in ok:
            raise LocalAirflowError(f"{method} {path} -> HTTP {r.status_code}: {r.text[:2000]}")
        return r.json() if r.content else None

    def _paged(self, path: str, item_key: str, params: dict[str, Any] | None = None) -> list[dict]:
        items: list[dict] = []
        params = dict(params or {})
        while True:
            page = self._json("GET", path, params={**params, "limit": 100, "offset": len(items)})
            batch = page.get(item_key) or []
            items.extend(batch)
            if not batch or len(items) >= page.get("total_entries", 0):
                return items

    @staticmethod
    def _ti_path(dag_id: str, run_id: str, task_id: str | None = None) -> str:
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances"
        return f"{path}/{_q(task_id)}" if task_id is not None else path

    # ------------------------------------------------------------------ DAG helpers
    def import_errors(self) -> list[dict]:
        """All entries of GET /api/v2/importErrors (keys: filename, bundle_name, stack_trace, ...)."""
        return self._paged("/api/v2/importErrors", "import_errors")

    def _candidate_files(self, dag_id: str) -> set[str]:
        """Relative paths of files in the dags folder whose text mentions ``dag_id``."""
        needle = dag_id.encode()
        found: set[str] = set()
        for path in self.dags_folder.rglob("*"):
            if path.suffix in (".py", ".zip") and path.is_file():
                with contextlib.suppress(OSError):
                    if needle in path.read_bytes():
                        found.add(path.relative_to(self.dags_folder).as_posix())
        return found

    def _import_error_for(self, dag_id: str, relative_fileloc: str | None) -> dict | None:
        files = {relative_fileloc} if relative_fileloc else self._candidate_files(dag_id)
        for err in self.import_errors():
            name = err.get("filename") or ""
            rel = name
            with contextlib.suppress(ValueError):
                rel = Path(name).relative_to(self.dags_folder).as_posix()
            if rel in files or name in files:
                return err
        return None

    @staticmethod
    def _import_error_text(dag_id: str, err: dict) -> str:
        return f"DAG {dag_id!r}: import error in {err.get('filename')}:\n{err.get('stack_trace')}"

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the DAG is parsed without import errors; raise with the import error if it has one."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            r = self.api("GET", f"/api/v2/dags/{_q(dag_id)}")
            if r.status_code == 200:
                dag = r.json()
                if not dag.get("has_import_errors") and not dag.get("is_stale"):
                    return
                last = f"has_import_errors={dag.get('has_import_errors')} is_stale={dag.get('is_stale')}"
                if dag.get("has_import_errors"):
                    err = self._import_error_for(dag_id, dag.get("relative_fileloc"))
                    if err:
                        raise LocalAirflowError(self._import_error_text(dag_id, err))
            elif r.status_code == 404:
                last = "404 (not parsed yet)"
                err = self._import_error_for(dag_id, None)
                if err:
                    raise LocalAirflowError(self._import_error_text(dag_id, err))
            else:
                raise LocalAirflowError(f"GET /api/v2/dags/{dag_id} -> HTTP {r.status_code}: {r.text[:2000]}")
            if time.monotonic() > deadline:
                errors = "\n".join(f"- {e.get('filename')}" for e in self.import_errors()) or "none"
                raise LocalAirflowError(
                    f"DAG {dag_id!r} did not appear within {timeout}s (last: {last}); "
                    f"import errors: {errors}\n"
                    f"----- dag-processor log -----\n{_tail(self.log_dir / 'dag-processor.log', 30)}"
                )
            time.sleep(1.0)

    def trigger(self, dag_id: str, conf: dict | None = None, *, run_id: str | None = None) -> str:
        """Unpause the DAG and create a manual run (logical_date null). Returns the dag_run_id."""
        self._json("PATCH", f"/api/v2/dags/{_q(dag_id)}", json={"is_paused": False})
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return self._json("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._json("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300, poll: float = 1.0) -> str:
        """Poll the run until it is success/failed; return that state. Raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.dag_run(dag_id, run_id).get("state")
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                tis = {
                    f"{t['task_id']}[{t.get('map_index', -1)}]": t.get("state")
                    for t in self.task_instances(dag_id, run_id)
                }
                raise LocalAirflowError(
                    f"run {run_id!r} of {dag_id!r} still {state!r} after {timeout}s; task states: {tis}"
                )
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """All task instances of the run (mapped ones included), as returned by the REST API."""
        return self._paged(self._ti_path(dag_id, run_id), "task_instances")

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict]:
        """Structured log records of one try: the ``content`` list ({"event": ..., "timestamp": ..., ...})."""
        path = f"{self._ti_path(dag_id, run_id, task_id)}/logs/{int(try_number)}"
        params: dict[str, Any] = {"map_index": map_index}
        content: list[dict] = []
        for _ in range(20):  # follow continuation tokens while they yield more records
            page = self._json("GET", path, params=params, headers={"Accept": "application/json"})
            batch = page.get("content") or []
            content.extend(batch)
            token = page.get("continuation_token")
            if not token or not batch:
                break
            params = {"map_index": map_index, "token": token}
        return content

    def state_store(
        self, dag_id: str, run_id: str, task_id: str, key: str | None = None, map_index: int = -1
    ) -> dict | None:
        """Task state store of one task instance; None on 404.

        With ``key``: ``{"key", "value", "updated_at", "expires_at"}``
        (GET .../taskInstances/{task_id}/state-store/{key}?map_index=N).
        Without: ``{"task_state_store": [<entries as above>], "total_entries": N}`` (all pages merged).
        """
        base = f"{self._ti_path(dag_id, run_id, task_id)}/state-store"
        if key is not None:
            r = self.api("GET", f"{base}/{_q(key)}", params={"map_index": map_index})
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise LocalAirflowError(f"GET {base}/{key} -> HTTP {r.status_code}: {r.text[:2000]}")
            return r.json()
        entries: list[dict] = []
        while True:
            r = self.api("GET", base, params={"map_index": map_index, "limit": 100, "offset": len(entries)})
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise LocalAirflowError(f"GET {base} -> HTTP {r.status_code}: {r.text[:2000]}")
            page = r.json()
            batch = page.get("task_state_store") or []
            entries.extend(batch)
            if not batch or len(entries) >= page.get("total_entries", 0):
                return {"task_state_store": entries, "total_entries": len(entries)}

    def clear_task(self, dag_id: str, run_id: str, task_ids: list[str], only_failed: bool = False) -> None:
        """Clear task instances of one run (they re-run; the run goes back to queued)."""
        self._json(
            "POST",
            f"/api/v2/dags/{_q(dag_id)}/clearTaskInstances",
            json={
                "dry_run": False,  # the API defaults to a dry run
                "dag_run_id": run_id,
                "task_ids": list(task_ids),
                "only_failed": only_failed,
                "reset_dag_runs": True,
            },
        )


# ---------------------------------------------------------------------- CLI
class _StopRequested(BaseException):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _say(message: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def _parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env expects KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def _iter_signals() -> Iterator[int]:
    yield signal.SIGINT
    yield signal.SIGTERM
    if hasattr(signal, "SIGHUP"):
        yield signal.SIGHUP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a local Airflow (api-server, scheduler, dag-processor, "
        "triggerer) on 127.0.0.1 in the foreground. Ctrl-C stops it."
    )
    parser.add_argument("--home", type=Path, default=Path(".airflow-home"), help="AIRFLOW_HOME (created)")
    parser.add_argument("--dags", type=Path, default=Path("dags"), help="dags folder")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"api-server port (default {DEFAULT_CLI_PORT} if free, else a free port)",
    )
    parser.add_argument("--parallelism", type=int, default=4, help="[core] parallelism (default 4)")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="component logs (default HOME/component-logs)"
    )
    parser.add_argument("--timeout", type=float, default=240, help="start-up timeout in seconds")
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for all components (repeatable)",
    )
    args = parser.parse_args(argv)

    port = args.port
    if port is None:
        port = DEFAULT_CLI_PORT if _port_is_free(DEFAULT_CLI_PORT) else _free_port()

    stopping = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping["flag"]:
            return  # already shutting down; stop() SIGKILLs after its timeout anyway
        stopping["flag"] = True
        raise _StopRequested(signum)

    # Install explicitly: a backgrounded process may have inherited SIGINT=SIG_IGN.
    for sig in _iter_signals():
        signal.signal(sig, on_signal)

    af = LocalAirflow(
        args.home,
        args.dags,
        port=port,
        parallelism=args.parallelism,
        extra_env=_parse_env(args.env),
        log_dir=args.log_dir,
    )
    _say(f"Starting Airflow: AIRFLOW_HOME={af.home} dags={af.dags_folder} port={af.port}")
    _say(f"Component logs: {af.log_dir}")
    try:
        af.start(timeout=args.timeout)
        _say(
            "\nAirflow is ready in {:.1f}s\n"
            "  UI:        {}\n"
            "  username:  {}\n"
            "  password:  {}\n"
            "  logs:\n{}\n"
            "Press Ctrl-C to stop.".format(
                af.startup_seconds or 0.0,
                af.base_url,
                af.username,
                af.password,
                "\n".join(f"    {name:14s} {path}" for name, path in af.component_logs.items()),
            )
        )
        while True:
            time.sleep(1.0)
            dead = af.unexpected_exits()
            if dead:
                stopping["flag"] = True
                _say(f"\nComponent(s) exited unexpectedly: {dead}", err=True)
                for name in dead:
                    _say(f"----- {name} -----\n{_tail(af.log_dir / f'{name}.log', 30)}", err=True)
                _say("Stopping the remaining components...", err=True)
                af.stop()
                return 1
    except _StopRequested as e:
        _say(f"\nReceived {e}, stopping Airflow...")
        t0 = time.monotonic()
        af.stop()
        _say(f"Stopped in {time.monotonic() - t0:.1f}s.")
        return 0
    except LocalAirflowError as e:
        stopping["flag"] = True
        _say(f"\n{e}", err=True)
        af.stop()
        return 1
    finally:
        stopping["flag"] = True
        af.stop()  # no-op if already stopped


if __name__ == "__main__":
    sys.exit(main())
