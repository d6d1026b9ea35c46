"""``airflow-batch``: --version, unknown processor names, exact vs estimated row counts, and the base path the
commands read (said in their output, also when nothing is there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.cli import main
from airflow_batch_provider.engine.records import FailureRecords

ENV = "AIRFLOW__BATCH_PROVIDER__BASE_PATH"


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "x": rng.random(n), "s": rng.choice(["a", "bb", "ccc c"], n)})


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"airflow-batch {version('airflow-batch-provider')}"


@pytest.fixture
def parquet_folder(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    for i, n in enumerate((30_011, 20_000, 7)):
        pq.write_table(pa.Table.from_pandas(frame(n, i), preserve_index=False), folder / f"p{i}.parquet",
                       row_group_size=4_096)  # fmt: skip
    return folder


def recommend(capsys, *argv):
    code = main(["recommend", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_unknown_processor_is_refused_with_the_close_match(parquet_folder, capsys):
    code, out, err = recommend(capsys, str(parquet_folder), "--processor", "data_profilling")
    assert code == 2 and out == ""
    assert "unknown processor 'data_profilling'; did you mean 'data_profiling'?" in err
    code, _, err = recommend(capsys, str(parquet_folder), "--processor", "no_such_pkg.mod:Proc")
    assert code == 2 and "'no_such_pkg.mod:Proc' could not be imported" in err
    # known names and import paths are accepted
    assert recommend(capsys, str(parquet_folder), "--processor", "data_profiling")[0] == 0
    path = "airflow_batch_provider.processors.data_quality:DataQualityProcessor"
    assert recommend(capsys, str(parquet_folder), "--processor", path)[0] == 0


def test_parquet_row_counts_are_exact(parquet_folder, capsys):
    code, out, _ = recommend(capsys, str(parquet_folder), "--processor", "count")
    assert code == 0 and "for 50,018 rows\n" in out and "50,018 rows in total" in out
    assert "about 50,018" not in out and "(estimate" not in out
    code, out, _ = recommend(capsys, str(parquet_folder), "--processor", "count", "--json")
    rec = json.loads(out)["recommendation"]
    assert rec["total_rows"] == 50_018 and rec["total_rows_exact"] is True


def test_text_row_counts_beyond_the_first_file_are_labelled_estimates(tmp_path, capsys):
    folder = tmp_path / "csv"
    folder.mkdir()
    sizes = (40_000, 20_003, 9_999)
    for i, n in enumerate(sizes):
        frame(n, i).to_csv(folder / f"c{i}.csv", index=False)
    code, out, _ = recommend(capsys, str(folder / "c1.csv"), "--processor", "count")
    assert (
        code == 0 and "for 20,003 rows\n" in out and "(estimate" not in out
    )  # one text file: indexed, exact
    code, out, _ = recommend(capsys, str(folder), "--processor", "count")
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if "estimated duration" in ln]
    assert line.endswith(" rows (estimated)") and " for about " in line
    assert "(estimate: the rows of 2 text file(s) after the first are extrapolated from their size" in out
    code, out, _ = recommend(capsys, str(folder), "--processor", "count", "--json")
    rec = json.loads(out)["recommendation"]
    assert rec["total_rows_exact"] is False and rec["total_rows"] != sum(sizes)  # an estimate, said so


def test_failures_says_which_base_path_it_read(tmp_path, monkeypatch, capsys):
    base = tmp_path / "configured"
    FailureRecords(base / "_records").add({"class": "network", "strategy": "retry_jitter", "recovered": True})
    monkeypatch.setenv(ENV, str(base))
    assert main(["failures"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        f"Failures in the last 24 h under {base}/_records",
        f"  base path from {ENV}",
    ]
    assert "total 1, recovered 1" in out and "no records folder" not in out


def test_failures_with_nothing_configured_says_so_instead_of_a_bare_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ENV)
    monkeypatch.delenv("AIRFLOW_BATCH_PROVIDER_BASE_PATH", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert main(["failures"]) == 0
    out = capsys.readouterr().out
    assert f"under {tmp_path / 'home' / 'batch_provider'}/_records" in out
    assert f"base path from the default $AIRFLOW_HOME/batch_provider (AIRFLOW_HOME={tmp_path / 'home'}" in out
    assert "no records folder there" in out
    assert main(["failures", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["root_exists"] is False and payload["base_path_from"].startswith("the default")
    assert main(["cleanup", "--dry-run", "--base", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "  base path from --base\n" in out and "no records folder there" in out


def test_the_base_path_from_airflow_cfg_is_named(tmp_path):
    """A real console run reading ``[batch_provider] base_path`` from $AIRFLOW_HOME/airflow.cfg."""
    home, base = tmp_path / "home", tmp_path / "from-cfg"
    home.mkdir()
    (home / "airflow.cfg").write_text(f"[batch_provider]\nbase_path = {base}\n")
    FailureRecords(base / "_records").add({"class": "memory", "strategy": "split", "recovered": True})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_batch_provider.cli", "failures"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"under {base}/_records" in proc.stdout and "total 1, recovered 1" in proc.stdout
    assert f"base path from [batch_provider] base_path in the Airflow configuration ({home}/airflow.cfg)" in (
        proc.stdout
    )


def test_status_says_which_base_path_it_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, str(tmp_path / "jobs"))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'jobs'}" in out and f"({ENV})" in out
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["base_path_from"] == ENV
    assert main(["status", "--base", str(tmp_path / "other"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["base_path_from"] == "--base"
