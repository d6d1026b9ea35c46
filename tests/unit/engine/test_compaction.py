"""Output compaction at commit (#16): real Parquet parts merged by the real engine, compared with the same job
uncompacted; the target size, auto mode, a crash between the steps, chaining and bad configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import compaction, read_output, run_batch_job
from airflow_batch_provider.engine.compaction import MB
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.base import ChunkResult

ROOT = Path(__file__).resolve().parents[3]
BASE = {"max_concurrent_batches": 2, "checkpoint_interval": 50, "enable_progress_tracking": False}


def manifest(out: Path) -> dict:
    return json.loads((out / "_manifest.json").read_text())


def committed(out: Path) -> pa.Table:
    """The committed rows as Arrow, read part by part in the manifest's order (no conversion)."""
    return pa.concat_tables([pq.read_table(out / p) for p in manifest(out)["parts"]])


def twice(table, ctx):
    return table.append_column("twice", pc.multiply(table["v"], 2))


def job(src, out, processor=twice, **config):
    return run_batch_job(
        str(src),
        processor,
        config={**BASE, **config},
        output_path=str(out),
        records_path=False,
        input_format="arrow",
    )


@pytest.fixture
def random_source(tmp_path):
    """400,000 rows of incompressible floats (about 3 MB of Parquet per column) and an id."""
    rng = np.random.default_rng(16)
    path = tmp_path / "random.parquet"
    pq.write_table(pa.table({"id": np.arange(400_000), "v": rng.random(400_000)}), path)
    return path


@pytest.mark.slow
def test_a_20000_chunk_job_compacted_gives_the_same_rows_as_uncompacted_in_fewer_files(tmp_path):
    src = tmp_path / "tiny.parquet"
    pq.write_table(pa.table({"id": range(20_000), "v": [i * 0.5 for i in range(20_000)]}), src)
    config = {"batch_size": 1, "checkpoint_interval": 500}
    off = job(src, tmp_path / "off", compact_output=False, **config)
    on = job(src, tmp_path / "on", compact_output=True, **config)
    assert on.chunks_total == off.chunks_total == 20_000
    assert len(manifest(tmp_path / "off")["parts"]) == 20_000
    files = manifest(tmp_path / "on")["parts"]
    assert files == ["g0001/compacted/c000000.parquet"]
    got, want = committed(tmp_path / "on"), committed(tmp_path / "off")
    assert got.equals(want) and got.num_rows == 20_000
    assert got["id"].to_pylist() == list(range(20_000))  # source order
    assert not (tmp_path / "on" / "g0001" / "parts").exists()  # the parts are gone once the manifest switched
    assert on.extra["compaction"]["parts"] == 20_000 and on.extra["compaction"]["files"] == 1
    assert manifest(tmp_path / "on")["summary"] == manifest(tmp_path / "off")["summary"]


def test_auto_compacts_small_parts_and_says_why_it_leaves_large_ones(random_source, tmp_path, caplog):
    caplog.set_level("INFO", logger="airflow_batch_provider.engine")
    small = job(random_source, tmp_path / "small", batch_size=20_000)  # parts of ~0.3 MB, target 128 MB
    entry = manifest(tmp_path / "small")["compaction"]
    assert entry["mode"] == "auto" and entry["compacted"] and (entry["parts"], entry["files"]) == (20, 1)
    assert "auto: parts average" in entry["reason"] and small.extra["compaction"] == entry
    assert "compacted 20 part(s)" in caplog.text and "into 1 file(s)" in caplog.text

    # the same ~0.3 MB parts against a 1 MB target: merging would help little, auto leaves them
    job(random_source, tmp_path / "large", batch_size=20_000, target_file_size_mb=1)
    entry = manifest(tmp_path / "large")["compaction"]
    assert not entry["compacted"] and entry["files"] == entry["parts"] == 20
    assert "not under 0.0625 of target_file_size_mb=1" in entry["reason"]
    assert all(p.startswith("g0001/parts/") for p in manifest(tmp_path / "large")["parts"])
    assert "output not compacted (20 part(s))" in caplog.text
    assert committed(tmp_path / "small").equals(committed(tmp_path / "large"))


