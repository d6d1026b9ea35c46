"""The Airflow side of shards through op.execute (no DB): plan -> shards -> merge, fail-fast storage checks,
and what the task group hands to its tasks (retries, priority, pools, executor_config)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pandas as pd
import pytest
from airflow.sdk import DAG

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.exceptions import ShardIncompleteError
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.shards import (
    ShardedBatchJob,
    ShardMergeOperator,
    ShardOperator,
    ShardPlanOperator,
    check_shared_storage,
    executor_name,
    operator_for,
    sharded_part,
)
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore, context

CONFIG = BatchConfig(batch_size=100, max_concurrent_batches=1)
CELERY = "CeleryExecutor"


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return str(tmp_path / "src")


@pytest.fixture
def base(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    monkeypatch.delenv("AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE", raising=False)
    return tmp_path / "base"


def _run_sharded(source, processor, shards, operator=BatchJobOperator, **params):
    """plan, every shard (in reverse order), merge: each through op.execute with its own TI and state store;
    with ``operator``, the three tasks are that operator too (``sharded_part``, as ``ShardedBatchJob`` builds)."""
    args = dict(source=source, processor=processor, config=CONFIG, job_key="grp", **params)
    plan, shard, merge = (
        sharded_part(p, operator) for p in (ShardPlanOperator, ShardOperator, ShardMergeOperator)
    )
    specs = plan(task_id="grp.plan", shards=shards, **args).execute(context(FakeTI(task_id="grp.plan")))
    stores, results = {}, []
    for spec in reversed(specs):
        stores[spec["shard"]] = StateStore()
        ti = FakeTI(task_id="grp.shard", map_index=spec["shard"])
        results.append(
            shard(task_id="grp.shard", shard_spec=spec, **args).execute(context(ti, stores[spec["shard"]]))
        )
    merged = merge(task_id="grp.merge", shard_results=results, **args)
    return specs, results, stores, merged.execute(context(FakeTI(task_id="grp.merge")))


@pytest.mark.parametrize(("processor", "params"), [("data_profiling", {"bins": 5}), ("passthrough", {})])
def test_plan_shards_merge_equals_one_task(processor, params, source, base, monkeypatch):
    monkeypatch.setenv("BATCH_WORKER_ID", "w7")
    single = BatchJobOperator(task_id="one", source=source, processor=processor, config=CONFIG, **params)
    want = single.execute(context(FakeTI(task_id="one")))
    specs, results, stores, merged = _run_sharded(source, processor, 3, **params)
    assert len(specs) == 3 and sorted(r["shard"] for r in results) == [0, 1, 2]
    assert merged["output_uri"].endswith("/batch_dag/manual__2026-11-28T10%3A00%3A00%2B00%3A00/grp/-1")
    assert set(want) <= set(merged), set(want) - set(merged)  # the single task's summary shape
    assert (merged["rows_in"], merged["rows_out"]) == (want["rows_in"], want["rows_out"])
    assert merged["rows_in"] == 1400 and merged["report"] == want["report"]
    ours, ref = read_output(merged["output_uri"]), read_output(want["output_uri"])
    if ref is None:
        assert ours is None
    else:
        pd.testing.assert_frame_equal(ours, ref, check_exact=True)
    assert merged["chunks_processed"] == want["chunks_processed"] == 14 and merged["extra"]["shards"] == 3
    assert [r["shard"] for r in merged["shard_runs"]] == [0, 1, 2]
    assert {(r["host"], r["pid"], r["worker"]) for r in results} == {
        (socket.gethostname(), os.getpid(), "w7")
    }
    assert all(
        r["output_uri"] == merged["output_uri"] and "/_shards/g0001/s000" in r["shard_uri"] for r in results
    )
    assert all(s["checkpoint"]["status"] == "succeeded" for s in stores.values())  # each shard's own store


def test_local_storage_with_a_remote_executor_fails_fast(source, base, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)
    plan = ShardPlanOperator(task_id="grp.plan", source=source, processor="count", shards=2)
    with pytest.raises(BatchInputFailure, match=r"CeleryExecutor.*shared_storage = True") as err:
        plan.execute(context(FakeTI(task_id="grp.plan")))
    assert (
        "output_path=" in str(err.value)
        and "source=" in str(err.value)
        and "object storage" in str(err.value)
    )
    assert not base.exists()  # failed before writing anything


def test_declared_shared_storage_lets_a_remote_executor_plan(source, base, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE", "True")
    specs = ShardPlanOperator(
        task_id="grp.plan", source=source, processor="count", shards=2, config=CONFIG
    ).execute(context(FakeTI(task_id="grp.plan")))
    assert [s["shard"] for s in specs] == [0, 1] and sum(s["rows"] for s in specs) == 1400


def test_local_executor_needs_no_declaration(source, base, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    specs = ShardPlanOperator(
        task_id="grp.plan", source=source, processor="count", shards=2, config=CONFIG
    ).execute(context(FakeTI(task_id="grp.plan")))
    assert len(specs) == 2


def test_storage_check_rules(monkeypatch):
    monkeypatch.delenv("AIRFLOW__BATCH_PROVIDER__SHARED_STORAGE", raising=False)
    check_shared_storage({"output_path": "s3://bucket/jobs/x", "source": "s3://conn@bucket/in/"}, CELERY)
    check_shared_storage({"output_path": "/data/x", "source": None}, "LocalExecutor")
    for local in ("/data/x", "file:///data/x", "memory://x", "relative/dir"):
        with pytest.raises(BatchInputFailure, match="local storage"):
            check_shared_storage({"output_path": local}, "EdgeExecutor")
    with pytest.raises(BatchInputFailure, match=r"source='/in'"):
        check_shared_storage({"output_path": "s3://b/x", "source": "/in"}, "KubernetesExecutor")


def test_executor_name_forms(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__CORE__EXECUTOR",
        "celery:airflow.providers.celery.executors.celery_executor.CeleryExecutor,LocalExecutor",
    )
    assert executor_name() == CELERY
    assert executor_name("LocalExecutor") == "LocalExecutor"  # the task's own executor= wins
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "airflow.providers.edge3.executors.EdgeExecutor")
    assert executor_name() == "EdgeExecutor"


def test_plan_is_capped_by_max_map_length(source, base, monkeypatch):
    from structlog.testing import capture_logs

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    plan = ShardPlanOperator(task_id="grp.plan", source=source, processor="count", shards=6, config=CONFIG)
    with capture_logs() as logs:
        specs = plan.execute(context(FakeTI(task_id="grp.plan")))
    assert len(specs) == 2 and sum(s["rows"] for s in specs) == 1400
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "above [core] max_map_length=2" in str(warnings[0])


def test_a_shard_without_a_spec_fails_clearly(source, base):
    op = ShardOperator(task_id="grp.shard", source=source, processor="count", spec={"shard": 0})
    with pytest.raises(BatchInputFailure, match="must be a shard spec from the plan task"):
        op.execute(context(FakeTI(task_id="grp.shard", map_index=0)))


def test_merge_before_the_shards_fails_clearly(source, base):
    args = dict(source=source, processor="count", config=CONFIG, job_key="grp")
    specs = ShardPlanOperator(task_id="grp.plan", shards=2, **args).execute(
        context(FakeTI(task_id="grp.plan"))
    )
    ShardOperator(task_id="grp.shard", spec=specs[1], **args).execute(
        context(FakeTI(task_id="grp.shard", map_index=1))
    )
    with pytest.raises(ShardIncompleteError, match="shard 0 of 2 has not finished"):
        ShardMergeOperator(task_id="grp.merge", **args).execute(context(FakeTI(task_id="grp.merge")))


def test_group_wires_plan_mapped_shards_merge():
    with DAG("sharded", schedule=None) as dag:
        job = ShardedBatchJob(
            "job",
            source="/in",
            processor="data_profiling",
            shards=4,
            bins=7,
            priority="high",
            pool="batch_pool",
            pool_slots=2,
            max_active_tis_per_dagrun=2,
            queue="big",
        )
        after = BatchJobOperator(task_id="after", source=job.output["output_uri"], processor="count")
        job >> after
    assert set(dag.task_dict) == {"job.plan", "job.shard", "job.merge", "after"}
    assert dag.task_dict["job.shard"].upstream_task_ids == {"job.plan"}
    assert dag.task_dict["job.merge"].upstream_task_ids == {"job.shard"}
    assert after.upstream_task_ids == {"job.merge"}
    shard = job.shard
    # bins is DataProfilingOperator's own argument: all three tasks are that operator too (sharded_part)
    assert job.operator_class is DataProfilingOperator
    assert shard.partial_kwargs["bins"] == 7 and shard.partial_kwargs["processor_kwargs"] == {}
    assert all(isinstance(t, DataProfilingOperator) and t.bins == 7 for t in (job.plan, job.merge))
    for task in (job.plan, shard, job.merge):
        assert (task.priority_weight, task.weight_rule) == (100, "absolute")
        assert (task.pool, task.pool_slots, task.queue) == ("batch_pool", 2, "big")
        assert task.retries == 3 and task.retry_delay == timedelta(seconds=30)
    assert shard.max_active_tis_per_dagrun == 2 and job.plan.shards == 4
    assert (job.plan.job_key, job.merge.job_key) == ("job", "job")


def test_processor_kwargs_and_extra_keywords_merge():
    with DAG("sharded_kwargs", schedule=None):
        job = ShardedBatchJob(
            "job", source="/in", processor="data_profiling", processor_kwargs={"bins": 5}, top_k=3
        )
    # both are DataProfilingOperator arguments: processor_kwargs={"bins": 5} still reaches the processor
    assert (job.shard.partial_kwargs["bins"], job.shard.partial_kwargs["top_k"]) == (5, 3)
    assert (job.merge.bins, job.merge.top_k, job.merge.processor_kwargs) == (5, 3, {})
    assert job.merge.process_kwargs({})["bins"] == 5
    with DAG("sharded_kwargs_twice", schedule=None), pytest.raises(ValueError, match="'bins' given both"):
        ShardedBatchJob("job", source="/in", processor="data_profiling", processor_kwargs={"bins": 5}, bins=6)
    with DAG("sharded_kwargs_processor", schedule=None):
        job = ShardedBatchJob(  # not FeatureEngineeringOperator arguments: processor parameters
            "job",
            source="/in",
            processor="feature_engineering",
            processor_kwargs={"quantile_bits": 8},
            log=["x"],
        )
    assert job.shard.partial_kwargs["processor_kwargs"] == {"quantile_bits": 8, "log": ["x"]}
    assert job.merge.process_kwargs({})["log"] == ["x"] and job.merge.process_kwargs({})["quantile_bits"] == 8
    with DAG("sharded_typo", schedule=None), pytest.raises(TypeError, match="did you mean 'top_k'"):
        ShardedBatchJob("job", source="/in", processor="data_profiling", topk=3)


def test_dag_default_args_reach_the_mapped_shards():
    with DAG("sharded_defaults", schedule=None, default_args={"retries": 1, "retry_delay": 0}):
        job = ShardedBatchJob("job", source="/in", processor="count", shards=2)
    assert (job.shard.retries, job.plan.retries, job.merge.retries) == (1, 1, 1)


def test_executor_config_reaches_the_shard_tasks():
    """KubernetesExecutor: a pod_override (here as its dict form) is on every shard, also after serialization."""
    from airflow.serialization.serialized_objects import DagSerialization

    pod = {
        "pod_override": {
            "spec": {
                "containers": [
                    {
                        "name": "base",
                        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
                    }
                ]
            }
        }
    }
    with DAG("sharded_k8s", schedule=None) as dag:
        job = ShardedBatchJob(
            "job",
            source="s3://bucket/in/",
            processor="count",
            shards=8,
            executor_config=pod,
            executor="KubernetesExecutor",
        )
    assert job.shard.executor_config == pod and job.shard.executor == "KubernetesExecutor"
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag)).task_dict["job.shard"]
    assert back.executor_config == pod and back.executor == "KubernetesExecutor"
    assert type(back).__name__ == "SerializedMappedOperator"


def test_bad_group_arguments():
    with DAG("sharded_bad", schedule=None):
        with pytest.raises(ValueError, match="shards must be >= 1"):
            ShardedBatchJob("a", source="/in", processor="count", shards=0)
        with pytest.raises(ValueError, match="either priority or priority_weight"):
            ShardedBatchJob("b", source="/in", processor="count", priority="high", priority_weight=3)
        with pytest.raises(ValueError, match="sets multiple_outputs itself"):
            ShardedBatchJob("c", source="/in", processor="count", multiple_outputs=False)


def test_operators_package_exports_every_operator_lazily():
    import airflow_batch_provider.operators as operators

    for name in operators.__all__:
        assert getattr(operators, name).__name__ == name
    assert operators.ShardedBatchJob is ShardedBatchJob
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        operators.Nope  # noqa: B018


def test_the_merge_applies_fail_on_like_the_single_operator(source, base):
    """DataQualityOperator(fail_on=...) as shards: the merge fails with DataQualityFailure after writing the
    report and the quarantine, without _SUCCESS (the single task's rule), naming the failed rule."""
    from airflow_batch_provider.operators.data_quality import DataQualityFailure, DataQualityOperator

    rules = [{"type": "not_null", "column": "x"}]
    with pytest.raises(DataQualityFailure, match=r"not_null\(x\): \d+/1400 failed.*quarantine and report in"):
        _run_sharded(source, "data_quality", 3, DataQualityOperator, rules=rules, fail_on="error")
    folder = base / "batch_dag" / "manual__2026-11-28T10%3A00%3A00%2B00%3A00" / "grp" / "-1"
    assert (folder / "_report.json").exists() and not (folder / "_SUCCESS").exists()
    assert len(read_output(folder, quarantine=True)) > 0
    _, _, _, merged = _run_sharded(source, "data_quality", 3, DataQualityOperator, rules=rules, fail_on=0.5)
    assert merged["report"]["rules_failed"] == 1 and (folder / "_SUCCESS").exists()  # score 0.9x passes


def test_an_extra_of_an_operator_subclass_reaches_the_merge(source, base):
    """An extra added in finish_job of a user's subclass is applied by the merge too (operator_class=)."""

    class TaggedProfiling(DataProfilingOperator):
        def finish_job(self, context, summary):
            summary = super().finish_job(context, summary)
            summary["columns_profiled"] = sorted(self.full_report(summary)["columns"])
            return summary

    _, _, _, merged = _run_sharded(source, "data_profiling", 2, TaggedProfiling, bins=5)
    assert merged["columns_profiled"] == ["cat", "dup", "id", "ts", "x"] and merged["profile"]["rows"] == 1400
    with DAG("sharded_subclass", schedule=None):
        job = ShardedBatchJob("job", source="/in", operator_class=TaggedProfiling, shards=2, bins=5)
    assert job.merge.processor == "data_profiling" and isinstance(job.merge, TaggedProfiling)
    assert type(job.merge).finish_job is TaggedProfiling.finish_job


def test_operator_for_matches_names_paths_and_classes():
    from airflow_batch_provider.operators.data_quality import DataQualityOperator
    from airflow_batch_provider.processors.data_quality import DataQualityProcessor

    for processor in (
        "data_quality",
        "airflow_batch_provider.processors.data_quality:DataQualityProcessor",
        DataQualityProcessor,
    ):
        assert operator_for(processor) is DataQualityOperator
    for processor in ("count", "passthrough", lambda batch, ctx: batch, "some.module:thing"):
        assert operator_for(processor) is BatchJobOperator
    assert sharded_part(ShardOperator, BatchJobOperator) is ShardOperator
    with pytest.raises(TypeError, match="BatchJobOperator subclass"):
        sharded_part(ShardOperator, dict)


def test_feature_engineering_shards_apply_a_saved_spec(source, base, tmp_path):
    """FeatureEngineeringOperator's own ``spec`` (a saved fit) next to the shard spec (``shard_spec``)."""
    from airflow_batch_provider.operators.feature_engineering import FeatureEngineeringOperator

    fit = FeatureEngineeringOperator(
        task_id="fit", source=source, config=CONFIG, scale={"x": "standard"}, impute={"x": "mean"}
    ).execute(context(FakeTI(task_id="fit")))
    single = FeatureEngineeringOperator(
        task_id="apply", source=source, config=CONFIG, spec=fit["report_uri"]
    ).execute(context(FakeTI(task_id="apply")))
    _, _, _, merged = _run_sharded(
        source, "feature_engineering", 3, FeatureEngineeringOperator, spec=fit["report_uri"]
    )
    assert merged["report"]["spec"] == single["report"]["spec"] == fit["report"]["spec"]
    pd.testing.assert_frame_equal(read_output(merged["output_uri"]), read_output(single["output_uri"]))
    shard = sharded_part(ShardOperator, FeatureEngineeringOperator)(
        task_id="grp.shard", source=source, spec={"shard": 0}, job_key="grp"
    )
    with pytest.raises(BatchInputFailure, match="shard_spec must be a shard spec"):
        shard.execute(context(FakeTI(task_id="grp.shard", map_index=0)))
