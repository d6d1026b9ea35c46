"""Jobs that read Parquet and CSV from S3 and write parts and manifests there, against moto on 127.0.0.1."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.operators.batch import BatchJobOperator, storage_target
from airflow_batch_provider.storage import Location
from tests.conftest import sample_frame
from tests.s3.conftest import CONN_ID, s3_keys
from tests.unit.operators.task_context import FakeTI, StateStore, context

CONFIG = {"batch_size": 400, "max_concurrent_batches": 2, "checkpoint_interval": 1}


def _path(bucket_prefix: str, rel: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{CONN_ID}@{bucket_prefix}/{rel}")


def _sources(tmp_path, bucket_prefix):
    """The same Parquet and CSV files locally and on S3."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = tmp_path / "src"
    (local / "parquet").mkdir(parents=True)
    for name, frame in (("a", sample_frame(900, seed=1)), ("b", sample_frame(700, seed=2, offset=900))):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=250)
        (local / "parquet" / f"{name}.parquet").write_bytes(buf.getvalue())
        _path(bucket_prefix, f"src/parquet/{name}.parquet").write_bytes(buf.getvalue())
    csv = sample_frame(1100, seed=3).drop(columns=["ts"]).to_csv(index=False).encode()
    (local / "data.csv").write_bytes(csv)
    _path(bucket_prefix, "src/data.csv").write_bytes(csv)
    return local


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_job_on_s3_equals_the_same_job_on_local_disk(kind, tmp_path, s3_prefix, s3_client):
    local = _sources(tmp_path, s3_prefix)
    local_src, s3_src = (
        (local / "parquet", "src/parquet/") if kind == "parquet" else (local / "data.csv", "src/data.csv")
    )
    config = {**CONFIG, "compact_output": False}  # the parts themselves: compaction has tests of its own
    on_disk = run_batch_job(str(local_src), "passthrough", config=config, output_path=str(tmp_path / "out"))
    on_s3 = run_batch_job(
        _path(s3_prefix, s3_src), "passthrough", config=config, output_path=_path(s3_prefix, "out")
    )
    assert on_s3.rows_out == on_disk.rows_out > 0 and on_s3.chunks_total == on_disk.chunks_total
    pd.testing.assert_frame_equal(
        _sorted(read_output(_path(s3_prefix, "out"))), _sorted(read_output(str(tmp_path / "out")))
    )
    keys = s3_keys(s3_client, s3_prefix)
    parts = [k for k in keys if k.startswith("out/g0001/parts/")]
    assert "out/_manifest.json" in keys and "out/_SUCCESS" in keys and "out/g0001/_checkpoint.json" in keys
    assert len(parts) == on_s3.chunks_total
    assert not [k for k in keys if k.endswith(".tmp")]  # object stores get one PUT, no temp objects


def test_operator_with_an_env_var_connection_writes_under_an_s3_base_path(tmp_path, s3_prefix, monkeypatch):
    local = _sources(tmp_path, s3_prefix)
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", f"s3://{CONN_ID}@{s3_prefix}/jobs")
    op = BatchJobOperator(
        task_id="job",
        source=f"s3://{CONN_ID}@{s3_prefix}/src/parquet/",
        processor="passthrough",
        config=BatchConfig(batch_size=400, checkpoint_interval=1, progress_interval_seconds=0),
    )
    summary = op.execute(context(FakeTI(), StateStore()))
    assert summary["output_uri"].startswith(f"s3://{CONN_ID}@{s3_prefix}/jobs/batch_dag/")
    expected = run_batch_job(
        str(local / "parquet"), "passthrough", config=CONFIG, output_path=str(tmp_path / "out")
    )
    assert summary["rows_out"] == expected.rows_out
    pd.testing.assert_frame_equal(
        _sorted(read_output(storage_target(summary["output_uri"]))),
        _sorted(read_output(str(tmp_path / "out"))),
    )


def test_create_exclusive_on_s3_is_a_conditional_put(s3_prefix):
    loc = Location.of(_path(s3_prefix, "fence/epoch-1"))
    assert loc.create_exclusive(b"attempt-a") is True
    assert loc.create_exclusive(b"attempt-b") is False
    assert loc.read_bytes() == b"attempt-a"
