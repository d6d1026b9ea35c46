"""Every example of the reference batch API, translated in docs/coming-from-the-reference-api.md, run as written
(the blocks are read from that page) and checked against the outputs its comments show.

Airflow examples (the orchestrator, job dependencies, the standard processors, a sharded job) run under a real
Airflow with ``dag.test()``; the rest are plain Python against a private base path.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider import run_batch_job
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.engine.sizing import process_memory_bytes
from airflow_batch_provider.monitoring import get_active_alerts, get_job_failure_history
from tests.conftest import sample_frame

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "coming-from-the-reference-api.md"
ROWS = 1000
QUALITY_DEFAULTS = ROOT / "airflow_batch_provider" / "processors" / "quality_defaults.py"


def examples() -> dict[str, str]:
    """The ``<!-- example: name -->`` python blocks of the page, by name."""
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```python\n(.*?)```", text, flags=re.S)
    names = [n for n, _ in found]
    assert len(names) == len(set(names)), "example names must be unique"
    return dict(found)


EXAMPLES = examples()


def run(name: str, ns: dict) -> list[str]:
    """Run one example in ``ns`` (kept, so later examples see earlier names); its printed lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(EXAMPLES[name], f"{DOC.name}:{name}", "exec"), ns)  # noqa: S102 - our own documentation
    return [line for line in out.getvalue().splitlines() if not LOG_LINE.match(line)]


#: a log line Airflow's console logging printed to stdout meanwhile (not the example's output)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[")


class Calls:
    """``make_orders()``: the user's code returning a DataFrame; counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> pd.DataFrame:
        self.count += 1
        return sample_frame(ROWS, seed=7)


class DetectionService:
    """The reference's per-row service: an async call per row."""

    async def detect_anomalies(self, row: dict) -> dict:
        return {"id": int(row["id"]), "anomaly": bool(abs(row["x"]) > 2) if row["x"] == row["x"] else False}


def flaky(flags: Path):
    """Fails the first attempt of the chunks starting at rows 200 and 400 (a transient failure)."""

    def flaky_processor(batch, context):
        flag = flags / f"{context.start_row}"
        if context.start_row in (200, 400) and not flag.exists():
            flag.touch()
            raise RuntimeError(f"flaky: first attempt of rows {context.start_row}-{context.stop_row}")
        return batch

    flags.mkdir(parents=True, exist_ok=True)
    return flaky_processor


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


@pytest.fixture
def ns(base, tmp_path):
    frame = sample_frame(ROWS, seed=7)
    return {
        "__name__": "reference_examples",
        "make_orders": Calls(),
        "my_dataframe": frame,
        "dataframe": frame,
        "data": frame,
        "large_dataset": frame,
        "flaky_processor": flaky(tmp_path / "flags"),
        "DetectionService": DetectionService,
    }


@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils import db

    db.resetdb()
    return True


def dag_test(dag):
    from tests.integration.conftest import serialize

    run_ = serialize(dag).test()
    assert run_.state == "success", [(ti.task_id, ti.state) for ti in run_.get_task_instances()]
    return run_


def summary(dag_run, task_id):
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id, key="return_value")


# -- the page and its tests agree ------------------------------------------------------------------------
TESTED = {
    "service", "orchestrator", "configuration-manager", "monitoring-service", "recovery-service",
    "standard-processors", "batch-config", "processing-profile", "job-dependencies", "progress-tracking",
    "error-handling", "monitoring-alerts", "automatic-optimization", "manual-tuning",
    "best-practice-batch-sizes", "best-practice-dependencies", "best-practice-monitor", "best-practice-failures",
    "cleanup", "integration-service", "distributed", "troubleshooting-overrides", "troubleshooting-failures",
    "troubleshooting-recommendations", "debug-mode",
}  # fmt: skip


def test_every_example_on_the_page_is_run_by_a_test_here():
    assert set(EXAMPLES) == TESTED
    for section in ("BatchProcessingService", "BatchOrchestrator", "BatchConfigurationManager",
                    "BatchMonitoringService", "BatchRecoveryService", "Standard processors", "Job dependencies",
                    "Progress tracking", "Error handling", "Monitoring & alerts", "Clean up resources"):  # fmt: skip
        assert section in DOC.read_text()


