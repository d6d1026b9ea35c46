"""``make demo``'s script, run as make runs it: it succeeds, prints every path whole, and the task logs it
points at hold the tasks' log lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_whole_paths_and_its_task_logs_are_where_it_says(tmp_path):
    home = tmp_path / "a-rather-long-folder-name-for-the-demo-home" / ("x" * 60) / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--home", str(home), "--rows", "3000"],
        capture_output=True, text=True, env=env, timeout=400, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # the job folders, printed whole (they are longer than 200 characters here), exist and are committed
    folders = re.findall(r"output folder: (\S+)", out)
    assert len(folders) == 2 and all(len(f) > 200 for f in folders), folders
    for folder in folders:
        assert (Path(folder) / "_manifest.json").exists() and (Path(folder) / "_SUCCESS").exists()
    completed = [line for line in out.splitlines() if "completed: 100.0%" in line]
    assert len(completed) == 2 and all(line.rstrip().endswith(tuple(folders)) for line in completed), (
        completed
    )
    # the task logs: where the last lines say, one file per task, holding that task's own lines
    (where,) = re.findall(r"Task logs of this run: (\S+)/ \(", out)
    logs = {p.name: p.read_text() for p in Path(where).glob("*.log")}
    assert sorted(logs) == ["demo_data.log", "enrich.log", "summarize.log"]
    assert "batch job done: 3000 rows in, 3000 rows out" in logs["enrich.log"]
    assert "batch job done: 3000 rows in, 0 rows out" in logs["summarize.log"]
    assert "batch job done" not in logs["demo_data.log"]
    (whole,) = re.findall(r"the whole run: (\S+)", out)
    assert all(text in Path(whole).read_text() for text in logs.values())
