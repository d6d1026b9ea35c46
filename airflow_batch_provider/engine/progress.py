"""Progress events: one object per event, sent to the log (throttled) and to callbacks.

One progress per job: a job with a statistics pass runs two phases over the source ("statistics 1/2",
"processing 2/2"); its events carry the phase and one ``progress_percentage`` over both (each phase reads every
row once, so each counts for an equal share). Only the job's own ``started``, ``completed`` and ``failed`` are
terminal: a phase that is not the last one reports ``phase_started`` / ``phase_completed`` / ``phase_failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("airflow_batch_provider.progress")


class RecordView:
    """Dataclass records readable as attributes or, for dict-minded callbacks, as ``record["key"]``."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class ProgressEvent(RecordView):
    """A progress event. Readable as attributes or, for dict-minded callbacks, as ``event["key"]``."""

    event_type: str
    job_id: str
    progress_percentage: float
    rows_processed: int
    rows_total: int
    chunks_done: int
    chunks_total: int
    rows_per_second: float
    eta_seconds: float | None
    message: str = ""
    timestamp: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the phase this event belongs to (``statistics``, ``processing``), its 1-based index and the number of phases
    phase: str = "processing"
    phase_index: int = 1
    phases_total: int = 1
    #: the percentage of the current phase alone (``progress_percentage`` is over all phases)
    phase_percentage: float = 0.0

    @property
    def phase_label(self) -> str:
        """``"statistics 1/2"``; empty for a job of one phase."""
        return f"{self.phase} {self.phase_index}/{self.phases_total}" if self.phases_total > 1 else ""

    def line(self) -> str:
        eta = "-" if self.eta_seconds is None else _duration(self.eta_seconds)
        phase = f" | {self.phase_label} ({self.phase_percentage:.1f}%)" if self.phases_total > 1 else ""
        return (
            f"{self.event_type}: {self.progress_percentage:5.1f}%{phase}"
            f" | {self.rows_processed:,}/{self.rows_total:,} rows"
            f" | {self.chunks_done:,}/{self.chunks_total:,} chunks | {self.rows_per_second:,.0f} rows/s | ETA {eta}"
            + (f" | {self.message}" if self.message else "")
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressTracker:
    """Counts rows and chunks, and emits throttled events.

    Rows resumed from a checkpoint count as done but not into the rate, so the ETA after a resume
    reflects this run's speed.

    :param phase: ``(name, index, total)`` of the phase this tracker counts (1-based index). Before the last
        phase the ETA is unknown (None): the later phases' speed is not known yet.
    :param sub_phase: this tracker counts one phase of a job whose own tracker is another one (a statistics
        pass): its ``started`` / ``completed`` / ``failed`` events are renamed ``phase_*``, so no consumer takes
        them for the job's.
    """

    def __init__(
        self,
        job_id: str,
        rows_total: int,
        chunks_total: int,
        *,
        interval: float = 5.0,
        callbacks: Iterable[Callable[[ProgressEvent], Any]] = (),
        enabled: bool = True,
        phase: tuple[str, int, int] = ("processing", 1, 1),
        sub_phase: bool = False,
    ) -> None:
        self.job_id = job_id
        self.phase = phase
        self.sub_phase = sub_phase
        self.rows_total = rows_total
        self.chunks_total = chunks_total
        self.interval = interval
        self.callbacks = list(callbacks)
        self.enabled = enabled
        self.rows_done = 0
        self.chunks_done = 0
        #: rows quarantined so far (set by the runner); events carry it as ``extra["rows_skipped"]`` when > 0
        self.rows_skipped = 0
        #: rows of the last finished chunk (the batch size in use) and chunks in flight (set by the runner);
        #: events carry them as ``extra["batch_size"]`` / ``extra["chunks_running"]`` when > 0
        self.batch_size = 0
        self.chunks_running = 0
        self._resumed_rows = 0
        self._started = time.monotonic()
        self._last_emit = 0.0

    def resume(self, rows: int, chunks: int) -> None:
        self.rows_done += rows
        self.chunks_done += chunks
        self._resumed_rows += rows

    def advance(self, rows: int, chunks: int = 1) -> None:
        self.rows_done += rows
        self.chunks_done += chunks
        if time.monotonic() - self._last_emit >= self.interval:
            self.emit("progress")

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.rows_done - self._resumed_rows) / elapsed if elapsed > 0 else 0.0

    def enter_phase(self, name: str, index: int) -> None:
        """Move this (the job's own) tracker to a later phase; its counts are that phase's from now on."""
        self.phase = (name, index, self.phase[2])

    def event(self, event_type: str, message: str = "", **extra: Any) -> ProgressEvent:
        name, index, total = self.phase
        last = index >= total
        if self.sub_phase and event_type in ("started", "completed", "failed"):
            event_type = f"phase_{event_type}"
        pct = min(100.0 * self.rows_done / self.rows_total if self.rows_total else 100.0, 100.0)
        overall = ((index - 1) * 100.0 + pct) / total
        if total > 1 and event_type != "completed":
            overall = min(overall, 99.9)  # a job of several phases shows 100% only once it has ended
        rate = self.rate
        remaining = self.rows_total - self.rows_done
        eta = remaining / rate if rate > 0 and last else None
        counts = {"rows_skipped": self.rows_skipped, "batch_size": self.batch_size}
        counts["chunks_running"] = self.chunks_running
        extra = {**{k: v for k, v in counts.items() if v}, **extra}
        return ProgressEvent(
            event_type,
            self.job_id,
            round(overall, 2),
            self.rows_done,
            self.rows_total,
            self.chunks_done,
            self.chunks_total,
            round(rate, 1),
            eta,
            message,
            extra=extra,
            phase=name,
            phase_index=index,
            phases_total=total,
            phase_percentage=round(pct, 2),
        )

    def emit(self, event_type: str, message: str = "", **extra: Any) -> ProgressEvent:
        ev = self.event(event_type, message, **extra)
        self._last_emit = time.monotonic()
        if not self.enabled and event_type == "progress":
            return ev
        (log.warning if event_type in ("failed", "retry") else log.info)("%s", ev.line())
        for cb in self.callbacks:
            try:
                cb(ev)
            except Exception:  # a broken callback must not break the job
                log.exception("progress callback %r failed on a %s event", cb, event_type)
        return ev
