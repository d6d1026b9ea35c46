"""In-memory sources (pandas / polars DataFrame, pyarrow Table): stored once in the job folder as Parquet,
fingerprinted by content, reused by resumes and shards; anything else is a SourceError naming the type."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider import tuning
from airflow_batch_provider.engine import memory_sources, read_output, run_batch_job
from airflow_batch_provider.engine.failures import classify
from airflow_batch_provider.engine.shards import merge_shards, plan_shards, run_shard
from airflow_batch_provider.exceptions import ShardIncompleteError, SourceError
from tests.conftest import sample_frame

ROOT = Path(__file__).resolve().parents[3]
CONFIG = {"batch_size": 128, "max_concurrent_batches": 2}


def _double(batch, ctx):
    return batch.assign(y=batch["x"] * 2)


def _stored(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "_input").iterdir())


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow"])
def test_a_frame_runs_like_the_same_rows_in_a_parquet_file(tmp_path, kind):
    df = sample_frame(1000, seed=3)
    frame = {"pandas": df, "polars": pl.from_pandas(df), "arrow": pa.Table.from_pandas(df)}[kind]
    path = tmp_path / "data.parquet"
    df.to_parquet(path, index=False)

    from_frame = run_batch_job(frame, "data_profiling", config=CONFIG, output_path=tmp_path / "a")
    from_file = run_batch_job(path, "data_profiling", config=CONFIG, output_path=tmp_path / "b")
    assert from_frame.rows_in == 1000 and from_frame.chunks_total == 8
    if kind != "polars":  # polars' own types (large strings, ns timestamps as us) profile alike but not equal
        assert from_frame.report == from_file.report
    assert from_frame.report["rows"] == 1000

    rows = run_batch_job(frame, _double, config=CONFIG, output_path=tmp_path / "c")
    got = read_output(rows.output_uri)
    pd.testing.assert_series_equal(got["y"], df["x"] * 2, check_names=False)
    assert got["id"].tolist() == df["id"].tolist()


def test_the_copy_is_parquet_named_by_content_with_row_groups_sized_like_a_source(tmp_path):
    df = sample_frame(250_000, seed=1)
    stored = memory_sources.store(df, tmp_path)
    assert stored.rows == 250_000 and stored.kind == "pandas"
    meta = pq.ParquetFile(stored.location.path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100_000, 100_000, 50_000]
    assert stored.location.name == f"frame-{memory_sources.content_hash(memory_sources.to_arrow(df))}.parquet"
    marker = json.loads((tmp_path / "_input" / "_source.json").read_text())
    assert marker["file"] == stored.location.name and marker["rows"] == 250_000

    wide = pa.table({f"c{i}": pa.array(["x" * 2000] * 20) for i in range(200)})  # ~400 kB per row
    assert memory_sources.row_group_rows(wide) == memory_sources.MIN_ROW_GROUP_ROWS
    mid = pa.table({f"c{i}": pa.array([1.0] * 10) for i in range(100)})  # 800 bytes per row
    assert memory_sources.row_group_rows(mid) == 83_886  # 64 MiB / 800 bytes


def test_an_unnamed_index_is_dropped_and_a_named_one_becomes_a_column(tmp_path):
    df = pd.DataFrame({"v": [1.0, 2.0, 3.0]}, index=[10, 20, 30])
    result = run_batch_job(df, "passthrough", output_path=tmp_path / "a")
    assert read_output(result.output_uri).columns.tolist() == ["v"]
    named = df.rename_axis("key")
    result = run_batch_job(named, "passthrough", output_path=tmp_path / "b")
    got = read_output(result.output_uri)
    assert got.columns.tolist() == ["key", "v"] and got["key"].tolist() == [10, 20, 30]

    def sees(batch, ctx):  # a pandas callable gets the named index as a column too
        assert batch.columns.tolist() == ["key", "v"]
        return {"keys": batch["key"].tolist()}

    assert run_batch_job(named, sees, output_path=tmp_path / "c").report == {"keys": [10, 20, 30]}


def _fails_once(flag: str):
    def fn(batch, ctx):
        if ctx.start_row >= 512 and not os.path.exists(flag):
            raise RuntimeError("transient: fail once in the second half")
        return batch

    return fn


def test_a_resumed_run_with_the_same_frame_reuses_the_copy_and_the_checkpoint(tmp_path):
    df = sample_frame(1000, seed=4)
    out = tmp_path / "job"
    flag = str(tmp_path / "flag")
    with pytest.raises(Exception, match="transient"):
        run_batch_job(df, _fails_once(flag), config={**CONFIG, "retry_attempts": 0}, output_path=out)
    (copy,) = [p for p in (out / "_input").iterdir() if p.suffix == ".parquet"]
    stamp = copy.stat().st_mtime_ns
    Path(flag).touch()
    result = run_batch_job(df.copy(), _fails_once(flag), config=CONFIG, output_path=out)
    assert result.chunks_resumed == 4 and "resuming" in result.resume_decision
    assert copy.stat().st_mtime_ns == stamp  # not written again
    pd.testing.assert_frame_equal(read_output(out), df)


def test_a_frame_with_other_content_replaces_the_copy_and_starts_clean(tmp_path):
    out = tmp_path / "job"
    first = run_batch_job(sample_frame(300, seed=1), "count", config=CONFIG, output_path=out)
    old = _stored(out)
    changed = sample_frame(300, seed=1)
    changed.loc[7, "x"] = 123.0
    second = run_batch_job(changed, "count", config=CONFIG, output_path=out)
    assert first.fingerprint != second.fingerprint
    assert _stored(out) != old and len(_stored(out)) == 2  # the new frame-*.parquet and the marker


def test_unsupported_sources_name_the_type_and_the_accepted_ones(tmp_path):
    for bad, name in (([1, 2, 3], "builtins.list"), ({"a": [1]}, "builtins.dict"), (42, "builtins.int")):
        with pytest.raises(SourceError) as err:
            run_batch_job(bad, "count", output_path=tmp_path / "o")
        assert f"source of type {name} is not supported" in str(err.value)
        assert "pandas DataFrame, a polars DataFrame or a pyarrow Table" in str(err.value)
        assert classify(err.value).value == "data_corruption"  # a BatchInputError: never retried
    with pytest.raises(SourceError, match="collect or convert it"):
        run_batch_job(pl.DataFrame({"a": [1]}).lazy(), "count", output_path=tmp_path / "o")
    with pytest.raises(SourceError, match="a callable source is called by the operators"):
        run_batch_job(lambda **_: None, "count", output_path=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_column_arrow_cannot_hold_is_a_source_error_naming_it(tmp_path):
    df = pd.DataFrame({"ok": [1, 2], "mixed": [1, "two"]}).astype({"mixed": object})
    with pytest.raises(SourceError, match=r"column mixed.*Give each column one type"):
        run_batch_job(df, "count", output_path=tmp_path / "o")


def test_shards_read_the_copy_the_plan_stored(tmp_path):
    df = sample_frame(900, seed=5)
    single = run_batch_job(df, "data_profiling", config=CONFIG, output_path=tmp_path / "single")
    out = tmp_path / "sharded"
    with pytest.raises(ShardIncompleteError, match="run the plan first"):
        run_shard({"shard": 0}, df, "data_profiling", output_path=out, config=CONFIG)
    specs = plan_shards(df, "data_profiling", output_path=out, shards=3, config=CONFIG)
    assert len(specs) == 3
    stamp = next((out / "_input").glob("frame-*.parquet")).stat().st_mtime_ns
    for spec in specs:  # a shard given the frame again, or only a callable: both read the stored copy
        source = df if spec["shard"] % 2 else (lambda **_: pytest.fail("a shard called the source"))
        run_shard(spec, source, "data_profiling", output_path=out, config=CONFIG)
    merged = merge_shards(out, "data_profiling")
    assert merged.report == single.report
    assert next((out / "_input").glob("frame-*.parquet")).stat().st_mtime_ns == stamp


def test_tuning_a_frame_samples_the_copy_a_job_would_store(tmp_path):
    df = sample_frame(20_000, seed=6)
    stored = memory_sources.store(df, tmp_path)
    by_frame = tuning.calculate_optimal_batch_config(data=df, processor_name="data_quality")
    by_file = tuning.calculate_optimal_batch_config(stored.location.path, "data_quality")
    assert by_frame.recommended_batch_size == by_file.recommended_batch_size
    assert by_frame.recommended_concurrency == by_file.recommended_concurrency
    assert by_frame.bytes_per_row == by_file.bytes_per_row and by_frame.total_rows == 20_000
    assert by_frame.row_group_rows == 20_000  # one row group, as stored
    polars = tuning.calculate_optimal_batch_config(data=pl.from_pandas(df), processor_name="data_quality")
    assert polars.total_rows == 20_000
    config = tuning.create_optimized_config(data=df, processor_name="anomaly_detection")
    assert config.batch_size and config.max_concurrent_batches
    with pytest.raises(SourceError, match="builtins.list"):
        tuning.calculate_optimal_batch_config(data=[1, 2], processor_name="data_quality")
    with pytest.raises(Exception, match="not both"):
        tuning.calculate_optimal_batch_config(df, data=df)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from airflow_batch_provider.engine import run_batch_job
    from tests.conftest import sample_frame
    out, ledger, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "slow"
    def fn(batch, ctx):
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.start_row} {ctx.stop_row}\\n")
        if slow:
            time.sleep(0.15)
        return batch.assign(y=batch["x"] * 2)
    run_batch_job(sample_frame(2000, seed=8), fn, output_path=out,
                  config=dict(batch_size=50, max_concurrent_batches=2, checkpoint_interval=3))
""")


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_dataframe_source_killed_mid_job_resumes_to_the_output_of_a_clean_run(tmp_path):
    out, ledger = tmp_path / "killed", tmp_path / "ledger.txt"
    args = [sys.executable, "-c", KILL_SCRIPT, str(out), str(ledger)]
    proc = subprocess.Popen([*args, "slow"], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_calls(ledger)) < 12 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _calls(ledger)
    assert 12 <= len(before) < 40, "the job should have been killed midway"
    (copy,) = (out / "_input").glob("frame-*.parquet")
    stamp = copy.stat().st_mtime_ns

    subprocess.run([*args, "fast"], cwd=ROOT, check=True, timeout=120)  # the same frame, built again
    after = _calls(ledger)[len(before) :]
    assert len(after) < 40 and len(set(before) | set(after)) == 40  # resumed: finished chunks not redone
    assert copy.stat().st_mtime_ns == stamp  # the stored copy was reused, not written again

    clean = tmp_path / "clean"
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(clean), str(tmp_path / "l2"), "fast"],
                   cwd=ROOT, check=True, timeout=120)  # fmt: skip
    pd.testing.assert_frame_equal(read_output(out), read_output(clean))
    assert len(read_output(out)) == 2000


def test_airflow_batch_recommend_reads_a_jobs_stored_frame(tmp_path, capsys):
    from airflow_batch_provider.cli import main

    df = sample_frame(20_000, seed=9)
    result = run_batch_job(df, "count", config=CONFIG, output_path=tmp_path / "job")
    assert main(["recommend", f"{result.output_uri}/_input", "--processor", "data_quality", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    by_frame = tuning.calculate_optimal_batch_config(data=df, processor_name="data_quality")
    assert payload["recommendation"]["recommended_batch_size"] == by_frame.recommended_batch_size
    assert payload["recommendation"]["total_rows"] == 20_000
    assert {"type", "kind", "message"} <= set(payload["system"][0])
