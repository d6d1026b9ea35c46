"""A standard operator run as ``ShardedBatchJob`` behaves like the same operator as one task (issue #22).

Under a real Airflow (``dag.test()``, XComs read back from the metadata DB), every standard operator, found by
walking the ``operators`` package (not a list kept here), runs once as a single task and once as a 3-shard
``ShardedBatchJob`` on the same data. The merge task must push the same XCom keys with the same values, write
the same reports, quarantine and output, log the same outcome and end in the same state, also when
``fail_on`` fails the task. Values that are run-specific by nature are normalised explicitly (``_normalise``,
``_comparable``): the job folder and the task's page URLs in the extra-link XComs (they name the DAG, run and
task), timings (``duration_s``, the final ``checkpoint``'s ``at``), the job id, how the engine ran the job
(``extra`` but its ``rows_quarantined``, ``resume_decision``, ``batch_size_trajectory``: shards vs one process
pool) and what only a sharded job has (``shard_runs``). Everything else is compared as is (floats to 12
significant digits). A test fails when an extra reaches one path only: the discovery test holds the merge to
the operator's own ``execute``/``finish_job``/``job_kwargs``, and the parity tests compare what they produce.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow.sdk import DAG
from structlog.testing import capture_logs

import airflow_batch_provider.operators as operators_package
from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.links import job_url
from airflow_batch_provider.operators.shards import (
    ShardedBatchJob,
    ShardMergeOperator,
    _ShardedJobPart,
    processor_operators,
)
from tests.conftest import sample_frame
from tests.integration.conftest import serialize
from tests.unit.processors.test_conformance import _strip

pytestmark = pytest.mark.integration
CONFIG = BatchConfig(batch_size=150, max_concurrent_batches=1, checkpoint_interval=1)
RULES = [
    {"type": "not_null", "column": "x"},  # fails (NaNs), severity error
    {"type": "allowed_values", "column": "cat", "values": ["a", "b", "c"], "severity": "warning"},  # fails
    {"type": "unique", "column": "id"},  # passes
]
#: parameters for the operators that need some to do real work; an operator not named here runs with its
#: defaults (so a new standard operator is in the parity test the day it is added, without editing this file)
PARAMS: dict[str, dict[str, Any]] = {
    "anomaly_detection": {"features": ["x", "dup"], "contamination": 0.05, "sample_size": 500},
    "data_profiling": {"bins": 8, "top_k": 3},
    "data_quality": {"rules": RULES},
    "feature_engineering": {
        "scale": {"x": "standard"},
        "encode": {"cat": "onehot"},
        "impute": {"x": "mean"},
        "log_columns": ["dup"],
    },
}
#: summary keys only a sharded job has (docs/shards.md)
SHARDING_KEYS = frozenset({"shard_runs"})  # and, inside ``extra`` (not compared), ``shards`` and ``merge_s``
#: summary keys that say how this run went rather than what it computed (timings, ids, engine diagnostics)
RUN_SPECIFIC = frozenset({"duration_s", "job_id", "resume_decision", "batch_size_trajectory", "extra"})


def discovered_operators() -> dict[str, type[BatchJobOperator]]:
    """Every processor operator defined in the ``operators`` package, found by importing each module."""
    found: dict[str, type[BatchJobOperator]] = {}
    for module in pkgutil.iter_modules(operators_package.__path__):
        mod = importlib.import_module(f"{operators_package.__name__}.{module.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if (
                cls.__module__ == mod.__name__
                and issubclass(cls, BatchJobOperator)
                and not issubclass(cls, _ShardedJobPart)
                and cls.processor_class is not None
            ):
                found[str(cls.processor_class)] = cls
    return found


OPERATORS = discovered_operators()


def test_discovery_finds_the_standard_operators_and_shards_pick_them():
    """The walk finds the four operators; ``ShardedBatchJob`` picks each one, and its merge *is* the operator
    with only the job run replaced: ``execute``, ``finish_job`` and ``job_kwargs`` are the operator's own."""
    assert {"anomaly_detection", "data_profiling", "data_quality", "feature_engineering"} <= set(OPERATORS)
    assert processor_operators() == OPERATORS, "an operator module is missing from operators.__init__"
    for name, operator in OPERATORS.items():
        with DAG(f"pick_{name}", schedule=None):
            job = ShardedBatchJob("job", source="/in", processor=name, shards=2, **PARAMS.get(name, {}))
        assert job.operator_class is operator
        merge = type(job.merge)
        assert issubclass(merge, ShardMergeOperator) and issubclass(merge, operator)
        for method in ("execute", "finish_job", "job_kwargs", "process_kwargs"):
            assert getattr(merge, method) is getattr(operator, method), (name, method)
        assert merge.run_job is ShardMergeOperator.run_job
        assert isinstance(job.plan, operator) and issubclass(job.shard.operator_class, operator)


# -- running both --------------------------------------------------------------------------------------------
@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(1000, seed=11), "a.parquet")
    make_parquet(sample_frame(650, seed=12, offset=1000), "b.parquet")
    return str(tmp_path / "src")