def test_compacted_files_respect_the_target_size_and_hold_few_row_groups(random_source, tmp_path):
    on = job(random_source, tmp_path / "on", batch_size=10_000, target_file_size_mb=1, compact_output=True)
    off = job(random_source, tmp_path / "off", batch_size=10_000, compact_output=False)
    files = [tmp_path / "on" / p for p in manifest(tmp_path / "on")["parts"]]
    sizes = [f.stat().st_size for f in files]
    total = sum(f.stat().st_size for f in (tmp_path / "off").glob("g0001/parts/*.parquet"))
    assert len(files) >= total // MB and len(files) < 40  # 40 parts of ~0.16 MB
    assert all(s <= MB for s in sizes), sizes
    assert all(s >= 0.75 * MB for s in sizes[:-1]), sizes  # a file closes only when the next part overflows
    assert all(pq.ParquetFile(f).metadata.num_row_groups == 1 for f in files)  # not one row group per part
    assert committed(tmp_path / "on").equals(committed(tmp_path / "off"))
    assert on.extra["compaction"]["files"] == len(files) and off.rows_out == on.rows_out == 400_000


def test_schema_and_metadata_are_kept_and_a_schema_change_starts_a_new_file(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": range(1000), "cat": pa.array(["a", "b"] * 500).dictionary_encode()}), src)

    def labelled(table, ctx):
        # chunks 300-599 hold a null-typed column (the other chunks' type is int64): a different schema
        extra = pa.nulls(table.num_rows) if 300 <= ctx.start_row < 600 else pc.add(table["id"], 1)
        out = table.append_column("next", extra)
        return ChunkResult(rows=out.replace_schema_metadata({"owner": "batch"}))

    job(src, tmp_path / "on", labelled, batch_size=100, compact_output=True)
    job(src, tmp_path / "off", labelled, batch_size=100, compact_output=False)
    files = [tmp_path / "on" / p for p in manifest(tmp_path / "on")["parts"]]
    assert len(files) == 3  # rows 0-299, 300-599 (null-typed), 600-999
    schemas = [pq.read_schema(f) for f in files]
    assert [str(s.field("next").type) for s in schemas] == ["int64", "null", "int64"]
    assert all(
        s.metadata[b"owner"] == b"batch" and pa.types.is_dictionary(s.field("cat").type) for s in schemas
    )
    off_parts = manifest(tmp_path / "off")["parts"]
    assert schemas[0].equals(pq.read_schema(tmp_path / "off" / off_parts[0]), check_metadata=True)
    assert read_output(tmp_path / "on").equals(read_output(tmp_path / "off"))


def test_quarantine_listing_and_row_counts_stay_correct(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": range(600), "v": [float(i) for i in range(600)]}), src)

    def split(table, ctx):
        bad = pc.equal(pc.bit_wise_and(table["id"], 7), 0)
        return ChunkResult(rows=table.filter(pc.invert(bad)), quarantine=table.filter(bad))

    on = job(src, tmp_path / "on", split, batch_size=50, compact_output=True)
    off = job(src, tmp_path / "off", split, batch_size=50, compact_output=False)
    m_on, m_off = manifest(tmp_path / "on"), manifest(tmp_path / "off")
    assert len(m_on["parts"]) == 1 and len(m_off["parts"]) == 12
    assert m_on["quarantine"] == m_off["quarantine"] and len(m_on["quarantine"]) == 12  # left as they are
    assert all((tmp_path / "on" / q).exists() for q in m_on["quarantine"])
    assert m_on["summary"] == m_off["summary"] and m_on["summary"]["rows_quarantined"] == 75
    assert on.rows_out == off.rows_out == 525
    pd_on, pd_off = (read_output(tmp_path / d, quarantine=True) for d in ("on", "off"))
    assert pd_on.equals(pd_off) and len(pd_on) == 75


def test_a_failure_between_the_steps_keeps_the_old_output_and_the_retry_finishes(
    random_source, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    config = {"batch_size": 10_000, "target_file_size_mb": 1, "compact_output": True}
    first = job(random_source, out, lambda t, c: t, **config)  # generation 1: the committed output
    before = committed(out)
    closes = {"n": 0}
    real_close = compaction._FileWriter.close

    def failing_close(self):
        closes["n"] += 1
        if closes["n"] == 2:  # the first compacted file is in place, the second is being finished
            raise OSError("disk full (injected)")
        return real_close(self)

    monkeypatch.setattr(compaction._FileWriter, "close", failing_close)
    with pytest.raises(OSError, match="injected"):
        job(random_source, out, **config)  # generation 2 (another processor) fails while compacting
    assert manifest(out)["generation"] == 1 and committed(out).equals(before)  # readers see generation 1
    gen2 = out / "g0002"
    assert (gen2 / "compacted" / "c000000.parquet").exists() and len(list((gen2 / "parts").iterdir())) == 40
    assert not list((gen2 / "compacted").glob(".*.tmp"))  # the failed file left nothing under any name
    working = json.loads((gen2 / "_checkpoint.json").read_text())
    assert working["status"] == "failed" and "disk full (injected)" in working["error"]

    monkeypatch.setattr(compaction._FileWriter, "close", real_close)
    again = job(random_source, out, **config)
    assert (
        again.resume_decision == "resuming generation 2 from its checkpoint" and again.chunks_processed == 0
    )
    job(random_source, tmp_path / "reference", compact_output=False, batch_size=10_000)
    assert committed(out).equals(committed(tmp_path / "reference"))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("g")) == ["g0002"]
    listed = {Path(p).name for p in manifest(out)["parts"]}
    assert {p.name for p in (gen2 / "compacted").iterdir()} == listed and not (gen2 / "parts").exists()
    assert first.rows_out == again.rows_out == 400_000


def test_a_failure_after_the_manifest_switched_leaves_the_compacted_output_committed(tmp_path, monkeypatch):
    from airflow_batch_provider.engine.checkpoints import CheckpointStore

    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": range(3000), "v": [i / 8 for i in range(3000)]}), src)
    out = tmp_path / "out"

    def crash(self, *args, **kwargs):
        raise OSError("killed before the parts were removed (injected)")

    monkeypatch.setattr(CheckpointStore, "remove_stale", crash)
    with pytest.raises(OSError, match="injected"):
        job(src, out, batch_size=100, compact_output=True)
    assert manifest(out)["parts"] == ["g0001/compacted/c000000.parquet"] and (out / "_SUCCESS").exists()
    assert len(list((out / "g0001" / "parts").iterdir())) == 30  # step 3 did not run: harmless leftovers
    expected = pq.read_table(src).append_column("twice", pc.multiply(pq.read_table(src)["v"], 2))
    assert committed(out).equals(expected)

    monkeypatch.undo()
    rerun = job(src, out, batch_size=100, compact_output=True)  # committed: a fresh generation, then clean-up
    assert rerun.generation == 2 and committed(out).equals(expected)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("g")) == ["g0002"]


def test_a_process_killed_while_compacting_is_resumed_to_the_same_output(random_source, tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import os
        from airflow_batch_provider.engine import compaction, run_batch_job

        real_add, seen = compaction._FileWriter.add, []

        def add(self, table):
            seen.append(1)
            if len(seen) == 15:  # mid-way through the first compacted file: no clean-up of any kind
                os._exit(9)
            real_add(self, table)

        compaction._FileWriter.add = add
        run_batch_job({str(random_source)!r}, "passthrough", output_path={str(out)!r}, records_path=False,
                      config={{"batch_size": 10_000, "target_file_size_mb": 1, "compact_output": True,
                               "max_concurrent_batches": 2}})
        """
    )
    # the checkout first, then the caller's path (CI's floor run puts the floor versions there: the killed
    # job must fingerprint with the same pyarrow and pandas as the resume below)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert killed.returncode == 9, killed.stderr.decode()[-2000:]
    assert not (out / "_manifest.json").exists() and list((out / "g0001" / "compacted").glob(".*.tmp"))

    resumed = run_batch_job(
        str(random_source),
        "passthrough",
        output_path=str(out),
        records_path=False,
        config={"batch_size": 10_000, "target_file_size_mb": 1, "compact_output": True, **BASE},
    )
    assert resumed.resume_decision.startswith("resuming generation 1") and resumed.chunks_processed == 0
    assert committed(out).equals(pq.read_table(random_source))
    assert not list((out / "g0001" / "compacted").glob(".*"))  # the killed attempt's temporary file is gone


def test_a_compacted_output_chains_into_the_next_job_and_a_rerun_gives_the_same(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": range(5000), "v": [i / 4 for i in range(5000)]}), src)
    first = job(src, tmp_path / "one", batch_size=100)  # auto: 50 small parts -> 1 file
    assert manifest(tmp_path / "one")["compaction"]["compacted"]
    output = committed(tmp_path / "one")
    second = run_batch_job(
        str(tmp_path / "one"),
        lambda t, c: t.filter(pc.equal(pc.bit_wise_and(t["id"], 1), 0)),
        config={**BASE, "batch_size": 333},
        output_path=str(tmp_path / "two"),
        records_path=False,
        input_format="arrow",
    )
    assert second.rows_in == first.rows_out == 5000 and second.rows_out == 2500
    got = committed(tmp_path / "two")
    assert got["id"].to_pylist() == list(range(0, 5000, 2)) and got["twice"].to_pylist() == [
        i / 2 for i in range(0, 5000, 2)
    ]
    rerun = job(src, tmp_path / "one", batch_size=100)  # after a compacted commit: a fresh generation
    assert rerun.generation == 2 and committed(tmp_path / "one").equals(output)
    assert output.num_rows == 5000 and not (tmp_path / "one" / "g0001").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"compact_output": "sometimes"},
            "compact_output must be true, false or None \\(auto\\), got 'sometimes'",
        ),
        ({"compact_output": 2}, "compact_output must be true, false or None"),
        ({"target_file_size_mb": 0}, "target_file_size_mb must be >= 1, got 0"),
        ({"target_file_size_mb": "big"}, "target_file_size_mb must be int, got 'big'"),
        ({"target_file_size_mb": None}, "target_file_size_mb must not be None"),
        ({"compact_outputs": True}, "unknown BatchConfig field\\(s\\) 'compact_outputs'"),
    ],
)
def test_bad_compaction_settings_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        BatchConfig.from_mapping(fields)


def test_compaction_settings_from_strings():
    assert BatchConfig.from_mapping({"compact_output": "auto"}).compact_output is None
    assert BatchConfig.from_mapping({"compact_output": "true", "target_file_size_mb": "64"}).to_dict() == {
        **BatchConfig().to_dict(),
        "compact_output": True,
        "target_file_size_mb": 64,
    }
    assert BatchConfig(compact_output="off").compact_output is False


def test_planned_files_and_decisions():
    assert compaction.planned_files([1, 1, 1, 1], 2) == 2
    assert compaction.planned_files([5, 1, 1], 2) == 2  # a part over the target is a file of its own
    assert compaction.decide(None, [MB], 128) == (False, "1 part(s): nothing to merge")
    assert compaction.decide(True, [200 * MB, 200 * MB], 128)[0] is False
    assert compaction.decide(True, [40 * MB] * 4, 128)[0] is True
    assert compaction.decide(None, [40 * MB] * 4, 128)[0] is False  # over 1/16 of the target
    assert compaction.decide(None, [9 * MB] * 4, 128)[0] is False
    assert compaction.decide(None, [7 * MB] * 4, 128)[0] is True
