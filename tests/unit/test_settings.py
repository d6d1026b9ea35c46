"""One base path for everybody: the engine, the CLI, the operators and the dashboard resolve the same folder,
whichever of the old and the new variable is set (the old one is deprecated and loses to the new one)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from airflow_batch_provider import settings
from airflow_batch_provider.cli import main, resolve_base_path
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.engine.runner import default_base_path
from airflow_batch_provider.get_provider_info import get_provider_info
from airflow_batch_provider.monitoring.dashboard import get_monitoring_dashboard_data
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.plugins.dashboard import _base_path as dashboard_base_path
from tests.unit.operators.task_context import FakeTI, context

NEW, OLD = "AIRFLOW__BATCH_PROVIDER__BASE_PATH", "AIRFLOW_BATCH_PROVIDER_BASE_PATH"


@pytest.fixture
def source(make_parquet):
    return make_parquet(pd.DataFrame({"a": range(50), "b": [None, 1.5] * 25}))


def _all_resolvers(source, tmp_path):
    """What each component uses as its base path, and where it really wrote or read."""
    result = run_batch_job(str(source), "count", job_id="engine-job")
    op = BatchJobOperator(task_id="job", source=str(source), processor="count")
    summary = op.execute(context(FakeTI()))
    return {
        "engine": default_base_path(),
        "engine_output": result.output_uri,
        "operator_output": summary["output_uri"],
        "cli": resolve_base_path(),
        "dashboard": str(dashboard_base_path()),
        "dashboard_records": get_monitoring_dashboard_data(dashboard_base_path())["records_root"],
    }


def test_both_variables_set_to_different_folders_everybody_uses_the_new_one(
    source, tmp_path, monkeypatch, capsys
):
    new, old = tmp_path / "new", tmp_path / "old"
    monkeypatch.setenv(NEW, str(new))
    monkeypatch.setenv(OLD, str(old))
    with pytest.warns(DeprecationWarning, match=f"{OLD}=.* is ignored"):
        seen = _all_resolvers(source, tmp_path)
    assert seen["engine"] == seen["cli"] == seen["dashboard"] == str(new)
    assert seen["engine_output"].startswith(str(new) + "/")
    assert seen["operator_output"].startswith(str(new) + "/")
    assert seen["dashboard_records"].endswith(str(new / "_records"))
    capsys.readouterr()
    with pytest.warns(DeprecationWarning):
        assert main(["failures", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(new / "_records")
    assert not old.exists()


def test_the_old_variable_alone_still_works_for_everybody_with_a_deprecation_warning(
    source, tmp_path, monkeypatch, capsys
):
    old = tmp_path / "old"
    monkeypatch.delenv(NEW, raising=False)
    monkeypatch.setenv(OLD, str(old))
    with pytest.warns(DeprecationWarning, match=f"{OLD} is deprecated"):
        seen = _all_resolvers(source, tmp_path)
    assert seen["engine"] == seen["cli"] == seen["dashboard"] == str(old)
    assert seen["operator_output"].startswith(str(old) + "/")
    assert seen["engine_output"].startswith(str(old) + "/")


def test_nothing_set_means_airflow_home_and_no_warning(tmp_path, monkeypatch):
    monkeypatch.delenv(NEW, raising=False)
    monkeypatch.delenv(OLD, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_base_path() == resolve_base_path() == str(tmp_path / "home" / "batch_provider")
    assert resolve_base_path("/explicit") == "/explicit"


def test_the_provider_config_is_the_settings_table():
    options = get_provider_info()["config"]["batch_provider"]["options"]
    assert list(options) == list(settings.OPTIONS)
    assert {k: v["default"] for k, v in options.items()} == {
        k: o.default for k, o in settings.OPTIONS.items()
    }
    with pytest.raises(KeyError, match="has no option 'bse_path'"):
        settings.option("bse_path")


def test_cli_reads_records_written_by_a_job_under_the_shared_base(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(NEW, str(tmp_path / "b"))
    FailureRecords(tmp_path / "b" / "_records").add({"class": "network", "ts": 1_700_000_000.0})
    assert main(["failures", "--json", "--hours", str(24 * 365 * 100)]) == 0
    assert json.loads(capsys.readouterr().out)["statistics"]["total"] == 1
