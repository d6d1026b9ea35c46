"""Issue #5 proof: SIGKILL the task process of a multi-chunk job under a real scheduler, several times.

Components (api-server, scheduler, dag-processor, triggerer) run on 127.0.0.1 (scripts/local_airflow.py).
The DAG ``tests/dags/kill_ledger_job.py`` runs 90 chunks (checkpoint_interval c=3, max_concurrent_batches
m=2, retries=10, retry_delay=1 s); its processor appends one line per finished chunk call to a ledger. The
test kills the task process (the ledger's parent pid) at random points while chunks run (seed printed;
set ``KILL_TEST_SEED`` to replay), and checks for every kill that the next try resumed and redid at most
``c + m - 1`` chunks that the killed try had finished, and at the end that the DAG run succeeded and the
output equals an uninterrupted run's (no lost or duplicated rows). Figures (chunks redone, time to
recover) are printed and stored as the JUnit test-suite property ``kill_figures``. No skip: if Airflow cannot start,
the fixture errors and the test fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from tests.conftest import sample_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DAG_ID, TASK_ID = "kill_ledger_job", "ledger"
ROWS_PER_FILE, KILLS = 4_500, 3  # two files, chunks of 100 rows: 90 chunks


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DAG_MODULE = _load("kill_ledger_job", ROOT / "tests" / "dags" / "kill_ledger_job.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("kill-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "dags" / "kill_ledger_job.py", dags)
    ledger = home / "ledger.txt"
    extra = {"AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch"), DAG_MODULE.LEDGER_ENV: str(ledger)}
    src = home / "src"
    src.mkdir()
    for i in range(2):
        sample_frame(ROWS_PER_FILE, seed=i, offset=i * ROWS_PER_FILE).to_parquet(src / f"part-{i}.parquet")
    with _load("local_airflow", ROOT / "scripts" / "local_airflow.py").LocalAirflow(
        home, dags, parallelism=2, extra_env=extra
    ) as af:
        yield af, src, ledger


def read_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        f, s, e, pid, ppid, try_number, ts = line.split()
        out.append(
            {
                "range": (int(f), int(s), int(e)),
                "pid": int(pid),
                "ppid": int(ppid),
                "try": int(try_number),
                "ts": float(ts),
            }
        )
    return out


def new_ranges(calls: list[dict], try_number: int) -> set[tuple[int, int, int]]:
    """The chunks try ``try_number`` finished that no earlier try ran: its progress, not its rework."""
    earlier = {c["range"] for c in calls if c["try"] < try_number}
    return {c["range"] for c in calls if c["try"] == try_number} - earlier


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.timeout(1500)
def test_sigkilled_task_process_resumes_with_bounded_rework(env, record_testsuite_property):
    airflow, src, ledger = env
    seed = int(os.environ.get("KILL_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nKILL_TEST_SEED={seed}")  # noqa: T201 - shown with a failure, to replay it
    rng = random.Random(seed)
    config = DAG_MODULE.CONFIG
    bound = config.checkpoint_interval + config.max_concurrent_batches - 1
    chunks_total = 2 * ROWS_PER_FILE // config.batch_size

    airflow.wait_for_dag(DAG_ID)
    run_id = airflow.trigger(DAG_ID, conf={"source": str(src)})
    kills = []
    for k in range(KILLS):
        after = rng.randint(1, 10)  # new chunks this try finishes before the kill
        try_number = k + 1
        lines = wait_for(
            lambda n=try_number: [r for r in read_ledger(ledger) if r["try"] == n] or None,
            timeout=400,
            what=f"try {try_number} to finish a chunk",
        )
        task_pid = lines[0]["ppid"]
        wait_for(
            lambda n=try_number, a=after: len(new_ranges(read_ledger(ledger), n)) >= a,
            timeout=120,
            what=f"try {try_number} to finish {after} chunks no earlier try ran",
            poll=0.01,
        )
        killed_at = time.time()
        os.kill(task_pid, signal.SIGKILL)
        kills.append({"try": try_number, "task_pid": task_pid, "after": after, "killed_at": killed_at})

    state = airflow.wait_for_run(DAG_ID, run_id, timeout=900)
    calls = read_ledger(ledger)
    assert state == "success", f"the run ended {state}; ledger tries {sorted({c['try'] for c in calls})}"

    figures = []
    for kill in kills:
        killed = {c["range"] for c in calls if c["try"] == kill["try"]}
        earlier = {c["range"] for c in calls if c["try"] < kill["try"]}
        later = [c for c in calls if c["try"] > kill["try"]]
        redone = killed & {c["range"] for c in later}
        assert kill["try"] + 1 in {c["try"] for c in later}, f"try {kill['try'] + 1} never ran a chunk"
        first_new = min(
            c["ts"] for c in later if c["try"] == kill["try"] + 1 and c["range"] not in killed | earlier
        )
        figures.append(
            {
                "try": kill["try"],
                "chunks_done_by_killed_try": len(killed),
                "chunks_redone": len(redone),
                "bound_c_plus_m_minus_1": bound,
                "time_to_recover_s": round(first_new - kill["killed_at"], 2),
            }
        )
    report = [
        f"kill test (seed {seed}): {chunks_total} chunks, c={config.checkpoint_interval}, "
        f"m={config.max_concurrent_batches}"
    ]
    report += [
        f"  kill of try {f['try']}: {f['chunks_redone']} chunk(s) redone (bound {bound}) of "
        f"{f['chunks_done_by_killed_try']} it finished; time to recover {f['time_to_recover_s']} s"
        for f in figures
    ]
    print("\n".join(report))  # noqa: T201 - the figures issue #5 asks for
    record_testsuite_property("kill_figures", json.dumps({"seed": seed, "kills": figures}))

    ranges = [c["range"] for c in calls]
    assert set(ranges) == {(f, s, s + 100) for f in range(2) for s in range(0, ROWS_PER_FILE, 100)}
    assert len(ranges) - len(set(ranges)) == sum(f["chunks_redone"] for f in figures), "rework outside a kill"
    assert all(f["chunks_redone"] <= bound for f in figures), figures
    assert {c["try"] for c in calls} == set(range(1, KILLS + 2))

    pointer = airflow.state_store(DAG_ID, run_id, TASK_ID, "checkpoint")["value"]
    assert pointer["status"] == "succeeded"
    got = read_output(pointer["output_uri"])
    clean = run_batch_job(
        src,
        DAG_MODULE.ledger_chunk,
        config=config,
        output_path=ledger.parent / "uninterrupted",
        records_path=False,
        seconds=0,
        ledger=str(ledger.parent / "uninterrupted-ledger.txt"),
    )
    want = read_output(clean.output_uri)
    assert len(got) == 2 * ROWS_PER_FILE and got["id"].is_unique
    pd.testing.assert_frame_equal(got, want)
