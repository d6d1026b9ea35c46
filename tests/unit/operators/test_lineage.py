"""Assets and OpenLineage of the batch operators (``operators/lineage.py``): the declared outlet, the run's facts in
the asset event's extra, and the OpenLineage datasets and facets, checked against the job's ``_report.json`` on
real Parquet files through ``op.execute``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

RULES = [
    {"name": "x_not_null", "type": "not_null", "column": "x"},
    {"name": "id_unique", "type": "unique", "column": "id"},
    {"name": "few_rows", "type": "row_count", "max": 10, "severity": "warning"},
]


@pytest.fixture
def base(monkeypatch, tmp_path):
    """A base path of the test's own: the default assets and job folders are under it."""
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return str(tmp_path / "base")


@pytest.fixture
def source(make_parquet, base):
    make_parquet(sample_frame(1000, seed=1), "part-a.parquet")
    return make_parquet(sample_frame(500, seed=2, offset=1000), "part-b.parquet").parent


def _dag(dag_id="batch_dag"):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None)


def _run(op, task_id=None, map_index=-1):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    ctx = context(FakeTI(task_id=task_id or op.task_id, map_index=map_index))
    ctx["outlet_events"] = OutletEventAccessors()
    summary = op.execute(ctx)
    return summary, ctx["outlet_events"]


# -- which asset each operator declares ----------------------------------------------------------------
def test_every_batch_operator_declares_a_stable_output_asset(base):
    from airflow.sdk import Asset

    from airflow_batch_provider.operators import (
        AnomalyDetectionOperator,
        BatchJobOperator,
        DataProfilingOperator,
        DataQualityOperator,
        FeatureEngineeringOperator,
        ShardedBatchJob,
    )

    with _dag():
        ops = [
            BatchJobOperator(task_id="count", source="/in", processor="count"),
            DataProfilingOperator(task_id="profile", source="/in"),
            DataQualityOperator(task_id="quality", source="/in"),
            FeatureEngineeringOperator(task_id="features", source="/in"),
            AnomalyDetectionOperator(task_id="anomalies", source="/in"),
        ]
        sharded = ShardedBatchJob("sharded", source="/in", processor="count", shards=2)
    for op in ops:
        assert op.outlets == [Asset(f"file://{base}/batch_dag/{op.task_id}")], op.task_id
    # the sharded job's output is declared once, by its merge (not by the plan or the mapped shards)
    assert sharded.merge.outlets == [Asset(f"file://{base}/batch_dag/sharded")]
    assert sharded.plan.outlets == [] and sharded.shard.partial_kwargs.get("outlets") in (None, [])


@pytest.mark.parametrize(
    ("output_path", "uri"),
    [
        ("/data/out/customers", "file:///data/out/customers"),
        ("/data/out/customers/", "file:///data/out/customers"),
        ("s3://aws_prod@bucket/out/customers", "s3://bucket/out/customers"),  # the conn id names no data
        ("s3://bucket/out/{{ ds }}/customers", "s3://bucket/out"),
        ("/data/run-{{ run_id }}", "file:///data"),
        ("{{ dag_run.conf['out'] }}", "x-batch-provider://batch_dag/job"),
    ],
)
def test_the_asset_of_an_explicit_or_templated_output_path(output_path, uri):
    from airflow.sdk import Asset

    from airflow_batch_provider.operators import BatchJobOperator

    with _dag():
        op = BatchJobOperator(
            task_id="job",
            source="/in",
            processor="count",
            output_path=output_path,
            allow_any_output_path=True,
        )
    assert op.outlets == [Asset(uri)]


def test_asset_argument_and_user_outlets_are_kept(base):
    from airflow.sdk import Asset, AssetAlias

    from airflow_batch_provider.operators import BatchJobOperator

    mine, alias = Asset("s3://lake/customers", extra={"owner": "team"}), AssetAlias("batch-outputs")
    with _dag():
        named = BatchJobOperator(task_id="named", source="/in", processor="count", asset="s3://c@lake/x/")
        given = BatchJobOperator(task_id="given", source="/in", processor="count", outlets=[mine, alias])
        same = BatchJobOperator(task_id="same", source="/in", processor="count", asset=mine, outlets=[mine])
        none = BatchJobOperator(task_id="none", source="/in", processor="count", asset=False)
    assert named.outlets == [Asset("s3://lake/x")]
    assert given.outlets == [mine, alias, Asset(f"file://{base}/batch_dag/given")]
    assert same.outlets == [mine]
    assert none.outlets == [] and none.output_asset is None
    with pytest.raises(TypeError, match="asset must be an Asset, a URI string, False or None"):
        BatchJobOperator(task_id="bad", source="/in", processor="count", asset=3)
    with pytest.raises(ValueError, match="empty: asset is an empty string; give a URI"):
        BatchJobOperator(task_id="empty", source="/in", processor="count", asset=" ")


def test_an_operator_outside_a_dag_declares_no_default_asset():
    from airflow_batch_provider.operators import BatchJobOperator

    assert BatchJobOperator(task_id="job", source="/in", processor="count").outlets == []


