"""BatchRetryPolicy under dag.test() with retries=2: corrupt data fails on try 1, a network fault retries."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.retry_policy import BatchRetryPolicy
from tests.integration.conftest import serialize

pytestmark = pytest.mark.integration


class CorruptChunk(Exception):
    """What the engine raises after a chunk's bytes could not be decoded (the class is declared)."""

    failure_class = "data_corruption"


class FaultyOnce(BatchJobOperator):
    """A batch job whose first ``faulty_tries`` tries raise ``fault`` before doing any work."""

    def __init__(self, *, fault: type[BaseException], faulty_tries: int, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.fault, self.faulty_tries, self.marker = fault, faulty_tries, marker

    def execute(self, context):
        with open(self.marker, "a") as fh:
            fh.write(f"{context['ti'].try_number}\n")
        if context["ti"].try_number <= self.faulty_tries:
            raise self.fault("injected fault")
        return super().execute(context)


def run(tmp_path, name, fault, faulty_tries, make_parquet, **kwargs):
    from tests.conftest import sample_frame

    make_parquet(sample_frame(300, seed=1), "a.parquet")
    marker = tmp_path / f"{name}.tries"
    with DAG(name, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        FaultyOnce(
            task_id="job",
            source=str(tmp_path / "src"),
            processor="passthrough",
            output_path=str(tmp_path / f"{name}-out"),
            fault=fault,
            faulty_tries=faulty_tries,
            marker=str(marker),
            retries=2,
            retry_delay=0,
            **kwargs,
        )
    dr = serialize(dag).test()
    return dr, [int(t) for t in marker.read_text().split()]


def test_corrupt_data_fails_on_try_one_despite_retries(airflow_db, tmp_path, make_parquet):
    dr, tries = run(tmp_path, "policy_corrupt", CorruptChunk, 3, make_parquet)
    ti = dr.get_task_instance("job")
    assert dr.state == "failed" and ti.state == "failed"
    assert tries == [1] and ti.try_number == 1


def test_network_fault_retries_then_succeeds(airflow_db, tmp_path, make_parquet):
    dr, tries = run(
        tmp_path,
        "policy_network",
        ConnectionResetError,
        1,
        make_parquet,
        retry_policy=BatchRetryPolicy(network_retry_delay=0),  # a real delay would make dag.test wait
    )
    assert dr.state == "success" and tries == [1, 2]
    assert dr.get_task_instance("job").xcom_pull(task_ids="job")["rows_out"] == 300


def test_other_failures_use_every_retry(airflow_db, tmp_path, make_parquet):
    dr, tries = run(tmp_path, "policy_processing", ValueError, 3, make_parquet)
    assert dr.state == "failed" and tries == [1, 2, 3]
