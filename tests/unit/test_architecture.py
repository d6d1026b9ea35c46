"""The import layering of docs/architecture.md, enforced with import-linter (``.importlinter``): layers only
point down, and nothing below the operators imports Airflow. import-linter also sees imports inside
functions. The contracts are checked on the package as it is, and shown to fail on a copy with a deliberately
added upward import and on one with an Airflow import in a processor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def flat(result: subprocess.CompletedProcess) -> str:
    """The report with its terminal line wrapping undone."""
    return " ".join(result.stdout.split())


@pytest.fixture
def package_copy(tmp_path):
    shutil.copytree(ROOT / "airflow_batch_provider", tmp_path / "airflow_batch_provider",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_the_package_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(package_copy):
    (package_copy / "airflow_batch_provider" / "engine" / "_upward.py").write_text(
        "def f():\n    from airflow_batch_provider.operators import batch  # inside a function: still seen\n"
    )
    result = lint(package_copy)
    assert result.returncode != 0
    assert "airflow_batch_provider.engine._upward -> airflow_batch_provider.operators.batch" in flat(result)


def test_airflow_in_a_processor_breaks_the_forbidden_contract(package_copy):
    (package_copy / "airflow_batch_provider" / "processors" / "_leak.py").write_text("import airflow.sdk\n")
    result = lint(package_copy)
    assert result.returncode != 0
    assert "airflow_batch_provider.processors._leak -> airflow" in flat(result)
