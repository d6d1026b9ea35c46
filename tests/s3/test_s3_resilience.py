"""S3 under stress, against moto on 127.0.0.1: SIGKILL and resume, a flaky network, stale attempts.

How objects are written (``Location.write_bytes``): one ``PutObject`` per part, segment and manifest (s3fs
switches to a multipart upload, whose object appears only at ``CompleteMultipartUpload``, above 100 MiB), so
an object is either absent or complete; there are no temp objects and no renames on S3.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.checkpoints import CheckpointStore, Fence
from airflow_batch_provider.exceptions import StaleAttemptError
from airflow_batch_provider.storage import Location
from tests.conftest import sample_frame
from tests.s3.conftest import BUCKET, CONN_ID, conn_json, s3_keys
from tests.s3.faultproxy import FAILING_FAULTS, FaultProxy

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def _path(bucket_prefix: str, rel: str, conn_id: str = CONN_ID):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{conn_id}@{bucket_prefix}/{rel}")


def _parquet_sources(tmp_path: Path, s3_client, bucket_prefix: str) -> tuple[Path, pd.DataFrame]:
    """Two Parquet files (1000 + 700 rows, row groups of 250), locally and under ``src/`` on S3."""
    local = tmp_path / "src"
    local.mkdir()
    frames = [sample_frame(1000, seed=1), sample_frame(700, seed=2, offset=1000)]
    for name, frame in zip("ab", frames, strict=True):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=250)
        (local / f"{name}.parquet").write_bytes(buf.getvalue())
        s3_client.put_object(
            Bucket=BUCKET, Key=f"{bucket_prefix.split('/', 1)[1]}/src/{name}.parquet", Body=buf.getvalue()
        )
    return local, pd.concat(frames, ignore_index=True)


def _get_json(s3_client, bucket_prefix: str, rel: str):
    try:
        body = s3_client.get_object(Bucket=BUCKET, Key=f"{bucket_prefix.split('/', 1)[1]}/{rel}")[
            "Body"
        ].read()
    except s3_client.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def _assert_every_object_is_whole(s3_client, bucket_prefix: str, folder: str) -> int:
    """Every object under ``folder`` parses: Parquet parts have a valid footer, JSON objects load."""
    prefix = bucket_prefix.split("/", 1)[1]
    checked = 0
    for key in s3_keys(s3_client, bucket_prefix):
        if not key.startswith(folder + "/") or "/_epochs/" in key or key.endswith("_SUCCESS"):
            continue
        body = s3_client.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()
        if key.endswith(".parquet"):
            pq.read_table(io.BytesIO(body))
        elif key.endswith(".json"):
            json.loads(body)
        else:
            raise AssertionError(f"unexpected object {key}")
        checked += 1
    return checked


# -- kill and resume -----------------------------------------------------------------------------------------
KILL_SCRIPT = """
import json, sys, time
from airflow.sdk import ObjectStoragePath
from airflow_batch_provider.engine import run_batch_job

src, out, ledger = sys.argv[1:4]

def slow(batch, ctx):
    with open(ledger, "a") as fh:
        fh.write(f"{ctx.file_index} {ctx.start_row}\\n")
    time.sleep(0.15)
    return batch

result = run_batch_job(ObjectStoragePath(src), slow, output_path=ObjectStoragePath(out),
                       config=dict(batch_size=60, max_concurrent_batches=2, checkpoint_interval=2,
                                   compact_output=False))