# -- core components -------------------------------------------------------------------------------------
def test_service(ns):
    assert run("service", ns) == ["my-batch-job {'processed': 1000} 10"]
    assert ns["job"].rows_in == ROWS and ns["job"].chunks_processed == 10


def test_orchestrator_dependencies_and_priorities(ns, airflow_db):
    assert run("orchestrator", ns) == ["100 10 True"]
    dr = dag_test(ns["dag"])
    a, b = dr.get_task_instance("data_profiling"), dr.get_task_instance("anomaly_detection")
    assert a.end_date <= b.start_date  # depends_on: b started after a finished
    assert (a.priority_weight, b.priority_weight) == (100, 10)
    assert summary(dr, "data_profiling")["report"]["rows"] == ROWS
    assert summary(dr, "anomaly_detection")["rows_out"] == ROWS
    assert ns["make_orders"].count == 1  # the frame was made once and travelled through XCom


def test_configuration_manager(ns):
    lines = run("configuration-manager", ns)
    result, config = ns["result"], ns["config"]
    assert lines[0] == f"Recommended batch size: {result.recommended_batch_size}"
    assert lines[1] == f"Recommended concurrency: {result.recommended_concurrency}"
    assert result.recommended_batch_size == ROWS and result.recommended_concurrency == 1
    # the target bounds the chunks (the part a batch size changes); the estimate is the whole tree, so it also
    # counts the process the job starts in, which here is pytest's (docs/tuning.md)
    parts = result.memory_components_mb
    assert result.target_memory_usage_mb == 1000 and 0 < parts["chunks"] <= 1000
    assert result.estimated_memory_usage_mb == pytest.approx(sum(parts.values()), abs=0.01)
    assert parts["process"] == pytest.approx(process_memory_bytes() / 2**20, rel=0.5)
    assert lines[2] == "True 1" and config.batch_size == ROWS


def test_monitoring_service(ns):
    lines = run("monitoring-service", ns)
    progress = [line for line in lines if line.startswith("Progress: ")]
    assert progress[0] == "Progress: 0.0%" and progress[-1] == "Progress: 100.0%"
    (alert,) = [line for line in lines if line.startswith("Alert: ")]
    assert re.fullmatch(r"Alert: failure rate high - 2 chunk retries in \d+ attempts, 0 rows skipped "
                        r"\(retry_rate [\d.]+% over 10\.0%\)", alert), alert  # fmt: skip
    dashboard = ns["dashboard"]
    assert lines[-1] == str(sorted(dashboard)[:6])
    assert {"system_summary", "failure_statistics", "active_jobs", "recent_alerts"} <= set(dashboard)
    assert dashboard["recent_alerts"][0].title == "failure rate high"  # alert records: attributes too
    assert dashboard["failure_statistics"]["total_failures"] == 2


def test_recovery_service(ns):
    assert run("recovery-service", ns) == ["True 1"]
    history = get_job_failure_history("recovered-job")
    assert len(history) == 2 and all(f.recovered and f.strategy == "retry" for f in history)
    pd.testing.assert_frame_equal(read_output(ns["job"].output_uri), ns["my_dataframe"])


# -- standard processors ---------------------------------------------------------------------------------
def test_standard_processors_with_the_reference_arguments(ns, airflow_db):
    assert run("standard-processors", ns) == []
    dr = dag_test(ns["dag"])
    anomaly = summary(dr, "anomaly_detection")
    assert anomaly["report"]["algorithm"] == "isolation_forest" and anomaly["rows_out"] == ROWS
    assert {"anomaly_score", "is_anomaly"} <= set(read_output(anomaly["output_uri"]).columns)
    profile = summary(dr, "data_profiling")["report"]
    assert profile["rows"] == ROWS and len(profile["columns"]) == 5
    features = summary(dr, "feature_engineering")
    assert "cat=a" in read_output(features["output_uri"]).columns and features["report"]["spec"]
    ns["quality"] = summary(dr, "data_quality_check")


