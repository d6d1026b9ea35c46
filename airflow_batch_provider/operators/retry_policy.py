"""``BatchRetryPolicy``: between Airflow tries, fail fast on bad data, retry network faults with jitter.

Inside one try the engine already retries, splits and quarantines (see ``engine/failures.py``); this policy
decides what Airflow does once a try has failed. It uses the engine's classifier, so the classes are the
same: ``data_corruption`` and ``configuration`` (and every ``BatchInputError``, ``DeterministicProcessorError`` included: a bug in
the processor) fails the task now, because a retry would read the same bytes or run the same code; ``network`` retries with an exponential, jittered delay; every other class follows the task's
own ``retries`` and ``retry_delay``. A policy can fail early or change the delay, never add retries.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import RetryDecision, RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Context

FAIL_FAST = ("data_corruption", "configuration")


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def jittered_delay(try_number: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """``base * 2^(try-1)`` capped at ``max``, then a random point in its upper half (never below half)."""
    from airflow_batch_provider.storage import backoff_delay

    return backoff_delay(try_number, base_s, max_s, jitter=0.5, rng=rng)


class BatchRetryPolicy(RetryPolicy):
    """The default retry policy of the batch operators.

    :param network_retry_delay: first delay after a network failure (doubles each try, then jittered).
    :param network_max_delay: cap of the network delay.
    :param fail_fast_classes: failure classes that fail the task without retrying.

    Pass ``retry_policy=ExceptionRetryPolicy(rules=[])`` to an operator to get plain Airflow retries.
    """

    def __init__(
        self,
        network_retry_delay: timedelta | float = timedelta(seconds=15),
        network_max_delay: timedelta | float = timedelta(minutes=5),
        fail_fast_classes: Iterable[str] = FAIL_FAST,
    ) -> None:
        self.network_retry_delay = _seconds(network_retry_delay)
        self.network_max_delay = _seconds(network_max_delay)
        self.fail_fast_classes = tuple(str(c) for c in fail_fast_classes)

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        from airflow_batch_provider.engine.failures import classify
        from airflow_batch_provider.exceptions import BatchInputError

        kind = classify(exception).value
        name = type(exception).__name__
        if kind in self.fail_fast_classes or isinstance(exception, BatchInputError):
            return RetryDecision.fail(reason=f"{kind} failure ({name}): a retry would fail the same way")
        if kind == "network":
            delay = jittered_delay(try_number, self.network_retry_delay, self.network_max_delay)
            return RetryDecision.retry(
                delay=timedelta(seconds=delay), reason=f"network failure ({name}): retry in {delay:.0f}s"
            )
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {
            "__type": "BatchRetryPolicy",
            "network_retry_delay": self.network_retry_delay,
            "network_max_delay": self.network_max_delay,
            "fail_fast_classes": list(self.fail_fast_classes),
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> BatchRetryPolicy:
        return cls(
            network_retry_delay=data.get("network_retry_delay", 15.0),
            network_max_delay=data.get("network_max_delay", 300.0),
            fail_fast_classes=data.get("fail_fast_classes", FAIL_FAST),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchRetryPolicy) and self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.network_retry_delay, self.network_max_delay, self.fail_fast_classes))

    def __repr__(self) -> str:
        return (
            f"BatchRetryPolicy(network_retry_delay={self.network_retry_delay:g}, "
            f"network_max_delay={self.network_max_delay:g}, fail_fast_classes={self.fail_fast_classes!r})"
        )