def test_the_asset_survives_dag_serialization(base):
    """The scheduler knows outlets from the serialized DAG: the asset must be in it."""
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_batch_provider.operators import DataQualityOperator

    with _dag("serialized") as dag:
        DataQualityOperator(task_id="quality", source="/in")
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("quality")
    assert [o.uri for o in task.outlets] == [f"file://{base}/serialized/quality"]


# -- the run's facts in the asset event ----------------------------------------------------------------
def test_quality_job_puts_its_facts_in_the_asset_event(source):
    from airflow.sdk import Asset

    from airflow_batch_provider.operators import DataQualityOperator

    user = Asset("s3://lake/checked")
    with _dag():
        op = DataQualityOperator(task_id="quality", source=str(source), rules=RULES, outlets=[user])
    summary, events = _run(op)
    report = json.loads((Path(summary["output_uri"]) / "_report.json").read_text())
    extra = events[op.output_asset].extra
    assert extra["output_uri"] == summary["output_uri"] and extra["output_uri"].endswith("/quality/-1")
    assert extra["rows_in"] == 1500 and extra["rows_out"] == summary["rows_out"]
    assert extra["rows_quarantined"] == summary["extra"]["rows_quarantined"] > 0
    assert (
        extra["quality_score"] == report["score"] < 1 and extra["rules_failed"] == report["rules_failed"] == 2
    )
    assert extra["schema_of"] == "output"
    assert {f["name"] for f in extra["schema"]} >= {"id", "x", "cat", "ts", "dup"}
    assert "map_index" not in extra
    assert events[user].extra == extra  # the user's outlet gets the same facts
    json.dumps(extra)  # JSON only: it goes through the Execution API


def test_profiling_event_has_the_source_schema_and_a_mapped_task_its_index(source):
    from airflow_batch_provider.operators import DataProfilingOperator

    with _dag():
        op = DataProfilingOperator(task_id="profile", source=str(source))
    summary, events = _run(op, map_index=3)
    extra = events[op.output_asset].extra
    assert extra["rows_out"] == 0 and extra["schema_of"] == "source" and extra["map_index"] == 3
    assert [f["name"] for f in extra["schema"]] == ["id", "x", "cat", "ts", "dup"]
    assert "quality_score" not in extra
    assert extra["output_uri"] == summary["output_uri"]


def test_no_outlet_events_in_the_context_is_fine(source):
    from airflow_batch_provider.operators import BatchJobOperator

    with _dag():
        op = BatchJobOperator(task_id="count", source=str(source), processor="count")
    assert op.execute(context(FakeTI(task_id="count")))["rows_in"] == 1500


def test_a_failed_quality_gate_still_fails(source):
    """fail_on raises after the event's extra is set: Airflow registers asset events on success only."""
    from airflow_batch_provider.operators import DataQualityFailure, DataQualityOperator

    with _dag():
        op = DataQualityOperator(task_id="gate", source=str(source), rules=RULES, fail_on="error")
    with pytest.raises(DataQualityFailure):
        _run(op)


# -- OpenLineage ---------------------------------------------------------------------------------------
def _facets(op):
    from openlineage.client.serde import Serde

    lineage = op.get_openlineage_facets_on_complete(None)
    assert len(lineage.inputs) == 1 and len(lineage.outputs) == 1  # one dataset per job, not per chunk file
    return (json.loads(Serde.to_json(d)) for d in (lineage.inputs[0], lineage.outputs[0]))


