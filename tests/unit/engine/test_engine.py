"""run_batch_job on real Parquet files: chunking, ledger, resume, fingerprints, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import (
    BatchInputError,
    ChunkFailedError,
    ConfigError,
    DataCorruptionError,
    ProcessorNotFoundError,
    ProcessorParameterError,
    SchemaMismatchError,
    SourceError,
)
from airflow_batch_provider.processors import BaseProcessor, ChunkResult, register_processor
from tests.conftest import sample_frame

ROOT = Path(__file__).resolve().parents[3]


def expected(src: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(src.glob("*.parquet"))], ignore_index=True)


class Ledger:
    """Every processor call appends one line (file, start, stop, pid); O_APPEND keeps lines whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, batch, ctx):
        with open(self.path, "a") as fh:
            fh.write(f"{ctx.file_index} {ctx.start_row} {ctx.stop_row} {os.getpid()}\n")
        return batch.assign(y=batch["x"] * 2)

    def calls(self) -> list[tuple[int, int, int]]:
        if not self.path.exists():
            return []
        return [tuple(map(int, line.split()[:3])) for line in self.path.read_text().splitlines()]


@pytest.mark.parametrize("batch_size,workers", [(97, 1), (250, 2), (333, 2), (5000, 2)])
def test_chunking_is_invisible_in_the_output(two_files, tmp_path, batch_size, workers):
    ledger = Ledger(tmp_path / "ledger.txt")
    result = run_batch_job(
        two_files,
        ledger,
        config=BatchConfig(batch_size=batch_size, max_concurrent_batches=workers),
        output_path=tmp_path / "out",
    )
    want = expected(two_files).assign(y=lambda d: d["x"] * 2)
    got = read_output(result.output_uri)
    pd.testing.assert_frame_equal(got, want)
    calls = ledger.calls()
    assert len(calls) == len(set(calls)) == result.chunks_processed == result.chunks_total
    covered = sorted((f, s, e) for f, s, e in calls)
    for f, rows in ((0, 1000), (1, 777)):
        ranges = [(s, e) for ff, s, e in covered if ff == f]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, no overlap
    assert (result.rows_in, result.rows_out, result.chunks_resumed) == (1777, 1777, 0)
    assert json.dumps(result.to_dict())


def test_dict_results_merge_into_the_report_and_async_works(two_files, tmp_path):
    async def count(batch, ctx, factor):
        await asyncio.sleep(0)
        return {"rows": len(batch), "nulls": int(batch["x"].isna().sum()) * factor, "files": [ctx.file_index]}

    result = run_batch_job(
        two_files, count, config={"batch_size": 400}, output_path=tmp_path / "out", factor=2
    )
    df = expected(two_files)
    assert result.report["rows"] == 1777
    assert result.report["nulls"] == int(df["x"].isna().sum()) * 2
    assert sorted(set(result.report["files"])) == [0, 1]
    assert result.rows_out == 0
    assert json.loads((tmp_path / "out" / "_report.json").read_text()) == result.report


class Moments(BaseProcessor):
    name = "test_moments"
    chunk_invariant = True

    def __init__(self, column="x"):
        self.column = column

    def process(self, chunk, ctx):
        col = chunk[self.column]
        return ChunkResult(state={"n": int(col.count()), "s": float(col.sum())})

    def merge(self, states):
        return {"n": sum(s["n"] for s in states), "s": sum(s["s"] for s in states)}


def test_registered_processor_class_by_name(two_files, tmp_path):
    register_processor("test_moments", Moments, replace=True)
    result = run_batch_job(
        two_files, "test_moments", config={"batch_size": 123}, output_path=tmp_path / "o", column="x"
    )
    assert result.report["n"] == expected(two_files)["x"].count()


def test_engine_output_chains_into_the_next_job_through_its_manifest(two_files, tmp_path):
    first = run_batch_job(
        two_files, lambda b, c: b[b["id"] % 2 == 0], config={"batch_size": 200}, output_path=tmp_path / "one"
    )
    stale = Path(first.output_uri) / "g0001" / "parts"  # the parts were compacted (auto): a stray file anyway
    stale.mkdir(exist_ok=True)
    (stale / "zz-stale.parquet").write_bytes(b"not listed")
    (Path(first.output_uri) / "notes.csv").write_text("a,b\n1,2\n")
    second = run_batch_job(
        first.output_uri, "passthrough", config={"batch_size": 150}, output_path=tmp_path / "two"
    )
    assert second.rows_in == first.rows_out == 889
    assert read_output(second.output_uri)["id"].tolist() == list(range(0, 1777, 2))


