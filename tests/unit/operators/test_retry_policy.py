"""BatchRetryPolicy decisions per failure class, its serialization, and the operators' default wiring."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from airflow.sdk import DAG, ExceptionRetryPolicy, RetryAction

from airflow_batch_provider.exceptions import ChunkFailedError, DataCorruptionError, SourceError
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.data_quality import DataQualityOperator
from airflow_batch_provider.operators.retry_policy import BatchRetryPolicy, jittered_delay


class Declared(Exception):
    def __init__(self, failure_class):
        super().__init__("declared")
        self.failure_class = failure_class


@pytest.mark.parametrize(
    "exc",
    [
        DataCorruptionError("bad bytes"),
        SourceError("no such file"),  # every BatchInputError: retrying cannot fix it
        Declared("data_corruption"),
        RuntimeError("wrapped"),  # with a data_corruption cause, below
    ],
)
def test_bad_data_fails_now(exc):
    if type(exc) is RuntimeError:
        exc.__cause__ = Declared("data_corruption")
    decision = BatchRetryPolicy().evaluate(exc, try_number=1, max_tries=3)
    assert decision.action is RetryAction.FAIL and "data_corruption" in decision.reason


@pytest.mark.parametrize("exc", [ConnectionResetError("reset"), Declared("network"), TimeoutError("read")])
def test_network_retries_with_a_jittered_growing_delay(exc):
    policy = BatchRetryPolicy(network_retry_delay=10, network_max_delay=timedelta(seconds=60))
    delays = {
        n: policy.evaluate(exc, try_number=n, max_tries=9).retry_delay.total_seconds() for n in (1, 3, 9)
    }
    assert policy.evaluate(exc, 1, 9).action is RetryAction.RETRY
    assert 5 <= delays[1] <= 10 and 20 <= delays[3] <= 40 and 30 <= delays[9] <= 60


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("x"),
        MemoryError(),
        Declared("system"),
        Declared("timeout"),
        ChunkFailedError("c", chunk="f0"),
    ],
)
def test_other_classes_follow_the_task_retries(exc):
    assert BatchRetryPolicy().evaluate(exc, try_number=1, max_tries=3).action is RetryAction.DEFAULT


def test_jitter_spreads_delays_and_stays_in_bounds():
    rng = random.Random(7)
    samples = [jittered_delay(2, 10, 300, rng) for _ in range(200)]
    assert all(10 <= s <= 20 for s in samples) and max(samples) - min(samples) > 5


def test_serialize_round_trip_and_custom_fail_fast():
    policy = BatchRetryPolicy(
        network_retry_delay=timedelta(seconds=3), fail_fast_classes=["data_corruption", "system"]
    )
    data = policy.serialize()
    assert data["__type"] == "BatchRetryPolicy" and data["network_retry_delay"] == 3.0
    assert BatchRetryPolicy.deserialize(data) == policy
    assert policy.evaluate(Declared("system"), 1, 3).action is RetryAction.FAIL


def test_batch_operators_use_it_by_default_and_respect_the_users_choice():
    custom = ExceptionRetryPolicy(rules=[])
    with DAG("d", schedule=None, default_args={"retry_policy": custom}) as dag_with_default:
        from_default_args = BatchJobOperator(task_id="a", source="/x", processor="count")
    with DAG("d2", schedule=None):
        plain = BatchJobOperator(task_id="b", source="/x", processor="count")
        given = BatchJobOperator(task_id="c", source="/x", processor="count", retry_policy=custom)
        quality = DataQualityOperator(task_id="q", source="/x", rules=[])
    assert isinstance(plain.retry_policy, BatchRetryPolicy) and plain.has_retry_policy
    assert isinstance(quality.retry_policy, BatchRetryPolicy)
    assert given.retry_policy is custom and from_default_args.retry_policy is custom
    assert dag_with_default.task_dict["a"] is from_default_args


def test_a_deterministic_processor_error_is_not_retried():
    from airflow_batch_provider.exceptions import DeterministicProcessorError

    err = DeterministicProcessorError("processor p failed on f rows 0-10", chunk="f rows 0-10", processor="p")
    err.__cause__ = TypeError("helper() got an unexpected keyword argument 'vat_rate'")
    decision = BatchRetryPolicy().evaluate(err, try_number=1, max_tries=3)
    assert decision.action is RetryAction.FAIL and "DeterministicProcessorError" in decision.reason
