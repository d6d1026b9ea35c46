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
