"""A templated output_path / source cannot take a task anywhere the worker can reach (issue #18, finding 5).

This release warns where the new rule refuses; ``[batch_provider] enforce_output_roots = True`` refuses now.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.shards import ShardPlanOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

CONFIG = BatchConfig(batch_size=250, max_concurrent_batches=1)
ENFORCE = "AIRFLOW__BATCH_PROVIDER__ENFORCE_OUTPUT_ROOTS"
ALLOWED = "AIRFLOW__BATCH_PROVIDER__ALLOWED_OUTPUT_ROOTS"
SOURCES = "AIRFLOW__BATCH_PROVIDER__ALLOWED_SOURCE_ROOTS"


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(500, seed=3), "a.parquet")
    return str(tmp_path / "src")


@pytest.fixture
def base(monkeypatch, tmp_path):
    for name in (ENFORCE, ALLOWED, SOURCES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


def triggered(source, out, **kwargs):
    """The operator of a DAG file that lets the run conf choose the output, rendered as Airflow renders it."""
    op = BatchJobOperator(
        task_id="job",
        source=source,
        processor="passthrough",
        config=CONFIG,
        output_path="{{ dag_run.conf['out'] }}",
        **kwargs,
    )
    ctx = {**context(FakeTI()), "dag_run": SimpleNamespace(conf={"out": str(out)})}
    op.render_template_fields(ctx)
    assert op.output_path == str(out)
    return op, ctx


def test_run_conf_pointing_output_path_elsewhere_warns_in_this_release(source, base, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / "out"
    op, ctx = triggered(source, elsewhere)
    with pytest.warns(DeprecationWarning, match="the next one refuses"):
        summary = op.execute(ctx)
    assert summary["output_uri"] == str(elsewhere) and (elsewhere / "_SUCCESS").exists()
    logged = capsys.readouterr().out  # the task logger (structlog) writes to stdout here
    assert "warning" in logged and "is not under [batch_provider] base_path or allowed_output_roots" in logged


@pytest.mark.parametrize("where", ["elsewhere", "dotdot", "base itself", "prefix sibling"])
def test_enforce_output_roots_refuses_and_writes_nothing(source, base, tmp_path, monkeypatch, where):
    monkeypatch.setenv(ENFORCE, "True")
    out = {
        "elsewhere": tmp_path / "elsewhere",
        "dotdot": f"{base}/dag/../../elsewhere",
        "base itself": base,
        "prefix sibling": f"{base}-other/x",
    }[where]
    op, ctx = triggered(source, out)
    with pytest.raises(BatchInputFailure, match="allow_any_output_path=True"):
        op.execute(ctx)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "base-other").exists()
    assert not (base / "_manifest.json").exists()


@pytest.mark.parametrize("enforce", [False, True])
def test_allowed_places_neither_warn_nor_refuse(source, base, tmp_path, monkeypatch, enforce):
    monkeypatch.setenv(ENFORCE, str(enforce))
    monkeypatch.setenv(ALLOWED, f" {tmp_path / 'exports'} , s3://bucket/batch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for out in (base / "dag" / "custom", tmp_path / "exports" / "daily", tmp_path / "exports"):
            op, ctx = triggered(source, out)
            assert op.execute(ctx)["output_uri"] == str(out)
        op, ctx = triggered(
            source, tmp_path / "anywhere", allow_any_output_path=True
        )  # the DAG author says so
        assert op.execute(ctx)["output_uri"] == str(tmp_path / "anywhere")


def test_allow_any_output_path_is_not_templated():
    assert "allow_any_output_path" not in BatchJobOperator.template_fields


def test_a_sharded_job_is_confined_too(source, base, tmp_path, monkeypatch):
    monkeypatch.setenv(ENFORCE, "True")
    op = ShardPlanOperator(
        task_id="grp.plan", source=source, processor="count", config=CONFIG, output_path=str(tmp_path / "x")
    )
    with pytest.raises(BatchInputFailure, match="output_path"):
        op.execute(context(FakeTI(task_id="grp.plan")))
    assert not (tmp_path / "x").exists()


def test_allowed_source_roots_confine_the_source(source, base, tmp_path, monkeypatch):
    op = BatchJobOperator(task_id="job", source=source, processor="count", config=CONFIG)
    monkeypatch.setenv(SOURCES, str(tmp_path / "lake"))
    with pytest.raises(BatchInputFailure, match="allowed_source_roots"):
        op.execute(context(FakeTI()))
    monkeypatch.setenv(SOURCES, f"{tmp_path / 'lake'},{tmp_path / 'src'}")
    assert op.execute(context(FakeTI()))["rows_in"] == 500
    monkeypatch.delenv(SOURCES)  # empty: no restriction
    assert op.execute(context(FakeTI(try_number=2)))["rows_in"] == 500