print(json.dumps(result.to_dict()))
"""
# compaction off: the test compares the committed parts themselves (test_s3_compaction.py compacts on S3)
KILL_CONFIG = {
    "batch_size": 60,
    "max_concurrent_batches": 2,
    "checkpoint_interval": 2,
    "compact_output": False,
}
CHUNKS = 17 + 12  # ceil(1000 / 60) + ceil(700 / 60)


def _ledger(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, ln.split())) for ln in path.read_text().splitlines() if ln.strip()]


def test_sigkill_mid_job_on_s3_then_resume(tmp_path, s3_prefix, s3_client):
    """A job writing to S3 runs in its own process group; it is SIGKILLed once a checkpoint on S3 lists
    finished chunks. The rerun resumes them, redoes at most ``checkpoint_interval + max_concurrent_batches - 1``
    chunks, and its output equals an uninterrupted run: no lost or duplicated rows."""
    local, frame = _parquet_sources(tmp_path, s3_client, s3_prefix)
    src, out = f"s3://{CONN_ID}@{s3_prefix}/src/", f"s3://{CONN_ID}@{s3_prefix}/out"
    ledger = tmp_path / "ledger.txt"
    args = [sys.executable, "-c", KILL_SCRIPT, src, out, str(ledger)]
    proc = subprocess.Popen(
        args, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            checkpoint = _get_json(s3_client, s3_prefix, "out/g0001/_checkpoint.json") or {}
            done = checkpoint.get("counters", {}).get("chunks_done", 0)
            if done >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"the job ended before it was killed: {proc.communicate()[1].decode()[-2000:]}"
        )
        assert done >= 6, "no checkpoint with finished chunks appeared on S3"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    before = _ledger(ledger)
    assert len(before) < CHUNKS, "the job should have been killed midway"
    # what a SIGKILL leaves on S3 is whole: every part, segment and manifest parses; nothing is committed yet
    assert _assert_every_object_is_whole(s3_client, s3_prefix, "out") > 0
    assert _get_json(s3_client, s3_prefix, "out/_manifest.json") is None

    killed_at = time.monotonic()
    rerun = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    rerun_s = time.monotonic() - killed_at
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    after = _ledger(ledger)[len(before) :]
    assert result["chunks_total"] == CHUNKS
    assert (
        result["chunks_resumed"] >= done and result["chunks_resumed"] + result["chunks_processed"] == CHUNKS
    )
    assert len(after) == result["chunks_processed"] < CHUNKS  # resumed chunks did not run again
    rework = set(before) & set(after)
    log.info(
        "kill/resume on S3: killed with %d chunks checkpointed (%d started); rerun %.1fs (job %.1fs), "
        "resumed %d, processed %d, redone %d",
        done,
        len(before),
        rerun_s,
        result["duration_s"],
        result["chunks_resumed"],
        result["chunks_processed"],
        len(rework),
    )
    assert len(rework) <= 2 + 2 - 1, f"redid {sorted(rework)}"
    assert set(before) | set(after) == {(0, s) for s in range(0, 1000, 60)} | {
        (1, s) for s in range(0, 700, 60)
    }

    clean = run_batch_job(str(local), "passthrough", config=KILL_CONFIG, output_path=str(tmp_path / "clean"))
    resumed = read_output(_path(s3_prefix, "out"))
    pd.testing.assert_frame_equal(resumed, read_output(clean.output_uri))
    pd.testing.assert_frame_equal(resumed, frame)  # every source row exactly once, in source order
    manifest = _get_json(s3_client, s3_prefix, "out/_manifest.json")
    assert manifest["summary"]["chunks"] == CHUNKS and len(manifest["parts"]) == CHUNKS
    assert sorted(manifest["parts"]) == sorted(
        json.loads((tmp_path / "clean" / "_manifest.json").read_text())["parts"]
    )
    keys = s3_keys(s3_client, s3_prefix)
    assert sorted(k[len("out/") :] for k in keys if k.startswith("out/g0001/parts/")) == sorted(
        manifest["parts"]
    )
    assert _assert_every_object_is_whole(s3_client, s3_prefix, "out") > CHUNKS


# -- flaky network -------------------------------------------------------------------------------------------
class _RetryLog(logging.Handler):
    """Collects the storage layer's retry warnings, from this process and from forked chunk workers.

    Workers inherit the handler through fork; they append one line per retry to a file (O_APPEND, one write).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if "; retry " in record.getMessage():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (record.getMessage().replace("\n", " ") + "\n").encode())
            finally:
                os.close(fd)

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


