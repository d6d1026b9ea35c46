"""Alerts: thresholds evaluated on resource samples and progress events, one alert per condition.

A condition fires once, stays active while it holds, and clears when it stops holding; only then can it
fire again. Every new alert goes to the log and to each alert callback.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_provider.engine.progress import RecordView
from airflow_batch_provider.exceptions import ConfigError

log = logging.getLogger("airflow_batch_provider.monitoring")

WARNING = "warning"
CRITICAL = "critical"
#: the thresholds ``AlertRules`` takes, and so the keys of an ``alert_rules={...}`` mapping
THRESHOLDS = (
    "memory_limit_mb",
    "memory_fraction",
    "cpu_saturation_percent",
    "cpu_sustained_s",
    "throughput_drop_ratio",
    "min_rate_events",
    "failure_rate",
    "min_failures",
    "timeout_seconds",
)
_NOT_NONE = ("memory_fraction", "cpu_sustained_s", "min_rate_events", "min_failures")


@dataclass(frozen=True)
class Alert(RecordView):
    """A crossed threshold. Readable as attributes or as ``alert["key"]``; ``condition`` names the rule."""

    level: str
    title: str
    message: str
    metric: str
    value: float
    threshold: float
    job_id: str = ""
    condition: str = ""
    time: float = field(default_factory=time.time)


def _when(stamp: Any) -> float:
    return time.time() if stamp is None else float(stamp)


@dataclass
class _EventState:
    started: float | None = None
    last_time: float | None = None
    last_rows: int = 0
    retries: int = 0
    rate_events: int = 0


class AlertRules:
    """Thresholds of one job. A threshold set to ``None`` is off.

    :param memory_limit_mb: the job's memory limit; with ``memory_fraction`` the memory threshold.
    :param memory_fraction: fire when the process tree's memory passes this fraction of the limit.
    :param cpu_saturation_percent: CPU of the tree over the usable cores that counts as saturated...
    :param cpu_sustained_s: ...when it lasts this many seconds.
    :param throughput_drop_ratio: fire when the rate between two progress events falls below this
        fraction of the job's running average (after ``min_rate_events`` events)...
    :param failure_rate: fire when retries (and skipped rows, if events report ``rows_skipped``) pass
        this fraction of chunks (rows) handled, after at least ``min_failures`` retries.
    :param timeout_seconds: fire when elapsed time + ETA passes it.
    :param callbacks: callables receiving each new :class:`Alert`.
    """

    def __init__(
        self,
        job_id: str = "",
        *,
        memory_limit_mb: float | None = None,
        memory_fraction: float = 0.85,
        cpu_saturation_percent: float | None = 95.0,
        cpu_sustained_s: float = 60.0,
        throughput_drop_ratio: float | None = 0.3,
        min_rate_events: int = 3,
        failure_rate: float | None = 0.1,
        min_failures: int = 2,
        timeout_seconds: float | None = None,
        callbacks: Iterable[Callable[[Alert], Any]] = (),
    ) -> None:
        self.job_id = job_id
        self.memory_limit_mb = memory_limit_mb
        self.memory_fraction = memory_fraction
        self.cpu_saturation_percent = cpu_saturation_percent
        self.cpu_sustained_s = cpu_sustained_s
        self.throughput_drop_ratio = throughput_drop_ratio
        self.min_rate_events = min_rate_events
        self.failure_rate = failure_rate
        self.min_failures = min_failures
        self.timeout_seconds = timeout_seconds
        self.callbacks = list(callbacks)
        self.active: dict[str, Alert] = {}
        self._cpu_since: float | None = None
        self._ev = _EventState()

    @classmethod
    def from_value(
        cls,
        value: AlertRules | Mapping[str, Any] | None,
        job_id: str = "",
        *,
        config: Any = None,
        callbacks: Iterable[Callable[[Alert], Any]] = (),
    ) -> AlertRules:
        """New rules for one job run (never shared state between runs).

        :param value: ``None`` (the defaults), an :class:`AlertRules` (its thresholds and callbacks are copied,
            not its state), or a mapping of thresholds (keys from :data:`THRESHOLDS`).
        :param job_id: the job's id, unless ``value`` names one.
        :param config: a ``BatchConfig``; its ``memory_limit_mb`` and ``timeout_seconds`` are the defaults of
            the same-named thresholds.
        :param callbacks: more callables receiving each new :class:`Alert`.
        """
        defaults = {
            "memory_limit_mb": getattr(config, "memory_limit_mb", None),
            "timeout_seconds": getattr(config, "timeout_seconds", None),
        }
        if isinstance(value, AlertRules):
            settings = {key: getattr(value, key) for key in THRESHOLDS}
            return cls(value.job_id or job_id, **settings, callbacks=[*value.callbacks, *callbacks])
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(
                f"alert_rules must be an AlertRules or a mapping of thresholds, not {type(value).__name__}"
            )
        settings = dict(value or {})
        unknown = sorted(set(settings) - set(THRESHOLDS))
        if unknown:
            raise ConfigError(f"alert_rules: unknown threshold(s) {unknown}; use {', '.join(THRESHOLDS)}")
        for key, number in settings.items():
            if number is None and key not in _NOT_NONE:
                continue
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ConfigError(
                    f"alert_rules: {key}={number!r} is not a number; give a number or None (off)"
                )
            if number < 0:
                raise ConfigError(f"alert_rules: {key}={number!r} must not be negative")
        return cls(job_id, **{**defaults, **settings}, callbacks=callbacks)

    @property
    def memory_threshold_mb(self) -> float | None:
        """The memory (MB) above which the memory rule fires; None when the rule is off."""
        return self.memory_limit_mb * self.memory_fraction if self.memory_limit_mb else None

    # -- inputs --------------------------------------------------------------------------------------
    def on_sample(self, sample: Any) -> list[Alert]:
        """Evaluate the resource thresholds on a sample (attributes or keys of a ResourceSample)."""
        fired = [self._memory(sample), self._cpu(sample)]
        return [a for a in fired if a is not None]

    def on_event(self, event: Any) -> list[Alert]:
        """Evaluate the progress thresholds on a ProgressEvent (or a dict with the same keys)."""
        get = event.get
        now = _when(get("timestamp"))
        kind = get("event_type")
        if kind == "started" or self._ev.started is None:
            self._ev.started = now
        if kind == "retry":
            self._ev.retries += 1
        fired = [self._failures(event)]
        if kind in ("progress", "checkpoint"):
            fired += [self._throughput(event, now), self._timeout(event, now)]
        rows = int(get("rows_processed") or 0)
        if kind == "started" or rows > self._ev.last_rows:  # the rate is measured between row increases
            self._ev.last_time, self._ev.last_rows = now, rows
        return [a for a in fired if a is not None]

    # -- rules ---------------------------------------------------------------------------------------
    def _memory(self, sample: Any) -> Alert | None:
        if not self.memory_limit_mb or self.memory_fraction is None:
            return None
        pss = sample.get("pss_mb")
        used = pss or sample.get("rss_mb") or 0.0
        limit_mb = float(self.memory_limit_mb)
        limit = limit_mb * self.memory_fraction
        return self._check(
            "memory",
            used > limit,
            lambda: self._alert(
                CRITICAL if used > limit_mb else WARNING,
                "memory near the limit",
                f"process tree uses {used:,.0f} MB ({'PSS' if pss else 'RSS'}), over {self.memory_fraction:.0%} of "
                f"memory_limit_mb={self.memory_limit_mb:,.0f}",
                "memory_mb",
                used,
                limit,
                "memory",
            ),
        )

    def _cpu(self, sample: Any) -> Alert | None:
        if self.cpu_saturation_percent is None:
            return None
        busy = float(sample.get("cpu_saturation") or 0.0)
        now = _when(sample.get("time"))
        if busy < self.cpu_saturation_percent:
            self._cpu_since = None
        elif self._cpu_since is None:
            self._cpu_since = now
        lasting = self._cpu_since is not None and now - self._cpu_since >= self.cpu_sustained_s
        return self._check(
            "cpu",
            lasting,
            lambda: self._alert(
                WARNING,
                "CPU saturated",
                f"CPU at {busy:.0f}% of the usable cores for {now - (self._cpu_since or now):.0f}s",
                "cpu_saturation",
                busy,
                self.cpu_saturation_percent,
                "cpu",
            ),
        )

    def _throughput(self, event: Any, now: float) -> Alert | None:
        ev = self._ev
        average = float(event.get("rows_per_second") or 0.0)
        rows = int(event.get("rows_processed") or 0)
        if self.throughput_drop_ratio is None or ev.last_time is None or now <= ev.last_time:
            return None
        if rows <= ev.last_rows:  # e.g. a checkpoint right after a progress event: no new rows to rate
            return None
        ev.rate_events += 1
        rate = (rows - ev.last_rows) / (now - ev.last_time)
        floor = average * self.throughput_drop_ratio
        slow = ev.rate_events >= self.min_rate_events and average > 0 and rate < floor
        return self._check(
            "throughput",
            slow,
            lambda: self._alert(
                WARNING,
                "throughput dropped",
                f"{rate:,.0f} rows/s since the last update, below {self.throughput_drop_ratio:.0%} of "
                f"the job's average {average:,.0f} rows/s",
                "rows_per_second",
                rate,
                floor,
                "throughput",
            ),
        )

    def _failures(self, event: Any) -> Alert | None:
        if self.failure_rate is None:
            return None
        chunks = int(event.get("chunks_done") or 0) + self._ev.retries
        rate = self._ev.retries / chunks if chunks else 0.0
        extra = event.get("extra") or {}
        skipped = int(extra.get("rows_skipped") or 0)
        rows = int(event.get("rows_processed") or 0)
        skip_rate = skipped / rows if rows else 0.0
        value, metric = max((rate, "retry_rate"), (skip_rate, "skip_rate"))
        firing = value > self.failure_rate and (self._ev.retries >= self.min_failures or skipped > 0)
        return self._check(
            "failures",
            firing,
            lambda: self._alert(
                WARNING,
                "failure rate high",
                f"{self._ev.retries} chunk retries in {chunks} attempts, {skipped:,} rows skipped "
                f"({metric} {value:.1%} over {self.failure_rate:.1%})",
                metric,
                value,
                self.failure_rate,
                "failures",
            ),
        )

    def _timeout(self, event: Any, now: float) -> Alert | None:
        eta = event.get("eta_seconds")
        if not self.timeout_seconds or eta is None or self._ev.started is None:
            return None
        projected = now - self._ev.started + float(eta)
        return self._check(
            "timeout",
            projected > self.timeout_seconds,
            lambda: self._alert(
                CRITICAL,
                "job will miss its timeout",
                f"projected to finish after {projected:,.0f}s, beyond timeout_seconds="
                f"{self.timeout_seconds:,.0f}",
                "projected_seconds",
                projected,
                self.timeout_seconds,
                "timeout",
            ),
        )

    # -- de-duplication and delivery -------------------------------------------------------------------
    def _alert(
        self,
        level: str,
        title: str,
        message: str,
        metric: str,
        value: float,
        threshold: float | None,
        condition: str,
    ) -> Alert:
        return Alert(
            level,
            title,
            message,
            metric,
            round(float(value), 3),
            float(threshold or 0.0),
            self.job_id,
            condition,
        )

    def _check(self, condition: str, firing: bool, make: Callable[[], Alert]) -> Alert | None:
        if not firing:
            cleared = self.active.pop(condition, None)
            if cleared is not None:
                log.info("alert cleared for job %s: %s", self.job_id, cleared.title)
            return None
        if condition in self.active:
            return None
        alert = make()
        self.active[condition] = alert
        self.deliver(alert)
        return alert

    def deliver(self, alert: Alert) -> None:
        (log.error if alert.level == CRITICAL else log.warning)(
            "ALERT %s [%s] job %s: %s", alert.title, alert.level, alert.job_id, alert.message
        )
        for cb in self.callbacks:
            try:
                cb(alert)
            except Exception:  # a broken callback must not break the job
                log.exception("alert callback %r failed on %r", cb, alert.title)
