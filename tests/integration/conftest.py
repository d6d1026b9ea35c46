from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB in the session's private AIRFLOW_HOME."""
    from airflow.utils import db

    db.resetdb()
    return True


def serialize(dag):
    """dag.test() needs the DAG serialized in the DB (inline DAGs are not in the dags folder)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    """Where browser tests save screenshots: ``$BATCH_PROVIDER_SCREENSHOTS``, else a pytest temporary folder
    (printed, so a run's artifacts can be found)."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("BATCH_PROVIDER_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")  # noqa: T201 - where the artifacts are, for the run's note
    return folder


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright (tests/integration/browser.py skips a module without them)."""
    from playwright.sync_api import sync_playwright

    from tests.integration.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
