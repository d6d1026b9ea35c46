"""Shards: plan -> run each shard -> merge equals the single-task run, for every built-in processor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.runner import plan_chunks
from airflow_batch_provider.engine.shards import (
    merge_shards,
    plan_shards,
    run_shard,
    shard_folder,
    split_chunks,
)
from airflow_batch_provider.engine.sources import SourceFile
from airflow_batch_provider.exceptions import BatchInputError, ShardIncompleteError
from airflow_batch_provider.storage import Location
from tests.unit.processors.test_conformance import CASES, PROCESSOR, _frame, _strip
from tests.unit.processors.test_conformance import source as source  # noqa: F401 - the module fixture

CONFIG = {"batch_size": 97, "max_concurrent_batches": 1}


def tag_rows(batch, context, label):
    """A plain callable processor: adds a column, counts rows per chunk."""
    return batch.assign(label=label, start=context["start_row"])


def _sharded(source, processor, out, shards, **params):
    specs = plan_shards(source, processor, output_path=out, shards=shards, config=CONFIG, **params)
    for spec in reversed(specs):  # order of execution must not matter
        run_shard(spec, source, processor, output_path=out, config=CONFIG, **params)
    return specs, merge_shards(out, processor, **params)


def _assert_same(result, reference):
    assert _strip(result.report) == _strip(reference.report)
    assert (result.rows_in, result.rows_out) == (reference.rows_in, reference.rows_out)
    ours, ref = read_output(result.output_uri), read_output(reference.output_uri)
    if ref is None:
        assert ours is None
    else:
        pd.testing.assert_frame_equal(ours, ref, check_exact=True)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shards", [2, 3])
def test_merged_shards_equal_the_single_task_run(name, shards, source, tmp_path):  # noqa: F811
    params, oracle = CASES[name]
    processor = PROCESSOR.get(name, name)  # the *_defaults cases: a processor with no parameters
    single = run_batch_job(source, processor, config=CONFIG, output_path=tmp_path / "single", **params)
    specs, merged = _sharded(source, processor, tmp_path / "sharded", shards, **params)
    assert len(specs) == shards and merged.extra["shards"] == shards
    _assert_same(merged, single)
    oracle(merged.report, _frame())
    manifest = json.loads((tmp_path / "sharded" / "_manifest.json").read_text())
    assert all(p.startswith("_shards/g0001/s000") for p in manifest["parts"])
    assert manifest["parts"] == sorted(manifest["parts"])  # source order across shards
    assert (tmp_path / "sharded" / "_SUCCESS").exists()


def test_callable_processor_sharded_equals_single(source, tmp_path):  # noqa: F811
    single = run_batch_job(source, tag_rows, config=CONFIG, output_path=tmp_path / "single", label="z")
    _, merged = _sharded(source, tag_rows, tmp_path / "sharded", 4, label="z")
    _assert_same(merged, single)
    assert merged.rows_out == len(_frame())


def test_fit_runs_once_in_the_plan(source, tmp_path):  # noqa: F811
    params, _ = CASES["anomaly_detection"]
    specs = plan_shards(source, "anomaly_detection", output_path=tmp_path, shards=2, config=CONFIG, **params)
    plan = tmp_path / "_shards" / f"g{specs[0]['generation']:04d}"
    assert (plan / "fit_state.json").exists()
    for spec in specs:
        run_shard(spec, source, "anomaly_detection", output_path=tmp_path, config=CONFIG, **params)
        assert not (plan / f"s{spec['shard']:04d}" / "g0001" / "fit_state.json").exists()


def test_shards_are_contiguous_balanced_and_capped(source, tmp_path):  # noqa: F811
    specs = plan_shards(source, "count", output_path=tmp_path, shards=50, max_shards=4, config=CONFIG)
    assert len(specs) == 4 and [s["shard"] for s in specs] == [0, 1, 2, 3]
    assert [s["chunks"][0] for s in specs[1:]] == [s["chunks"][1] for s in specs[:-1]]
    rows = [s["rows"] for s in specs]
    assert sum(rows) == len(_frame()) and max(rows) - min(rows) <= 2 * CONFIG["batch_size"]


def test_split_chunks_never_makes_an_empty_group():
    files = [SourceFile("a", "parquet", 1, "1", rows=1_000), SourceFile("b", "parquet", 1, "1", rows=5)]
    chunks = plan_chunks(files, 100, [])
    for n in range(1, 15):
        groups = split_chunks(chunks, n)
        assert len(groups) == min(n, len(chunks))
        assert all(a < b for a, b in groups) and groups[0][0] == 0 and groups[-1][1] == len(chunks)
        assert all(groups[i][1] == groups[i + 1][0] for i in range(len(groups) - 1))
    assert split_chunks([], 4) == [(0, 0)]


def test_merge_fails_clearly_when_a_shard_has_not_finished(source, tmp_path):  # noqa: F811
    specs = plan_shards(source, "count", output_path=tmp_path, shards=3, config=CONFIG)
    run_shard(specs[0], source, "count", output_path=tmp_path, config=CONFIG)
    run_shard(specs[2], source, "count", output_path=tmp_path, config=CONFIG)
    with pytest.raises(ShardIncompleteError, match="shard 1 of 3 has not finished"):
        merge_shards(tmp_path, "count")
    assert not (tmp_path / "_manifest.json").exists()


def test_merge_without_a_plan_fails(tmp_path):
    with pytest.raises(ShardIncompleteError, match="no shard plan"):
        merge_shards(tmp_path, "count")


def test_shard_with_other_parameters_than_the_plan_is_refused(source, tmp_path):  # noqa: F811
    specs = plan_shards(source, tag_rows, output_path=tmp_path, shards=2, config=CONFIG, label="a")
    with pytest.raises(BatchInputError, match="differ from the plan"):
        run_shard(specs[0], source, tag_rows, output_path=tmp_path, config=CONFIG, label="b")


class Flaky:
    """Fails once on one chunk (marker file), like a worker that dies mid-shard."""

    def __init__(self, marker: str, fail_at: int) -> None:
        self.marker, self.fail_at = marker, fail_at

    def __call__(self, batch, context):
        hit = (context["file_index"], context["start_row"]) == (0, self.fail_at)
        if hit and not Path(self.marker).exists():
            Path(self.marker).write_text("failed once")
            raise RuntimeError("injected shard failure")
        return batch


def test_a_failed_shard_resumes_from_its_own_checkpoint(source, tmp_path):  # noqa: F811
    config = {**CONFIG, "retry_attempts": 0, "checkpoint_interval": 1}
    fail_at = 97 * 7
    flaky = Flaky(str(tmp_path / "marker"), fail_at)
    specs = plan_shards(source, flaky, output_path=tmp_path / "out2", shards=2, config=config)
    assert any(f == 0 and s <= fail_at < e for f, s, e in specs[0]["ranges"])
    out = tmp_path / "out2"
    run_shard(specs[1], source, flaky, output_path=out, config=config)
    with pytest.raises(Exception, match="injected shard failure"):
        run_shard(specs[0], source, flaky, output_path=out, config=config)
    resumed = run_shard(specs[0], source, flaky, output_path=out, config=config)
    assert resumed.chunks_resumed == 7 and resumed.chunks_processed == resumed.chunks_total - 7
    merged = merge_shards(tmp_path / "out2", flaky)
    pd.testing.assert_frame_equal(read_output(merged.output_uri), _frame(), check_exact=True)
    plan = Location.of(str(tmp_path / "out2")).child("_shards", "g0001")
    assert json.loads((Path(shard_folder(plan, 1).path) / "_shard.json").read_text())["generation"] == 1


def test_replanning_after_a_merge_starts_a_new_plan(source, tmp_path):  # noqa: F811
    _sharded(source, "count", tmp_path, 2)
    specs, merged = _sharded(source, "count", tmp_path, 3)
    assert specs[0]["generation"] == 2 and merged.generation == 2
    assert sorted(p.name for p in (tmp_path / "_shards").glob("g*")) == ["g0002"]
    assert merged.report == run_batch_job(source, "count", config=CONFIG, output_path=tmp_path / "s").report


def test_a_shard_runs_inside_a_job_monitor_when_it_has_a_records_path(source, tmp_path):  # noqa: F811
    """Shards show on the dashboard like single jobs: a heartbeat under ``{records}/active`` while the shard
    runs (seen from its own first progress event), none once it has finished."""
    records = tmp_path / "_records"
    specs = plan_shards(source, "count", output_path=tmp_path / "out", shards=2, config=CONFIG)
    seen: list[list[str]] = []

    def look(event):
        if event.event_type == "started":
            seen.append([p.name for p in (records / "active").glob("*.json")])

    run_shard(
        specs[0],
        source,
        "count",
        output_path=tmp_path / "out",
        config=CONFIG,
        records_path=records,
        progress_callbacks=[look],
    )
    assert len(seen) == 1 and len(seen[0]) == 1 and "shard-0" in seen[0][0], seen
    assert not list((records / "active").glob("*.json"))