@pytest.fixture
def flaky(moto_endpoint, monkeypatch, tmp_path):
    """A fault proxy in front of moto, a connection through it (a new id each time: Airflow caches a
    connection's filesystem), and the storage layer's retry log.

    botocore's own retries are off (``config_kwargs={"retries": {"total_max_attempts": 1}}`` in the connection)
    and so are s3fs's (``S3FileSystem.retries = 1``, a class attribute: s3fs has no option for it that an
    Airflow connection passes on), so every injected fault reaches ``ResilientFileSystem``'s retry layer.
    """
    import s3fs

    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)), rate=0.25, seed=7).start()
    conn_id = f"batch_s3_flaky_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(proxy.endpoint, retries={"total_max_attempts": 1})
    )
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    handler = _RetryLog(tmp_path / "retries.log")
    logger = logging.getLogger("airflow_batch_provider.storage")
    logger.addHandler(handler)
    try:
        yield proxy, handler, conn_id
    finally:
        logger.removeHandler(handler)
        proxy.stop()


def test_job_survives_a_flaky_network_with_identical_output(tmp_path, s3_prefix, s3_client, flaky):
    """A quarter of the requests through the proxy get a connection reset, a lost response, a 503 SlowDown or
    a delay; the job (2 workers, many chunks, a checkpoint after every chunk) succeeds, its output equals a
    clean run, and every error the proxy injected was retried by the storage layer, exactly once each.

    The connection sets ``config_kwargs={"retries": {"total_max_attempts": 1}}`` (no botocore retries) and the
    fixture sets ``S3FileSystem.retries = 1`` (no s3fs retries), so the only retry layer left is ours
    (``ResilientFileSystem``); aiohttp's one silent resend of an idempotent request meets the same fault.
    """
    proxy, retry_log, conn_id = flaky
    local, frame = _parquet_sources(tmp_path, s3_client, s3_prefix)
    config = {"batch_size": 100, "max_concurrent_batches": 2, "checkpoint_interval": 1}
    started = time.monotonic()
    result = run_batch_job(
        _path(s3_prefix, "src/", conn_id),
        "passthrough",
        config=config,
        output_path=_path(s3_prefix, "out", conn_id),
        records_path=str(tmp_path / "records"),
    )
    elapsed = time.monotonic() - started
    counts = proxy.snapshot()
    clean = run_batch_job(str(local), "passthrough", config=config, output_path=str(tmp_path / "clean"))
    assert result.chunks_total == clean.chunks_total == 17 and result.rows_out == 1700
    pd.testing.assert_frame_equal(read_output(_path(s3_prefix, "out")), read_output(clean.output_uri))
    pd.testing.assert_frame_equal(read_output(_path(s3_prefix, "out")), frame)
    # faults really happened, and each one was retried by our storage layer (nothing else retries here)
    assert counts["requests"] > 100
    assert all(counts.get(f, 0) > 0 for f in ("reset", "lost_response", "slowdown", "delay")), counts
    retries = retry_log.lines()
    injected = sum(counts.get(f, 0) for f in FAILING_FAULTS)
    log.info("flaky run: %.1fs, proxy %s, storage retries %d", elapsed, counts, len(retries))
    assert len(retries) == injected, (counts, retries)
    assert any("Errno 16" in r for r in retries) and any("Connection" in r for r in retries)  # 503, reset
    assert _assert_every_object_is_whole(s3_client, s3_prefix, "out") > 17