@pytest.mark.skipif(
    not QUALITY_DEFAULTS.exists(), reason="default assessment: see processors/quality_defaults.py"
)
def test_standard_data_quality_runs_the_default_assessment_with_no_rules(ns, airflow_db):
    run("standard-processors", ns)
    dr = dag_test(ns["dag"])
    report = summary(dr, "data_quality_check")["report"]
    assert 0 <= report["score"] <= 1
    generated = report["assessment"]["generated_rules"]
    assert {r["type"] for r in generated} >= {"unique", "not_null", "between"}
    assert any(r["name"] == "completeness(x)" for r in generated)  # the column with planted NaNs


# -- configuration ---------------------------------------------------------------------------------------
def test_batch_config_and_processing_profile(ns):
    assert run("batch-config", ns) == ["1000 3600.0"]
    assert ns["config"].preserve_order is False and ns["config"].retry_delay_seconds == 30.0
    assert run("processing-profile", ns) == ["1.5"]
    from airflow_batch_provider.tuning import calculate_optimal_batch_config

    assert "memory overhead x1.5" in " ".join(calculate_optimal_batch_config(data=ns["data"],
                                                                              processor_name="custom_processor").reasons)  # fmt: skip


def test_job_dependencies_run_in_sequence(ns, airflow_db):
    assert run("job-dependencies", ns) == []
    dr = dag_test(ns["dag"])
    a, b, c = (dr.get_task_instance(t) for t in
               ("step_1_data_validation", "step_2_feature_engineering", "step_3_anomaly_detection"))  # fmt: skip
    assert a.end_date <= b.start_date and b.end_date <= c.start_date
    assert ns["make_orders"].count == 3  # the callable source: called once by each task
    assert all(summary(dr, t.task_id)["rows_in"] == ROWS for t in (a, b, c))


def test_progress_tracking(ns):
    lines = run("progress-tracking", ns)
    assert "Job tracked-job completed successfully!" in lines
    assert lines[-2:] == ["Progress: 100.0%", "Items processed: 1000"]
    assert all(
        re.fullmatch(r"Job tracked-job: [\d.]+% complete", line) for line in lines if "% complete" in line
    )


def test_error_handling_statistics(ns, tmp_path):
    run("monitoring-service", ns)
    ns["flaky_processor"] = flaky(tmp_path / "more-flags")  # the same two chunks fail once more
    run("recovery-service", ns)
    assert run("error-handling", ns) == [
        "Total failures: 4",
        "Recovery success rate: 100.0%",
        "Most common failure: processing",
    ]
    assert ns["stats"]["total"] == 4 and ns["stats"]["recovery_rate"] == 1.0


def _gated(gate: Path, flags: Path):
    flaky_processor = flaky(flags)

    def processor(batch, context):
        if context.start_row >= 600:
            deadline = time.monotonic() + 120
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return flaky_processor(batch, context)

    return processor


def test_monitoring_and_alerts_while_a_job_runs(ns, tmp_path):
    gate = tmp_path / "gate"
    job = threading.Thread(
        target=run_batch_job,
        args=(ns["data"], _gated(gate, tmp_path / "gated-flags")),
        kwargs={
            "job_id": "gated",
            "config": {"batch_size": 100, "max_concurrent_batches": 1, "retry_delay_seconds": 0},
        },  # fmt: skip
    )
    job.start()
    try:
        deadline = time.monotonic() + 60
        while not get_active_alerts() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = run("monitoring-alerts", ns)
    finally:
        gate.touch()
        job.join(timeout=120)
    assert lines[:2] == ["Running jobs: 1", "Scheduled jobs: None"]
    assert re.fullmatch(r"CPU usage: \d+\.\d%", lines[2]) and re.fullmatch(
        r"Memory usage: \d+\.\d%", lines[3]
    )
    assert re.fullmatch(
        r"warning: failure rate high - 2 chunk retries in \d+ attempts, 0 rows skipped .*", lines[4]
    )
    assert len(lines) == 5
    (running,) = ns["status"]["jobs"]
    assert running["job_id"] == "gated" and 0 < running["processed_items"] < ROWS
    assert 0 <= ns["dashboard"]["system_summary"]["cpu_percent"] <= 100
    assert ns["alerts"][0]["level"] == ns["alerts"][0].level == "warning"
    assert not job.is_alive()


