"""Output compaction on S3 (moto on 127.0.0.1): compacted files are single uploads, the parts go in batched
deletes, and a failure while compacting leaves no object for the file being written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import compaction, run_batch_job
from tests.s3.conftest import CONN_ID, s3_keys

CONFIG = {
    "batch_size": 10_000,
    "max_concurrent_batches": 2,
    "checkpoint_interval": 10,
    "target_file_size_mb": 1,
}


def _path(bucket_prefix: str, rel: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{CONN_ID}@{bucket_prefix}/{rel}")


def _committed(s3_client, bucket_prefix: str) -> tuple[dict, pa.Table]:
    bucket, prefix = bucket_prefix.split("/", 1)

    def get(key: str) -> bytes:
        return s3_client.get_object(Bucket=bucket, Key=f"{prefix}/out/{key}")["Body"].read()

    manifest = json.loads(get("_manifest.json"))
    return manifest, pa.concat_tables([pq.read_table(pa.py_buffer(get(p))) for p in manifest["parts"]])


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": np.arange(200_000), "v": rng.random(200_000)}), path)
    return path


def test_compaction_on_s3_commits_few_files_with_the_same_rows(
    source, tmp_path, s3_prefix, s3_client, monkeypatch
):
    closes = {"n": 0}
    real_close = compaction._FileWriter.close

    def failing_close(self):
        closes["n"] += 1
        if closes["n"] == 2:
            raise OSError("connection reset (injected)")
        return real_close(self)

    monkeypatch.setattr(compaction._FileWriter, "close", failing_close)
    config = {**CONFIG, "compact_output": True}
    with pytest.raises(OSError, match="injected"):
        run_batch_job(str(source), "passthrough", config=config, output_path=_path(s3_prefix, "out"))
    keys = s3_keys(s3_client, s3_prefix)
    assert "out/g0001/compacted/c000000.parquet" in keys and "out/g0001/compacted/c000001.parquet" not in keys
    assert "out/_manifest.json" not in keys and len([k for k in keys if "/parts/" in k]) == 20

    monkeypatch.setattr(compaction._FileWriter, "close", real_close)
    result = run_batch_job(str(source), "passthrough", config=config, output_path=_path(s3_prefix, "out"))
    assert result.chunks_processed == 0 and result.extra["compaction"]["parts"] == 20
    manifest, table = _committed(s3_client, s3_prefix)
    assert table.equals(pq.read_table(source))
    assert 3 <= len(manifest["parts"]) <= 4 and manifest["compaction"]["files"] == len(manifest["parts"])
    keys = s3_keys(s3_client, s3_prefix)
    assert sorted(k for k in keys if "/compacted/" in k) == sorted(f"out/{p}" for p in manifest["parts"])
    assert not [k for k in keys if "/parts/" in k or k.endswith(".tmp")]
    sizes = [
        s3_client.head_object(Bucket=s3_prefix.split("/")[0], Key=f"{s3_prefix.split('/', 1)[1]}/out/{p}")[
            "ContentLength"
        ]
        for p in manifest["parts"]
    ]
    assert all(s <= compaction.MB for s in sizes)
