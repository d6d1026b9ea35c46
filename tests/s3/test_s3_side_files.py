"""Side files of chunk states on object storage (#22): key runs and value distributions of a job whose folder is
on S3 go to ``{job}/_keys/`` on S3, as they go to the job folder on local disk, with the same results."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.processors import hashing, side_files
from tests.s3.conftest import CONN_ID, s3_keys

ROWS = 60_000  # well above hashing.SPILL_MIN_KEYS distinct keys per chunk
CONFIG = {"batch_size": 15_000, "max_concurrent_batches": 2, "checkpoint_interval": 1}
RULES = [{"type": "unique", "column": "key"}, {"type": "not_null", "column": "x"}]


def _path(bucket_prefix: str, rel: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{CONN_ID}@{bucket_prefix}/{rel}")


def _source(tmp_path, bucket_prefix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    key = rng.permutation(ROWS).astype(np.int64)
    key[[100, 40_000, 59_999]] = key[[5, 20_000, 30_000]]  # three repeated keys, across chunks
    table = pa.table({"key": key, "x": rng.normal(size=ROWS), "name": [f"n{i % 9000}" for i in range(ROWS)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=5_000)
    (tmp_path / "src.parquet").write_bytes(buf.getvalue())
    _path(bucket_prefix, "src/data.parquet").write_bytes(buf.getvalue())
    return tmp_path / "src.parquet"


def _spilled_states(obj) -> list[str]:
    """Every side-file reference (``{"n", "file"}``) in a JSON value."""
    found: list[str] = []
    if isinstance(obj, dict):
        if "file" in obj and "n" in obj and isinstance(obj["file"], str):
            found.append(obj["file"])
        for v in obj.values():
            found += _spilled_states(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _spilled_states(v)
    return found


@pytest.mark.parametrize("processor,kwargs", [("data_quality", {"rules": RULES}), ("data_profiling", {})])
def test_side_files_go_to_the_s3_job_folder_and_results_equal_local_disk(
    processor, kwargs, tmp_path, s3_prefix, s3_client
):
    local_src = _source(tmp_path, s3_prefix)
    on_disk = run_batch_job(
        str(local_src), processor, config=CONFIG, output_path=str(tmp_path / "out"), **kwargs
    )
    on_s3 = run_batch_job(
        _path(s3_prefix, "src/data.parquet"),
        processor,
        config=CONFIG,
        output_path=_path(s3_prefix, "out"),
        **kwargs,
    )
    assert json.dumps(on_s3.report, sort_keys=True, default=str) == json.dumps(
        on_disk.report, sort_keys=True, default=str
    )
    if processor == "data_quality":
        unique = next(r for r in on_s3.report["rules"] if r["type"] == "unique")
        assert unique["failed"] == 3
    keys = s3_keys(s3_client, s3_prefix)
    side = [k for k in keys if "/_keys/" in k]
    assert side, "no side file on S3: the states stayed inline"
    assert all(k.endswith((".u8", ".i8", ".b1", ".bin")) for k in side)
    assert not [k for k in keys if k.endswith(".tmp")]
    # the checkpointed states reference the S3 objects (not a path of this machine)
    checkpoint = _path(s3_prefix, "out/g0001/_checkpoint.json")
    refs = _spilled_states(json.loads(checkpoint.read_text())) if checkpoint.exists() else []
    for ref in refs:
        assert side_files.is_remote(ref), ref


def test_a_missing_side_file_on_s3_is_named(s3_prefix):
    from airflow_batch_provider.storage import Location

    out = _path(s3_prefix, "job")
    side_files.register(out)
    try:
        base = side_files.folder(Location.of(out).uri, "u0-test")
        state = hashing.run_state(np.arange(10_000, dtype=np.uint64), spill_to=base)
        assert state["file"] == base and side_files.is_remote(base)
        assert len(hashing.HashSet.from_state(state)) == 10_000
        _path(s3_prefix, "job/_keys/u0-test.h.u8").unlink()
        side_files.release(out)  # drop the cached copy: the next read must go to S3
        side_files.register(out)
        with pytest.raises(RuntimeError, match=r"u0-test\.h\.u8 is missing"):
            hashing.HashSet.from_state(state)
    finally:
        side_files.release(out)
