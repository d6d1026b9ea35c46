"""Operators with an in-memory source (``op.execute``, no DB): a frame that arrived through XCom, a callable
``source`` that Airflow's templating calls, stored once; a retry reads the copy and calls nothing."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
from airflow.sdk.definitions._internal.templater import SandboxedEnvironment

from airflow_batch_provider.engine import read_output
from airflow_batch_provider.engine.memory_sources import StoredFrame
from airflow_batch_provider.exceptions import SourceError
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.retry_policy import BatchRetryPolicy
from airflow_batch_provider.operators.shards import ShardMergeOperator, ShardOperator, ShardPlanOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

CONFIG = {"batch_size": 100, "max_concurrent_batches": 1}


@pytest.fixture(autouse=True)
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


def _render(op, ctx):
    op.render_template_fields(ctx, SandboxedEnvironment())


def test_a_frame_from_xcom_runs_and_is_stored_in_the_job_folder(tmp_path):
    df = sample_frame(450, seed=2)
    op = BatchJobOperator(
        task_id="job", source=pl.from_pandas(df), processor="passthrough", config_overrides=CONFIG,
        output_path=str(tmp_path / "job"), allow_any_output_path=True,
    )  # fmt: skip
    summary = op.execute(context())
    assert summary["rows_in"] == summary["rows_out"] == 450 and summary["chunks_total"] == 5
    assert read_output(tmp_path / "job")["id"].tolist() == df["id"].tolist()
    assert len(list((tmp_path / "job" / "_input").glob("frame-*.parquet"))) == 1


class Maker:
    """A callable source with the documented signature; counts its calls."""

    def __init__(self, frame):
        self.frame, self.calls = frame, []

    def __call__(self, context, **_):
        self.calls.append((context["ti"].try_number, sorted(_)))
        return self.frame


def _fail_on_try_one(batch, ctx, flag):
    if ctx.start_row >= 200 and not flag.exists():
        raise ConnectionResetError("transient network failure")
    return batch


def test_a_callable_source_is_called_once_and_a_retry_reads_the_stored_copy(tmp_path):
    df = sample_frame(500, seed=3)
    maker, flag = Maker(df), tmp_path / "flag"
    common = dict(
        task_id="job", source=maker, processor=_fail_on_try_one, flag=flag, output_path=str(tmp_path / "job"),
        allow_any_output_path=True, config_overrides={**CONFIG, "retry_attempts": 0},
    )  # fmt: skip
    first = BatchJobOperator(**common)
    ctx = context(FakeTI(try_number=1))
    _render(first, ctx)
    assert maker.calls == [(1, ["jinja_env"])]  # Airflow's way: context= and jinja_env=
    assert isinstance(first.source, pd.DataFrame)
    with pytest.raises(Exception, match="transient network failure"):
        first.execute(ctx)

    flag.touch()
    retry = BatchJobOperator(**common)  # a retry is a new process: a fresh operator from the DAG file
    ctx = context(FakeTI(try_number=2))
    _render(retry, ctx)
    assert len(maker.calls) == 1  # not called again
    assert isinstance(retry.source, StoredFrame) and retry.source.rows == 500
    summary = retry.execute(ctx)
    assert summary["chunks_resumed"] == 2 and summary["rows_out"] == 500
    pd.testing.assert_frame_equal(read_output(tmp_path / "job"), df)


def test_shard_tasks_never_call_the_source(tmp_path):
    maker = Maker(sample_frame(300, seed=4))
    for cls, extra in ((ShardOperator, {"spec": {"shard": 0}}), (ShardMergeOperator, {})):
        op = cls(task_id="job.shard", source=maker, processor="count", **extra)
        _render(op, context())
        assert op.source is maker
    plan = ShardPlanOperator(task_id="job.plan", source=maker, processor="count", config_overrides=CONFIG)
    ctx = context(FakeTI(task_id="job.plan"))
    _render(plan, ctx)
    specs = plan.execute(ctx)
    assert len(maker.calls) == 1 and sum(s["rows"] for s in specs) == 300
    shard = ShardOperator(task_id="job.shard", source=maker, processor="count", spec=specs[0])
    ctx = context(FakeTI(task_id="job.shard", map_index=0))
    _render(shard, ctx)
    assert isinstance(shard.source, StoredFrame) and len(maker.calls) == 1
    assert shard.execute(ctx)["rows_in"] == specs[0]["rows"]


def test_an_unsupported_source_fails_the_task_without_retry(tmp_path):
    op = BatchJobOperator(task_id="job", source={"rows": [1, 2]}, processor="count")
    with pytest.raises(BatchInputFailure, match=r"job: source of type builtins.dict is not supported"):
        op.execute(context())
    returned = BatchJobOperator(task_id="job", source=lambda context, **_: [1, 2], processor="count")
    _render(returned, context())
    with pytest.raises(BatchInputFailure, match="builtins.list is not supported.*pyarrow Table"):
        returned.execute(context())
    decision = BatchRetryPolicy().evaluate(SourceError("source of type builtins.list is not supported"), 1, 3)
    assert decision.action.value == "fail"
