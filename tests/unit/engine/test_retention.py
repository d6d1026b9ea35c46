"""Retention on real job folders: output/work/records clocks, live attempts, containment, dry run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.engine.retention import RetentionPolicy, apply_retention
from airflow_batch_provider.exceptions import BatchInputError
from tests.conftest import sample_frame

DAY = 86400.0
NOW = time.time()
POLICY = RetentionPolicy(output_days=30, work_days=7, records_days=30, live_grace_s=3600)


def write_gen(job: Path, number: int, status: str | None, age_s: float) -> Path:
    gen = job / f"g{number:04d}"
    for sub in ("parts", "segments", "states", "quarantine", "fit"):
        (gen / sub).mkdir(parents=True, exist_ok=True)
    (gen / "parts" / "f00000-r000000000000.parquet").write_bytes(b"PAR1")
    (gen / "segments" / "s000000.json").write_text("[]")
    (gen / "states" / "x.json").write_text("{}")
    (gen / "quarantine" / "f00000-r000000000000.parquet").write_bytes(b"PAR1")
    (gen / "fit_state.json").write_text("{}")
    (gen / "plan.json").write_text("{}")
    if status is not None:
        checkpoint = {"format_version": 1, "generation": number, "status": status, "updated_at": NOW - age_s}
        (gen / "_checkpoint.json").write_text(json.dumps(checkpoint))
    return gen


def make_job(
    base: Path, rel: str, *, committed: int | None, gens: dict[int, tuple[str | None, float]]
) -> Path:
    job = base / rel
    job.mkdir(parents=True)
    for number, (status, age_s) in gens.items():
        write_gen(job, number, status, age_s)
    if committed is not None:
        parts = [f"g{committed:04d}/parts/f00000-r000000000000.parquet"]
        manifest = {"generation": committed, "parts": parts, "quarantine": []}
        (job / "_manifest.json").write_text(json.dumps(manifest))
        (job / "_SUCCESS").write_bytes(b"")
    return job


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_output_older_than_output_retention_is_deleted_whole(tmp_path):
    old = make_job(tmp_path, "dag/run1/task/-1", committed=1, gens={1: ("succeeded", 40 * DAY)})
    young = make_job(tmp_path, "dag/run2/task/-1", committed=1, gens={1: ("succeeded", 2 * DAY)})
    before = tree(young)
    summary = apply_retention(tmp_path, POLICY, now=NOW)
    assert not old.exists()
    assert tree(young) == before
    assert summary["counts"] == {"output": 1, "work": 0, "records": 0}
    assert summary["deleted"] == [
        {"uri": str(old), "kind": "output", "reason": "committed output older than 30 days"}
    ]


def test_work_files_go_after_work_retention_but_the_output_stays(tmp_path):
    job = make_job(tmp_path, "dag/run/task/0", committed=2, gens={2: ("succeeded", 10 * DAY)})
    failed_old = write_gen(job, 1, "failed", 12 * DAY)  # superseded, failed
    failed_new = write_gen(job, 3, "failed", 2 * DAY)  # a re-run that failed recently: keep for resume
    summary = apply_retention(tmp_path, POLICY, now=NOW)
    assert not failed_old.exists()
    assert tree(failed_new) and (failed_new / "segments" / "s000000.json").exists()
    gen = job / "g0002"
    assert sorted(p.name for p in gen.iterdir()) == ["_checkpoint.json", "parts", "plan.json"]
    assert (gen / "parts" / "f00000-r000000000000.parquet").exists()
    assert (job / "_manifest.json").exists() and (job / "_SUCCESS").exists()
    assert summary["counts"] == {"output": 0, "work": 6, "records": 0}


def test_a_live_attempt_protects_its_whole_job_folder(tmp_path):
    job = make_job(
        tmp_path,
        "dag/run/task/-1",
        committed=1,
        gens={1: ("succeeded", 90 * DAY), 2: ("running", 30.0), 3: ("failed", 20 * DAY)},
    )
    before = tree(job)
    summary = apply_retention(tmp_path, POLICY, now=NOW)
    assert tree(job) == before
    assert summary["skipped_live"] == [str(job)]
    assert summary["counts"] == {"output": 0, "work": 0, "records": 0}


@pytest.mark.parametrize("status", ["running", "finalizing"])
def test_a_stale_running_generation_is_not_live(tmp_path, status):
    job = make_job(tmp_path, "d/r/t/-1", committed=None, gens={1: (status, 9 * DAY)})
    summary = apply_retention(tmp_path, POLICY, now=NOW)
    assert not (job / "g0001").exists() and summary["skipped_live"] == []


def test_a_generation_without_checkpoint_yet_is_live_while_young(tmp_path):
    job = make_job(tmp_path, "d/r/t/-1", committed=1, gens={1: ("succeeded", 60 * DAY), 2: (None, 0)})
    apply_retention(tmp_path, POLICY, now=NOW)
    assert (job / "_manifest.json").exists() and (job / "g0002" / "plan.json").exists()
    old = NOW - 10 * DAY
    os.utime(job / "g0002", (old, old))  # now it is an abandoned start
    apply_retention(tmp_path, POLICY, now=NOW)
    assert not job.exists()


def test_dry_run_deletes_nothing_and_lists_what_a_real_run_deletes(tmp_path):
    make_job(tmp_path, "a/r/t/-1", committed=1, gens={1: ("succeeded", 40 * DAY)})
    make_job(tmp_path, "b/r/t/-1", committed=2, gens={2: ("succeeded", 8 * DAY), 1: ("failed", 9 * DAY)})
    FailureRecords(tmp_path / "_records").add({"class": "network", "ts": NOW - 40 * DAY})
    before = tree(tmp_path)
    dry = apply_retention(tmp_path, POLICY, dry_run=True, now=NOW)
    assert tree(tmp_path) == before
    real = apply_retention(tmp_path, POLICY, now=NOW)
    assert dry["dry_run"] and not real["dry_run"]
    assert dry["deleted"] == real["deleted"] and dry["counts"] == real["counts"]
    assert real["counts"] == {"output": 1, "work": 6, "records": 1}


def test_records_follow_their_own_clock_and_are_not_a_job_folder(tmp_path):
    store = FailureRecords(tmp_path / "_records")
    store.add({"class": "memory", "ts": NOW - 10 * DAY})
    store.add({"class": "memory", "ts": NOW - 40 * DAY})
    alerts = tmp_path / "_records" / "alerts" / time.strftime("%Y-%m-%d", time.gmtime(NOW - 40 * DAY))
    alerts.mkdir(parents=True)
    (alerts / f"{int((NOW - 40 * DAY) * 1000)}-0123abcd.json").write_text("{}")
    active = tmp_path / "_records" / "active" / "job.json"
    active.parent.mkdir()
    active.write_text("{}")
    summary = apply_retention(tmp_path, POLICY, now=NOW)
    assert summary["counts"]["records"] == 2
    assert [r["class"] for r in store.iter_records()] == ["memory"]
    assert not alerts.exists() and active.exists()


def test_never_deletes_outside_the_base_path(tmp_path):
    base = tmp_path / "base"
    outside = make_job(tmp_path, "outside/dag/r/t/-1", committed=1, gens={1: ("succeeded", 400 * DAY)})
    before = tree(tmp_path / "outside")
    base.mkdir()
    (base / "dag").mkdir()
    (base / "dag" / "linked").symlink_to(tmp_path / "outside" / "dag", target_is_directory=True)
    job = make_job(base, "dag2/r/t/-1", committed=1, gens={1: ("succeeded", 400 * DAY)})
    (job / "g0001" / "segments").rename(job / "g0001" / "segments.real")
    (job / "g0001" / "segments").symlink_to(tmp_path / "outside", target_is_directory=True)
    summary = apply_retention(base, POLICY, now=NOW)
    assert outside.exists() and tree(tmp_path / "outside") == before
    assert not job.exists()  # deleted whole; the link inside it was removed, not followed
    assert all(d["uri"].startswith(str(base) + "/") for d in summary["deleted"])


@pytest.mark.parametrize("bad", ["", "/", "file:///"])
def test_refuses_an_empty_or_root_base(bad):
    with pytest.raises(BatchInputError):
        apply_retention(bad, POLICY, dry_run=True)


def test_negative_retention_is_rejected():
    with pytest.raises(ValueError):
        RetentionPolicy(work_days=-1)


def test_on_a_real_job_folder_output_survives_work_cleanup(tmp_path, make_parquet):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    base = tmp_path / "jobs"
    folder = base / "dag" / "run" / "task" / "-1"
    run_batch_job(str(tmp_path / "src"), lambda df, ctx: df.assign(y=df["x"] * 2), output_path=str(folder))
    expected = read_output(str(folder)).reset_index(drop=True)
    summary = apply_retention(base, POLICY, now=time.time() + 10 * DAY)
    assert summary["counts"]["output"] == 0 and summary["skipped_live"] == []
    pd.testing.assert_frame_equal(read_output(str(folder)).reset_index(drop=True), expected)
    summary = apply_retention(base, POLICY, now=time.time() + 31 * DAY)
    assert summary["counts"]["output"] == 1 and not folder.exists()
