"""What the browser tests share: Debian's chromium driven by Playwright (``executable_path``), a real Airflow
started on 127.0.0.1 by scripts/local_airflow.py with the SimpleAuthManager in multi-team mode, and a login
through Airflow's own login page. The fixtures ``browser`` and ``screens`` are in conftest.py.

Per-DAG authorization: the DAG bundle belongs to team ``alpha``; ``alice`` (viewer, team alpha) may read its
DAGs, ``bob`` (viewer, team beta) may not; ``admin`` may do anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BATCH_PROVIDER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERS = "admin:admin,alice:viewer:alpha,bob:viewer:beta"


def skip_without_browser() -> None:
    """Skip the calling test module (with the reason) when Playwright or chromium is missing."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed (pip install -e '.[test]')", allow_module_level=True)
    if not (shutil.which(CHROMIUM) or os.access(CHROMIUM, os.X_OK)):
        pytest.skip(
            f"no browser at {CHROMIUM}: apt-get install chromium (or set BATCH_PROVIDER_CHROMIUM)",
            allow_module_level=True,
        )


def launcher() -> Any:
    spec = importlib.util.spec_from_file_location("local_airflow", ROOT / "scripts" / "local_airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def team_airflow(
    home: Path, dag_files: Mapping[str, str], extra_env: Mapping[str, str] = ()
) -> Iterator[Any]:
    """A running Airflow (api-server, scheduler, DAG processor) in ``home`` with ``dag_files`` (name -> text)
    in a DAG bundle of team ``alpha``, the teams ``alpha`` and ``beta`` and the users of ``USERS``."""
    dags = home / "dags"
    dags.mkdir()
    for name, text in dag_files.items():
        (dags / name).write_text(text)
    (home / "batch").mkdir()
    bundle = {
        "name": "dags-folder",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(dags)},
        "team_name": "alpha",
    }
    env = {
        "AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(home / "batch"),
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
        **dict(extra_env),
    }
    af = launcher().LocalAirflow(home, dags, parallelism=2, extra_env=env)
    for command in (["db", "migrate"], ["teams", "create", "alpha"], ["teams", "create", "beta"]):
        done = subprocess.run(
            [af.airflow_bin, *command], env=af.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (
            f"airflow {' '.join(command)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    with af:
        yield af


def login(browser: Any, airflow: Any, user: str) -> tuple[Any, Any, list[str]]:
    """A browser context logged in through Airflow's own login form (the UI sets its ``_token`` cookie);
    returns (context, page, the messages of any JavaScript dialog, which must stay empty)."""
    password = json.loads((airflow.home / "simple_auth_manager_passwords.json.generated").read_text())[user]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{airflow.base_url}/auth/login", wait_until="networkidle")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=60_000)
    assert "_token" in {c["name"] for c in context.cookies()}
    return context, page, dialogs