@pytest.mark.parametrize("script", [["lost_response"], ["lost_response", "lost_response"]])
def test_a_lost_response_to_a_conditional_create_is_not_a_lost_win(script, s3_prefix, flaky):
    """The conditional PUT runs on the server but its response is lost. Once: aiohttp resends it unseen and
    gets 412. Twice: the storage layer retries and gets 412. Either way the create recognises its own bytes and
    reports the win; a second attempt with other bytes loses."""
    proxy, retry_log, conn_id = flaky
    proxy.rate = 0.0
    loc = Location.of(_path(s3_prefix, "fence/e0000000001", conn_id))
    proxy.script = list(script)
    assert loc.create_exclusive(b"attempt-a") is True
    assert proxy.snapshot().get("lost_response") == len(script)
    assert len(retry_log.lines()) == len(script) - 1
    assert loc.create_exclusive(b"attempt-b") is False
    assert loc.read_bytes() == b"attempt-a"


# -- stale attempts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("round_", range(3))
def test_attempts_racing_for_one_epoch_on_s3_get_different_epochs(round_, s3_prefix):
    """Four attempts take the same epoch at once: one gets it, the others the next free ones, none fails."""
    out = Location.of(_path(s3_prefix, "job"))
    barrier = threading.Barrier(4)
    fences: list[Fence] = []
    errors: list[BaseException] = []

    def take() -> None:
        barrier.wait()
        try:
            fences.append(Fence.acquire(out, 3))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(f.epoch for f in fences) == [3, 4, 5, 6]
    assert Fence.epochs(out) == [3, 4, 5, 6]


def test_objects_another_process_writes_are_seen_at_once(s3_prefix, moto_endpoint):
    """s3fs caches listings; a lookup answered from a stale one would hide a newer attempt's epoch or
    checkpoint (``ls``, ``exists`` and even ``cat_file`` consult it). The storage layer turns it off."""
    folder = Location.of(_path(s3_prefix, "job"))
    folder.child("a.json").write_json({"n": 1})
    assert folder.listdir() == ["a.json"]  # this listing would be cached
    other = _as_another_process(folder, moto_endpoint)
    other.child("b.json").write_json({"n": 2})
    other.child("a.json").remove()
    assert folder.listdir() == ["b.json"]
    assert folder.child("b.json").exists() and not folder.child("a.json").exists()
    assert folder.child("b.json").read_json() == {"n": 2}
    assert folder.child("a.json").read_json(default="gone") == "gone"


def _as_another_process(loc: Location, endpoint: str) -> Location:
    """The same S3 folder through a filesystem instance of its own, as another process (or host) has it."""
    import s3fs

    from airflow_batch_provider.storage import ResilientFileSystem

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    return Location(ResilientFileSystem(fs), loc.path, loc.uri)


def test_a_stale_epoch_cannot_commit_on_s3(s3_prefix, s3_client, moto_endpoint):
    """Once a newer attempt (another process: its own S3 client and listing cache) has taken the S3 folder,
    the older one writes no segment, manifest or output, although it listed ``_epochs`` before."""
    out = Location.of(_path(s3_prefix, "job"))
    old = Fence.acquire(out, 1)
    store = CheckpointStore(out, 1, "fp", "job", fence=old)
    store.add({"f": 0, "s": 0, "e": 10, "part": "f00000-r000000000000.parquet"})
    store.write("running")  # the owner commits
    old.check()  # lists _epochs through this process's filesystem (s3fs caches listings)
    before = s3_keys(s3_client, s3_prefix)
    new = Fence.acquire(_as_another_process(out, moto_endpoint), 2)
    assert new.epoch == 2
    store.add({"f": 0, "s": 10, "e": 20, "part": "f00000-r000000000010.parquet"})
    with pytest.raises(StaleAttemptError, match="newer attempt"):
        store.write("running")
    with pytest.raises(StaleAttemptError):
        store.commit_output(["f00000-r000000000000.parquet"], {}, {})
    with pytest.raises(StaleAttemptError, match="newer attempt"):
        Fence.acquire(out, 1)  # the newer attempt's generation is still running
    assert s3_keys(s3_client, s3_prefix) == sorted([*before, "job/_epochs/e0000000002"])
    assert _get_json(s3_client, s3_prefix, "job/g0001/_checkpoint.json")["segments"] == 1