def test_automatic_optimization_and_manual_tuning(ns, base):
    lines = run("automatic-optimization", ns)
    result = ns["result"]
    assert lines == [
        f"Batch size: {result.recommended_batch_size}",
        f"Concurrency: {result.recommended_concurrency}",
        f"Memory usage: {result.estimated_memory_usage_mb:.1f}MB",
    ]
    assert run("manual-tuning", ns) == ["500 2 2000"]
    from tests.unit.operators.task_context import context

    done = ns["job_request"].execute(context())
    assert done["batch_size"] == 500 and done["rows_out"] == ROWS and done["extra"]["workers"] == 2


# -- best practices ----------------------------------------------------------------------------------------
def test_best_practices(ns):
    assert run("best-practice-batch-sizes", ns) == ["True 2 8"]
    assert ns["memory_intensive"].batch_size == 100 and ns["memory_intensive"].memory_limit_mb == 1000
    assert run("best-practice-dependencies", ns) == [
        "['parallel_task_a', 'parallel_task_b', 'parallel_task_c']"
    ]
    assert ns["dag"].get_task("model_training").upstream_task_ids == {"feature_engineering"}
    lines = run("best-practice-monitor", ns)
    recommendations = ns["recommendations"]
    assert lines == [f"{r.kind}: {r.message}" for r in recommendations] and lines[-1].startswith("info: ")
    assert json.loads(json.dumps(recommendations.to_dict()))["recommendations"][-1]["type"] == "info"
    assert run("best-practice-failures", ns) == ["5 3"]


def _age(job_folder: Path, days: float) -> None:
    for checkpoint in job_folder.glob("g*/_checkpoint.json"):
        doc = json.loads(checkpoint.read_text())
        doc["updated_at"] -= days * 86400
        checkpoint.write_text(json.dumps(doc))


def test_cleanup(ns, base):
    old = run_batch_job(ns["data"], "count", job_id="old-job")
    new = run_batch_job(ns["data"], "count", job_id="new-job")
    _age(Path(old.output_uri), days=2)
    assert run("cleanup", ns) == ["Cleaned up 1 job(s)", "Cleaned up 0 record(s)"]
    assert not Path(old.output_uri).exists() and Path(new.output_uri).exists()


# -- integration and troubleshooting -------------------------------------------------------------------------
def test_integration_with_a_service(ns):
    assert run("integration-service", ns) == ["1000"]
    anomalies = ns["job"].report["anomalies"]
    assert sorted(a["id"] for a in anomalies) == list(range(ROWS))


def test_distributed_with_a_sharded_job(ns, airflow_db):
    assert run("distributed", ns) == []
    dr = dag_test(ns["dag"])
    merged = summary(dr, "profile_everything.merge")
    assert merged["report"]["rows"] == ROWS and merged["extra"]["shards"] == 3
    shards = [ti for ti in dr.get_task_instances() if ti.task_id == "profile_everything.shard"]
    assert len(shards) == merged["extra"]["shards"]


def test_troubleshooting(ns):
    assert run("troubleshooting-overrides", ns) == ["50 8"]
    run("recovery-service", ns)
    lines = run("troubleshooting-failures", ns)
    assert sorted(lines) == [
        "Failure: processing - flaky: first attempt of rows 200-300",
        "Failure: processing - flaky: first attempt of rows 400-500",
    ]
    assert run("troubleshooting-recommendations", ns) == ["info"]


def test_debug_mode(ns, caplog, tmp_path):
    logger = logging.getLogger("airflow_batch_provider")
    level = logger.level
    try:
        assert run("debug-mode", ns) == []
        assert logger.getEffectiveLevel() == logging.DEBUG
        run_batch_job(ns["data"], "count", config={"batch_size": 500}, output_path=tmp_path / "dbg")
        debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert sum("done by worker pid" in m for m in debug) == 2
        assert any(m.startswith("checkpoint ") for m in debug)
    finally:
        logger.setLevel(level)