def test_failure_checkpoints_and_resume_skips_finished_chunks(two_files, tmp_path):
    ledger = Ledger(tmp_path / "ledger.txt")
    boom = tmp_path / "boom"
    boom.write_text("1")

    def flaky(batch, ctx):
        if ctx.file_index == 1 and ctx.start_row == 400 and boom.exists():
            raise RuntimeError("injected failure")
        return ledger(batch, ctx)

    cfg = BatchConfig(
        batch_size=200,
        max_concurrent_batches=1,
        checkpoint_interval=1,
        retry_attempts=1,
        retry_delay_seconds=0,
    )
    with pytest.raises(ChunkFailedError, match="rows 400-600"):
        run_batch_job(two_files, flaky, config=cfg, output_path=tmp_path / "out")
    before = ledger.calls()
    boom.unlink()
    result = run_batch_job(two_files, flaky, config=cfg, output_path=tmp_path / "out")
    after = ledger.calls()[len(before) :]
    assert not set(before) & set(after), "finished chunks ran again"
    assert result.chunks_resumed == len(before)
    assert result.chunks_processed == len(after)
    pd.testing.assert_frame_equal(
        read_output(result.output_uri), expected(two_files).assign(y=lambda d: d.x * 2)
    )


def test_resume_with_a_smaller_batch_size_only_rechunks_unfinished_rows(two_files, tmp_path):
    ledger = Ledger(tmp_path / "ledger.txt")
    boom = tmp_path / "boom"
    boom.write_text("1")

    def flaky(batch, ctx):
        if ctx.file_index == 0 and ctx.start_row >= 600 and boom.exists():
            raise RuntimeError("stop here")
        return ledger(batch, ctx)

    with pytest.raises(ChunkFailedError):
        run_batch_job(
            two_files,
            flaky,
            config=dict(batch_size=300, max_concurrent_batches=1, checkpoint_interval=1, retry_attempts=0),
            output_path=tmp_path / "out",
        )
    done_before = ledger.calls()
    assert done_before == [(0, 0, 300), (0, 300, 600)]
    boom.unlink()
    result = run_batch_job(
        two_files, flaky, config=dict(batch_size=70, checkpoint_interval=3), output_path=tmp_path / "out"
    )
    later = ledger.calls()[2:]
    assert all(e - s <= 70 for _, s, e in later)
    assert min(s for f, s, _ in later if f == 0) == 600
    pd.testing.assert_frame_equal(
        read_output(result.output_uri), expected(two_files).assign(y=lambda d: d.x * 2)
    )


def test_changed_source_starts_clean_and_leaves_no_stale_rows(two_files, tmp_path, make_parquet):
    out = tmp_path / "out"
    with pytest.raises(ChunkFailedError):
        run_batch_job(
            two_files, _fail_on_file_one, config=dict(batch_size=250, retry_attempts=0), output_path=out
        )
    make_parquet(sample_frame(500, seed=9, offset=5000), "part-b.parquet")  # the source changes
    result = run_batch_job(
        two_files, _fail_on_file_one, config=dict(batch_size=250), output_path=out, never=True
    )
    assert "fingerprint changed" in result.resume_decision or result.generation == 2
    assert result.chunks_resumed == 0
    pd.testing.assert_frame_equal(read_output(out), expected(two_files))
    assert not (out / "g0001").exists()


def _fail_on_file_one(batch, ctx, never=False):
    if ctx.file_index == 1 and not never:
        raise RuntimeError("fail in file 1")
    return batch


