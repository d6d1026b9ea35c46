"""Property test (hypothesis): whatever run ids, task ids, map indexes and output paths a triggering user or a
tampered record supplies, nothing is written outside the allowed roots (issue #18).

The path computations are tested directly over thousands of cases, each checked against an independent
oracle (``os.path.realpath`` for local paths, plain prefix logic for URIs); a few hundred cases also write for
real into a sandbox whose every other file is watched.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_batch_provider.engine.paths import child_inside, is_within
from airflow_batch_provider.operators.batch import MAX_SEGMENT, BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.roots import confined_output_path
from airflow_batch_provider.operators.shards import sharded_job_folder
from airflow_batch_provider.storage import Location
from tests.unit.operators.task_context import FakeTI, context

SETTINGS = settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
WRITES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)

# ids as Airflow may carry them: any text (CJK, slashes, dots, percent signs, NUL, lone surrogates), long too
ids = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="./%~\\:_-aA中\x00", max_size=30),
    st.sampled_from(["", ".", "..", "../..", "/", "%2E%2E", "%", "%~", "a/../../b"]),
    st.text(alphabet="手动运行批/.", min_size=20, max_size=120),
    st.text(min_size=90, max_size=400),
)
map_indexes = st.one_of(st.integers(min_value=-1, max_value=10**6), st.integers())
segments = st.one_of(
    st.sampled_from(["..", ".", "", "%2e%2e", "~", "a", "b", "allowed", "base", "x" * 300, "中" * 40]),
    st.text(alphabet=string.ascii_letters + "._-%~", max_size=12),
)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    base = tmp_path / "base"
    allowed = tmp_path / "allowed"
    for folder in (base, allowed, tmp_path / "victim"):
        folder.mkdir()
    (tmp_path / "victim" / "data.txt").write_text("keep")
    (base / "escape").symlink_to(tmp_path / "victim", target_is_directory=True)  # a link out of the base
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(base))
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__ALLOWED_OUTPUT_ROOTS", f"{allowed},s3://bucket/allowed")
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__ENFORCE_OUTPUT_ROOTS", "True")
    return tmp_path


def real_inside(path: str, root: Path, *, strict: bool) -> bool:
    """The oracle for local paths: the resolved path is the root or lies under it."""
    resolved, real_root = os.path.realpath(path), os.path.realpath(root)
    return (not strict and resolved == real_root) or resolved.startswith(real_root + os.sep)


def uri_inside(uri: str, root: str) -> bool:
    """The oracle for object-store URIs: a plain prefix, no empty/./.. key parts, the same connection."""
    head, _, key = uri.partition("://")[2].partition("/")
    if "@" in head or any(p in ("", ".", "..") for p in key.rstrip("/").split("/")):
        return False
    return uri.rstrip("/") == root or uri.startswith(root + "/")


def folder_for(sandbox: Path, dag_id, run_id, task_id, map_index) -> str:
    ti = FakeTI(run_id=run_id, task_id=task_id, map_index=map_index)
    ti.dag_id = dag_id
    return BatchJobOperator(task_id="t", source="/x", processor="count").job_folder(context(ti))


@SETTINGS
@given(dag_id=ids, run_id=ids, task_id=ids, map_index=map_indexes)
def test_default_job_folders_stay_in_the_base_path(sandbox, dag_id, run_id, task_id, map_index):
    base = sandbox / "base"
    folder = folder_for(sandbox, dag_id, run_id, task_id, map_index)
    parts = folder[len(str(base)) + 1 :].split("/")
    assert folder.startswith(f"{base}/") and len(parts) == 4
    assert all(p not in ("", ".", "..") and len(p) <= MAX_SEGMENT for p in parts)
    assert "\x00" not in folder and real_inside(folder, base, strict=True)
    assert folder == folder_for(sandbox, dag_id, run_id, task_id, map_index)  # deterministic: retries resume
    grouped = sharded_job_folder(context(FakeTI(run_id=run_id)), task_id)
    assert grouped.startswith(f"{base}/") and real_inside(grouped, base, strict=True)


@SETTINGS
@given(a=st.tuples(ids, ids), b=st.tuples(ids, ids))
def test_different_ids_never_share_a_folder(sandbox, a, b):
    if a != b:
        assert folder_for(sandbox, "d", a[0], a[1], -1) != folder_for(sandbox, "d", b[0], b[1], -1)


@SETTINGS
@given(
    prefix=st.sampled_from(
        [
            "{base}/",
            "{allowed}/",
            "{tmp}/",
            "/",
            "",
            "file://{base}/",
            "s3://bucket/allowed/",
            "s3://bucket/",
            "s3://evil@bucket/allowed/",
            "s3://bucket/allowed",
            "{base}/escape/",
        ]
    ),
    parts=st.lists(segments, max_size=6),
)
def test_explicit_output_paths_are_inside_an_allowed_root_or_refused(sandbox, prefix, parts):
    base, allowed = sandbox / "base", sandbox / "allowed"
    path = prefix.format(base=base, allowed=allowed, tmp=sandbox) + "/".join(parts)
    try:
        accepted = confined_output_path(path, task="t")
    except BatchInputFailure:
        accepted = None
    if accepted is None:
        return
    assert accepted == path
    if path.startswith("s3://"):
        assert uri_inside(path, "s3://bucket/allowed")
    else:
        local = path[len("file://") :] if path.startswith("file://") else path
        assert real_inside(local, base, strict=True) or real_inside(local, allowed, strict=False)


@SETTINGS
@given(name=st.one_of(st.lists(segments, max_size=5).map("/".join), st.text(max_size=30)))
def test_manifest_entries_resolve_inside_their_folder_or_are_refused(name):
    joined = child_inside("/data/job", name)
    if joined is not None:
        assert joined.startswith("/data/job/") and ".." not in joined.split("/")
        assert is_within(joined, "/data/job", strict=True)


@WRITES
@given(run_id=ids, task_id=ids, map_index=map_indexes, parts=st.lists(segments, max_size=4))
def test_real_writes_land_inside_the_roots(sandbox, run_id, task_id, map_index, parts):
    base, allowed, victim = sandbox / "base", sandbox / "allowed", sandbox / "victim"
    targets = [folder_for(sandbox, "dag", run_id, task_id, map_index)]
    for root in (base, allowed, sandbox):
        try:
            targets.append(confined_output_path(f"{root}/" + "/".join(parts), task="t"))
        except BatchInputFailure:
            pass
    for target in targets:
        try:
            Location.of(target).child("_manifest.json").write_json({"ok": True})
        except OSError:  # a name the filesystem refuses (too long): nothing written, which is fine
            continue
    written = {p for p in sandbox.rglob("*") if p.is_file() and not p.is_symlink()}
    assert (victim / "data.txt").read_text() == "keep" and sorted(victim.iterdir()) == [victim / "data.txt"]
    for f in written - {victim / "data.txt"}:
        assert real_inside(str(f), base, strict=True) or real_inside(str(f), allowed, strict=True), f
