"""The sharded example DAG on a real CeleryExecutor: two Celery workers on this machine, PostgreSQL, redis-server.

``dags/example_sharded_job.py`` is triggered through the REST API. Asserted: the run succeeds; the shards ran on
both workers (each shard's pid was in one worker's process tree, and it is the worker whose ``BATCH_WORKER_ID``
the shard reported; both report the same hostname); and the merged result equals the same job run as one
``BatchJobOperator`` task (tests/dags/celery_single_job.py) on the same executor: same report, same summary.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.celery.conftest import WORKERS, WorkerTracker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]
SHARDED, SINGLE = "example_sharded_job", "celery_single_job"
ROWS, SHARDS = 40_000, 4


def xcom(af, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"):
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    r = af.api("GET", path, params={"map_index": map_index})
    assert r.status_code == 200, f"GET {path} -> HTTP {r.status_code}: {r.text[:1000]}"
    return r.json()["value"]


def task_states(af, dag_id: str, run_id: str) -> dict[str, str]:
    return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in af.task_instances(dag_id, run_id)}


def failure_logs(af, dag_id: str, run_id: str) -> str:
    """The last log lines of every failed or retried task instance, for the assertion message."""
    out = []
    for ti in af.task_instances(dag_id, run_id):
        if ti["state"] in ("failed", "up_for_retry") or ti["try_number"] > 1:
            log = af.task_log(dag_id, run_id, ti["task_id"], max(1, ti["try_number"]), ti["map_index"])
            lines = [f"  {e.get('level')} {str(e.get('event'))[:500]}" for e in log[-15:]]
            out.append(f"--- {ti['task_id']}[{ti['map_index']}] try {ti['try_number']}:\n" + "\n".join(lines))
    return "\n".join(out)


def test_sharded_example_runs_on_both_celery_workers_and_equals_the_single_task(celery_cluster):
    af = celery_cluster["airflow"]
    af.wait_for_dag(SHARDED, timeout=180)
    af.wait_for_dag(SINGLE, timeout=180)
    with WorkerTracker(celery_cluster["workers"]) as tracker:
        t0 = time.monotonic()
        run_id = af.trigger(SHARDED, conf={"rows": ROWS})
        state = af.wait_for_run(SHARDED, run_id, timeout=600)
        run_seconds = time.monotonic() - t0
        # afterwards, so that both workers are free for the shards; it reuses the demo rows the sharded run wrote
        single_run = af.trigger(SINGLE, conf={"rows": ROWS})
        single_state = af.wait_for_run(SINGLE, single_run, timeout=600)
    assert state == "success", (task_states(af, SHARDED, run_id), failure_logs(af, SHARDED, run_id))
    assert single_state == "success", failure_logs(af, SINGLE, single_run)
    states = task_states(af, SHARDED, run_id)
    assert sorted(k for k in states if k.startswith("profile.shard[")) == [
        f"profile.shard[{i}]" for i in range(SHARDS)
    ]

    # where each shard ran: the worker id it reported, and the worker whose process tree held its pid
    shards = [xcom(af, SHARDED, run_id, "profile.shard", i) for i in range(SHARDS)]
    assert [s["shard"] for s in shards] == list(range(SHARDS))
    assert sum(s["rows_in"] for s in shards) == ROWS
    assert {s["host"] for s in shards} == {
        socket.gethostname()
    }  # one host: only the worker id tells them apart
    for s in shards:
        assert s["worker"] in WORKERS, s
        assert tracker.owner.get(s["pid"]) == s["worker"], (s, {p: w for p, w in tracker.owner.items()})
    split = Counter(s["worker"] for s in shards)
    assert set(split) == set(WORKERS), f"every shard ran on one worker: {dict(split)}"

    merged = xcom(af, SHARDED, run_id, "profile.merge")
    single = xcom(af, SINGLE, single_run, "single")
    assert merged["rows_in"] == single["rows_in"] == ROWS
    assert merged["chunks_total"] == single["chunks_total"]
    assert merged["rows_out"] == single["rows_out"]
    assert [r["worker"] for r in merged["shard_runs"]] == [s["worker"] for s in shards]
    merged_report = json.loads((Path(merged["output_uri"]) / "_report.json").read_text())
    single_report = json.loads((Path(single["output_uri"]) / "_report.json").read_text())
    assert merged_report["rows"] == ROWS and merged_report["columns"]
    assert merged_report == single_report
    report = xcom(af, SHARDED, run_id, "report")
    assert report["rows"] == ROWS and report["parts"] == len(
        json.loads((Path(merged["output_uri"]) / "_manifest.json").read_text())["parts"]
    )

    sys.stderr.write(
        f"\ncelery: sharded run {run_seconds:.1f}s trigger->success, shards per worker "
        f"{dict(sorted(split.items()))}, cluster {celery_cluster['timings']}\n"
    )
