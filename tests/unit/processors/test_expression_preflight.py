"""Bad rule expressions fail before any chunk runs, not inside workers after four attempts per chunk (issue #18,
finding 7): nesting depth and the types an expression needs are checked against the source schema in
``DataQualityProcessor.validate``, which the engine calls once per job after planning."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.exceptions import BatchInputError


@pytest.fixture
def source(make_parquet):
    frame = pd.DataFrame({"a": range(1000), "name": [f"n{i}" for i in range(1000)]})
    return str(make_parquet(frame, "data.parquet", row_group_size=100))


@pytest.mark.parametrize(
    "expression, message",
    [
        ("-" * 3999 + "a", "nested"),  # a RecursionError inside the workers before
        (
            "abs(name) > 1",
            r"'abs\(name\)': abs\(\) does not work on text",
        ),  # an ArrowNotImplementedError inside the workers before
    ],
    ids=["deep", "abs of text"],
)
def test_a_bad_expression_fails_before_any_chunk(source, tmp_path, expression, message):
    records = tmp_path / "_records"
    with pytest.raises(BatchInputError, match=message):
        run_batch_job(
            source,
            "data_quality",
            config={"batch_size": 100, "max_concurrent_batches": 1},
            output_path=str(tmp_path / "out"),
            records_path=str(records),
            rules=[{"type": "expression", "expression": expression}],
        )
    found = list(FailureRecords(records).iter_records())
    assert [(r["chunk"], r["attempt"]) for r in found] == [(None, None)]  # one job-level failure, no chunk
    assert not list((tmp_path / "out").rglob("segments/*")) and not list((tmp_path / "out").rglob("parts/*"))
