"""A shard's paths come from its job folder and its own map index, never from the spec it was handed (the spec
travels through XCom); the spec must equal the one the plan froze (issue #18, finding 4)."""

from __future__ import annotations

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine.shards import plan_shards, run_shard
from airflow_batch_provider.exceptions import BatchInputError
from airflow_batch_provider.operators.batch import BatchInputFailure
from airflow_batch_provider.operators.shards import ShardOperator, ShardPlanOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

CONFIG = BatchConfig(batch_size=100, max_concurrent_batches=1)
RUN = "manual__2026-11-28T10%3A00%3A00%2B00%3A00"  # FakeTI's run id, percent-encoded


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    return str(tmp_path / "src")


@pytest.fixture
def base(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    monkeypatch.delenv("AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE", raising=False)
    return tmp_path / "base"


def plan(source, key):
    args = dict(source=source, processor="count", config=CONFIG, job_key=key)
    return ShardPlanOperator(task_id=f"{key}.plan", shards=3, **args).execute(
        context(FakeTI(task_id=f"{key}.plan"))
    )


def run(source, key, spec, map_index):
    op = ShardOperator(
        task_id=f"{key}.shard", source=source, processor="count", config=CONFIG, job_key=key, spec=spec
    )
    return op.execute(context(FakeTI(task_id=f"{key}.shard", map_index=map_index)))


def test_a_tampered_spec_cannot_make_a_shard_write_into_another_jobs_folder(source, base):
    plan(source, "a")
    victim_specs = plan(source, "b")
    victim = base / "batch_dag" / RUN / "b" / "-1" / "_shards" / "g0001"
    tampered = {
        **victim_specs[0],
        "plan": "../../b/-1/_shards/g0001",
        "output_path": str(victim.parent.parent),
    }
    with pytest.raises(BatchInputFailure, match="differs from the one the plan"):
        run(source, "a", tampered, 0)
    assert not (victim / "s0000").exists()
    assert not (base / "batch_dag" / RUN / "a" / "-1" / "_shards" / "g0001" / "s0000").exists()


def test_row_ranges_are_checked_against_the_frozen_plan(source, base):
    specs = plan(source, "a")
    widened = {**specs[0], "ranges": [[0, 0, 900]], "rows": 900}
    with pytest.raises(BatchInputFailure, match=r"keys \['ranges', 'rows'\]"):
        run(source, "a", widened, 0)


def test_the_shard_index_is_the_tasks_own_map_index(source, base):
    specs = plan(source, "a")
    with pytest.raises(BatchInputFailure, match="shard 1: the spec given to the task differs"):
        run(source, "a", specs[0], 1)  # shard 0's spec handed to the task mapped as shard 1
    summary = run(source, "a", specs[1], 1)
    assert summary["shard"] == 1 and summary["shard_uri"].endswith("/a/-1/_shards/g0001/s0001")


def test_the_engine_derives_the_folder_from_output_path_only(source, tmp_path):
    specs = plan_shards(source, "count", output_path=tmp_path / "job", shards=2, config=CONFIG)
    assert not any(isinstance(v, str) and "/" in v for spec in specs for v in spec.values())  # no paths
    with pytest.raises(BatchInputError, match="needs output_path"):
        run_shard(specs[0], source, "count", config=CONFIG)
    result = run_shard(specs[0], source, "count", output_path=tmp_path / "job", config=CONFIG)
    assert result.output_uri == str(tmp_path / "job" / "_shards" / "g0001" / "s0000")