def test_a_succeeded_job_reruns_fresh_as_a_new_generation(two_files, tmp_path):
    out = tmp_path / "out"
    first = run_batch_job(two_files, "passthrough", config={"batch_size": 500}, output_path=out)
    second = run_batch_job(two_files, "passthrough", config={"batch_size": 500}, output_path=out)
    assert (first.generation, second.generation) == (1, 2)
    assert second.chunks_resumed == 0 and second.chunks_processed == first.chunks_processed
    assert "succeeded" in second.resume_decision
    assert not (out / "g0001").exists()
    assert len(read_output(out)) == 1777


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from airflow_batch_provider.engine import run_batch_job
    src, out, ledger = sys.argv[1:4]
    def slow(batch, ctx):
        with open(ledger, "a") as fh:
            fh.write(f"{ctx.file_index} {ctx.start_row} {ctx.stop_row} {os.getpid()}\\n")
        time.sleep(0.15)
        return batch
    run_batch_job(src, slow, config=dict(batch_size=50, max_concurrent_batches=2, checkpoint_interval=3),
                  output_path=out)
""")


def test_sigkill_of_the_whole_process_group_then_resume(two_files, tmp_path):
    """Rework after a SIGKILL is at most checkpoint_interval + max_concurrent_batches - 1 chunks."""
    ledger = Ledger(tmp_path / "ledger.txt")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(two_files), str(out), str(ledger.path)],
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(ledger.calls()) < 14 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ledger.calls()
    assert 14 <= len(before) < 36, "the job should have been killed midway"
    # the same job (same processor, same fingerprint) runs again to completion
    subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(two_files), str(out), str(ledger.path)],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    after = ledger.calls()[len(before) :]
    rework = len(set(before) & set(after))
    assert rework <= 3 + 2 - 1, f"redid {rework} chunks"
    assert len(set(before)) + len(after) - rework == 36  # every chunk ran; none ran twice in one run
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["summary"]["chunks"] == 36
    pd.testing.assert_frame_equal(read_output(out), expected(two_files))  # no lost or duplicated rows


def test_sigterm_writes_a_checkpoint_before_exit(two_files, tmp_path):
    out = tmp_path / "out"
    ledger = Ledger(tmp_path / "ledger.txt")
    script = KILL_SCRIPT.replace("checkpoint_interval=3", "checkpoint_interval=1000")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(two_files), str(out), str(ledger.path)],
        cwd=ROOT,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(ledger.calls()) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "JobCancelledError" in err
    checkpoint = json.loads((out / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed" and checkpoint["counters"]["chunks_done"] >= 4


def test_zero_row_and_empty_files_succeed_with_a_warning(tmp_path, make_parquet, caplog):
    make_parquet(sample_frame(0), "empty.parquet")
    (tmp_path / "src" / "blank.parquet").write_bytes(b"")
    result = run_batch_job(tmp_path / "src", "passthrough", output_path=tmp_path / "out")
    # one empty chunk, so the processor sees the columns of a source without rows (issue #17)
    assert (result.rows_in, result.rows_out, result.chunks_total) == (0, 0, 1)
    assert "empty (0 rows)" in caplog.text
    out = read_output(result.output_uri)  # the output keeps the source's columns and types
    assert out is not None and len(out) == 0
    assert dict(out.dtypes) == dict(sample_frame(0).dtypes)
    profile = run_batch_job(tmp_path / "src", "data_profiling", output_path=tmp_path / "profile").report
    assert list(profile["columns"]) == list(sample_frame(0).columns)


@pytest.mark.parametrize("case", ["missing", "glob", "unsupported", "truncated", "schema", "processor"])
def test_bad_input_names_the_problem_and_the_fix(tmp_path, make_parquet, case):
    src = tmp_path / "src"
    make_parquet(sample_frame(50), "ok.parquet")
    processor = "passthrough"
    if case == "missing":
        source, match = tmp_path / "nope", "does not exist"
    elif case == "glob":
        source, match = f"{src}/*.csvx", "matches no file"
    elif case == "unsupported":
        (src / "data.xlsx").write_bytes(b"x")
        source, match = src / "data.xlsx", r"unsupported file type.*supported extensions"
    elif case == "truncated":
        data = (src / "ok.parquet").read_bytes()
        (src / "cut.parquet").write_bytes(data[: len(data) // 2])
        source, match = src, r"cut.parquet.*truncated or not Parquet"
    elif case == "schema":
        make_parquet(sample_frame(50).rename(columns={"x": "z"}), "other.parquet")
        source, match = src, r"different columns.*ok.parquet.*other.parquet"
    else:
        source, processor, match = src, "no_such_processor", r"not registered.*register_processor"
    errors = {
        "truncated": DataCorruptionError,
        "schema": SchemaMismatchError,
        "processor": ProcessorNotFoundError,
    }
    with pytest.raises(errors.get(case, SourceError), match=match):
        run_batch_job(source, processor, output_path=tmp_path / "out")


def test_schema_type_mismatch_names_both_files(tmp_path, make_parquet):
    make_parquet(sample_frame(50), "a.parquet")
    make_parquet(sample_frame(50).assign(x="text"), "b.parquet")
    with pytest.raises(SchemaMismatchError, match=r"column 'x'.*a.parquet.*b.parquet"):
        run_batch_job(tmp_path / "src", "passthrough", output_path=tmp_path / "out")


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="batch_size"):
        BatchConfig(batch_size=0)
    with pytest.raises(ConfigError, match="'batchsize'.*valid fields"):
        BatchConfig().with_overrides({"batchsize": 5})
    assert BatchConfig().with_overrides({"batch_size": "500", "preserve_order": "false"}).batch_size == 500


def test_glob_source_and_memory_filesystem(two_files, tmp_path):
    import fsspec

    mem = fsspec.filesystem("memory")
    for p in sorted(two_files.glob("*.parquet")):
        mem.pipe_file(f"/src/{p.name}", p.read_bytes())
    result = run_batch_job(
        "memory://src/*.parquet", "passthrough", config={"batch_size": 300}, output_path="memory://out/job1"
    )
    assert result.rows_out == 1777
    assert mem.exists("/out/job1/_manifest.json")


def test_processor_kwarg_that_the_processor_rejects_is_clear(two_files, tmp_path):
    with pytest.raises(ProcessorParameterError, match=r"\['columnz'\]; did you mean 'column'") as info:
        run_batch_job(two_files, Moments, output_path=tmp_path / "o", columnz="x")
    assert isinstance(info.value, TypeError) and isinstance(info.value, BatchInputError)
    assert not (tmp_path / "o").exists()  # refused before the plan


def test_engine_imports_nothing_from_airflow():
    code = (
        "import sys, airflow_batch_provider.engine, airflow_batch_provider.processors.builtin;"
        "bad=[m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_parts_are_parquet_named_in_source_order(two_files, tmp_path):
    config = {"batch_size": 300, "compact_output": False}
    run_batch_job(two_files, "passthrough", config=config, output_path=tmp_path / "o")
    manifest = json.loads((tmp_path / "o" / "_manifest.json").read_text())
    assert manifest["parts"] == sorted(manifest["parts"])
    assert pq.read_table(tmp_path / "o" / manifest["parts"][0]).num_rows == 300
    assert isinstance(pa.__version__, str)


class Centerer(BaseProcessor):
    """Two passes: exact global mean (statistics pass), then centre every chunk; plus a sample-fitted max."""

    name = "test_centerer"
    chunk_invariant = True
    stats_pass = True
    fit_sample_size = 10_000

    def __init__(self, column="x"):
        self.column = column

    def partial_stats(self, chunk, ctx):
        col = chunk[self.column].dropna()
        return {"n": int(col.count()), "values": col.tolist()}

    def merge_stats(self, states):
        import math

        values = [v for s in states for v in s["values"]]
        return {"n": sum(s["n"] for s in states), "sum": math.fsum(values)}

    def fit_stats(self, state):
        self.mean_ = state["sum"] / state["n"]

    def fit(self, sample):
        self.sample_rows_ = len(sample)

    def get_state(self):
        return {"mean": self.mean_, "sample_rows": self.sample_rows_}

    def set_state(self, state):
        self.mean_, self.sample_rows_ = state["mean"], state["sample_rows"]

    def process(self, chunk, ctx):
        return ChunkResult(rows=chunk.assign(centered=chunk[self.column] - self.mean_))


def test_statistics_pass_and_sample_fit_before_processing(two_files, tmp_path):
    result = run_batch_job(two_files, Centerer(), config={"batch_size": 250}, output_path=tmp_path / "out")
    want = expected(two_files)
    got = read_output(result.output_uri)
    assert got["centered"].tolist() == pytest.approx((want["x"] - want["x"].mean()).tolist(), nan_ok=True)
    state = json.loads((tmp_path / "out" / "g0001" / "fit_state.json").read_text())
    assert state["sample_rows"] == 1777  # sample size >= rows: the whole dataset
    assert (tmp_path / "out" / "g0001" / "fit" / "_manifest.json").exists()