def test_profile_is_a_data_quality_metrics_facet_equal_to_the_report(source, base):
    from airflow_batch_provider.operators import DataProfilingOperator
    from airflow_batch_provider.operators.lineage import JobOutput

    with _dag():
        op = DataProfilingOperator(task_id="profile", source=str(source), config={"batch_size": 400})
    assert op.get_openlineage_facets_on_complete(None) is None  # before it ran
    summary, _ = _run(op)
    assert summary["chunks_total"] > 1
    report = json.loads((Path(summary["output_uri"]) / "_report.json").read_text())
    # a report too large for the XCom summary is read from the job folder
    assert JobOutput(summary["output_uri"], {**summary, "report": None}).report == report
    source_ds, output = _facets(op)
    assert (source_ds["namespace"], source_ds["name"]) == ("file", str(source))
    metrics = source_ds["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == report["rows"] == 1500 and metrics["fileCount"] == 2
    assert metrics["bytes"] == sum(p.stat().st_size for p in source.iterdir())
    assert set(metrics["columnMetrics"]) == set(report["columns"])
    for name, col in report["columns"].items():
        got = metrics["columnMetrics"][name]
        assert got["nullCount"] == col["nulls"] and got["distinctCount"] == col["distinct"], name
        assert got["count"] == col["count"]
        if col["type"] in ("integer", "float"):
            assert (got["min"], got["max"]) == (col["min"], col["max"]) and got["quantiles"] == col[
                "quantiles"
            ]
        else:  # text and timestamps: no numeric min/max in the facet
            assert "min" not in got and got["quantiles"] == {}
    assert "dataQualityAssertions" not in source_ds["inputFacets"]
    assert [f["name"] for f in source_ds["facets"]["schema"]["fields"]] == ["id", "x", "cat", "ts", "dup"]
    assert (output["namespace"], output["name"]) == ("file", f"{base}/batch_dag/profile")
    assert output["facets"]["version"]["datasetVersion"] == summary["output_uri"]
    assert output["outputFacets"]["outputStatistics"] == {
        **{k: v for k, v in output["outputFacets"]["outputStatistics"].items() if k.startswith("_")},
        "rowCount": 0,
        "fileCount": 0,
    }


def test_quality_rules_are_a_data_quality_assertions_facet_equal_to_the_report(source):
    from airflow_batch_provider.operators import DataQualityOperator

    with _dag():
        op = DataQualityOperator(
            task_id="quality", source=str(source), rules=RULES, asset="s3://lake/checked"
        )
    summary, _ = _run(op)
    report = json.loads((Path(summary["output_uri"]) / "_report.json").read_text())
    source_ds, output = _facets(op)
    assertions = source_ds["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert [(a["name"], a["assertion"], a["success"], a["severity"]) for a in assertions] == [
        (r["name"], r["type"], r["passed"], r["severity"]) for r in report["rules"]
    ]
    x_rule = assertions[0]
    assert x_rule["column"] == "x" and x_rule["actual"] == str(report["rules"][0]["failure_ratio"])
    assert x_rule["params"]["failed"] == report["rules"][0]["failed"] > 0
    assert "column" not in assertions[2]  # a dataset-level rule
    assert source_ds["inputFacets"]["dataQualityMetrics"]["rowCount"] == report["rows"] == 1500
    assert (output["namespace"], output["name"]) == ("s3://lake", "checked")
    stats = output["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == summary["rows_out"] and stats["fileCount"] >= 1
    assert {f["name"] for f in output["facets"]["schema"]["fields"]} >= {"id", "x", "cat"}


def test_sharded_job_lineage_comes_from_the_merge_only(source, base):
    from airflow_batch_provider.operators import ShardedBatchJob
    from airflow_batch_provider.operators.shards import ShardOperator

    with _dag():
        job = ShardedBatchJob("sharded", source=str(source), processor="data_profiling", shards=2)
    specs = job.plan.execute(context(FakeTI(task_id="sharded.plan")))
    assert len(specs) == 2
    for spec in specs:
        shard = ShardOperator(
            task_id="sharded.shard",
            job_key="sharded",
            source=str(source),
            processor="data_profiling",
            spec=spec,
        )
        assert shard.outlets == []
        shard.execute(context(FakeTI(task_id="sharded.shard", map_index=spec["shard"])))
    job.merge.shard_results = None  # the shards' XCom, resolved by Airflow in a real run
    summary, events = _run(job.merge)
    assert events[job.merge.output_asset].extra["rows_in"] == 1500
    assert job.plan.get_openlineage_facets_on_complete(None) is None
    source_ds, output = _facets(job.merge)
    report = json.loads((Path(summary["output_uri"]) / "_report.json").read_text())
    assert source_ds["inputFacets"]["dataQualityMetrics"]["rowCount"] == report["rows"] == 1500
    assert output["name"] == f"{base}/batch_dag/sharded"


def test_lineage_module_needs_no_openlineage_import_to_declare_assets():
    """The provider works without the openlineage extra: only the facet builder imports it."""
    import ast

    import airflow_batch_provider.operators.lineage as lineage

    tree = ast.parse(Path(lineage.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {getattr(n, "module", None) or n.names[0].name for n in top}
    assert not any(str(n).startswith(("openlineage", "airflow.providers.openlineage")) for n in names)


# -- partitions ----------------------------------------------------------------------------------------
def test_asset_partitions_emit_one_event_per_key(source):
    from airflow_batch_provider.operators import BatchJobOperator

    with _dag():
        op = BatchJobOperator(
            task_id="count",
            source=str(source),
            processor="count",
            asset_partitions=["eu|2026-06-01", "us|2026-06-01"],
        )
    assert "asset_partitions" in op.template_fields
    _, events = _run(op)
    event = events[op.output_asset]
    assert event.partition_keys == {"eu|2026-06-01", "us|2026-06-01"} and event.extra["rows_in"] == 1500


@pytest.mark.parametrize(
    ("value", "keys"), [(None, []), ("2026-06-01", ["2026-06-01"]), (["a", "b", "a"], ["a", "b"])]
)
def test_partition_keys_forms(value, keys):
    from airflow_batch_provider.operators.lineage import partition_keys

    assert partition_keys(value) == keys


@pytest.mark.parametrize("bad", ["", "  ", ["ok", 3], ["x" * 251]])
def test_a_bad_partition_key_fails_before_any_row_is_read(source, bad):
    from airflow_batch_provider.operators import BatchInputFailure, BatchJobOperator

    with _dag():
        op = BatchJobOperator(task_id="count", source=str(source), processor="count", asset_partitions=bad)
    with pytest.raises(
        BatchInputFailure, match="count: asset_partitions: partition key .* must be a non-blank string"
    ):
        _run(op)
    assert not list(Path(source).parent.glob("base/batch_dag/*/count"))  # no job folder was written