def _run(dag: DAG, task_id: str) -> dict[str, Any]:
    """Run the DAG; the task's state, tries, XComs (all keys, from the DB) and WARNING+ log lines."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with capture_logs() as logs:
        dr = serialize(dag).test()
    ti = dr.get_task_instance(task_id)
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag.dag_id,
                XComModel.run_id == dr.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == -1,
            )
        ).all()
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
    folder = xcoms["batch_job"]["output_uri"]
    # the extra links (XComs _link_*) open the plugin's pages of this task instance: its ids are in the URL
    names = {
        folder: "<job folder>",
        job_url(dag.dag_id, dr.run_id, task_id, -1, "job")[: -len("job")]: "<task pages>/",
    }
    # WARNING and ERROR lines, but not the API client's "XCom not found" (the merge reads the mapped shards'
    # results as a LazyXComSequence, whose iteration ends on a lookup past the last one)
    warnings = [
        _normalise(str(e.get("event")), names)
        for e in logs
        if e.get("log_level") in ("warning", "error", "critical")
        and not str(e.get("logger_name", "")).startswith("airflow.sdk.api")
    ]
    return {"state": ti.state, "try_number": ti.try_number, "xcoms": xcoms, "names": names, "logs": warnings}


def _normalise(value: Any, names: dict[str, str]) -> Any:
    """The job folder and the task's page URL -> placeholders in every string; floats to 12 significant
    digits (``_strip``)."""
    if isinstance(value, dict):
        return {k: _normalise(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, names) for v in value]
    if isinstance(value, str):
        for name, placeholder in names.items():
            value = value.replace(name, placeholder)
        return value
    return _strip(value)


def _comparable(run: dict[str, Any]) -> dict[str, Any]:
    """The XComs with the run-specific parts taken out (listed at the top of this module)."""
    out: dict[str, Any] = {}
    for key, value in run["xcoms"].items():
        if key in SHARDING_KEYS or key in RUN_SPECIFIC:
            continue
        if key == "return_value":  # the summary: the same keys as its own XComs
            value = {k: v for k, v in value.items() if k not in SHARDING_KEYS | RUN_SPECIFIC}
            # the one figure of ``extra`` both runs report, and must agree on
            value["rows_quarantined"] = (run["xcoms"][key].get("extra") or {}).get("rows_quarantined", 0)
        if key == "checkpoint":  # the final pointer: when it was written is run-specific
            value = {k: v for k, v in value.items() if k != "at"}
        out[key] = _normalise(value, run["names"])
    return out


def _folder(run: dict[str, Any]) -> str:
    return str(run["xcoms"]["batch_job"]["output_uri"])


def _files(folder: str) -> dict[str, Any]:
    root = Path(folder)
    html = root / "_report.html"
    return {
        "success_marker": (root / "_SUCCESS").exists(),
        "report": _strip(pd.read_json(root / "_report.json", typ="series").to_dict())
        if (root / "_report.json").exists()
        else None,
        "html": html.exists(),
    }


def _both(name: str, tag: str, source: str, **params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    operator = OPERATORS[name]
    start = datetime(2026, 1, 1)
    with DAG(f"parity_{tag}_single", schedule=None, start_date=start) as single_dag:
        operator(task_id="job", source=source, config=CONFIG, **params)
    with DAG(f"parity_{tag}_sharded", schedule=None, start_date=start) as sharded_dag:
        ShardedBatchJob("job", source=source, processor=name, shards=3, config=CONFIG, **params)
    single = _run(single_dag, "job")
    sharded = _run(sharded_dag, "job.merge")
    return single, sharded


def _assert_same(single: dict[str, Any], sharded: dict[str, Any]) -> None:
    assert (sharded["state"], sharded["try_number"]) == (single["state"], single["try_number"])
    want, got = _comparable(single), _comparable(sharded)
    assert sorted(got) == sorted(want), "XCom keys differ"
    for key in want:
        assert got[key] == want[key], f"XCom {key!r} differs"
    summary = sharded["xcoms"].get("return_value")
    if summary is not None:
        assert summary["extra"]["shards"] == 3 and len(summary["shard_runs"]) == 3
    assert sharded["logs"] == single["logs"]
    ref, ours = _files(_folder(single)), _files(_folder(sharded))
    assert ours == ref
    for quarantine in (False, True):
        want_rows = read_output(_folder(single), quarantine=quarantine)
        got_rows = read_output(_folder(sharded), quarantine=quarantine)
        if want_rows is None:
            assert got_rows is None
        else:
            pd.testing.assert_frame_equal(got_rows, want_rows, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_sharded_job_equals_the_single_operator(airflow_db, source, name):
    single, sharded = _both(name, name, source, **PARAMS.get(name, {}))
    assert single["state"] == "success"
    _assert_same(single, sharded)
    if name == "data_profiling":
        assert sharded["xcoms"]["profile"]["rows"] == 1650  # the extra the merge used to forget
    if name == "data_quality":
        assert sharded["logs"] and "warning rule allowed_values" in sharded["logs"][0]


@pytest.mark.parametrize("fail_on", ["error", 0.99])
def test_fail_on_fails_the_merge_like_the_single_task(airflow_db, source, fail_on):
    single, sharded = _both(
        "data_quality", f"fail_{fail_on}".replace(".", "_"), source, rules=RULES, fail_on=fail_on
    )
    assert single["state"] == "failed" and single["try_number"] == 1  # DataQualityFailure: no retries
    _assert_same(single, sharded)
    assert "return_value" not in sharded["xcoms"]  # a failed task pushes no result
    assert not _files(_folder(sharded))["success_marker"] and _files(_folder(sharded))["report"]


def test_a_warning_rule_that_fails_logs_a_warning_and_passes_fail_on_error(airflow_db, source):
    rules = [{"type": "allowed_values", "column": "cat", "values": ["a", "b", "c"], "severity": "warning"}]
    single, sharded = _both("data_quality", "warn", source, rules=rules, fail_on="error")
    assert single["state"] == sharded["state"] == "success"
    _assert_same(single, sharded)
    assert len(sharded["logs"]) == 1 and "warning rule allowed_values" in sharded["logs"][0]
