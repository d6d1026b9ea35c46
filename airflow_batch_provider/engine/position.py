"""Where a job stopped and where it will resume, read from its folder (not from an exception).

After a SIGKILL Airflow runs failure callbacks without the exception, maybe twice, maybe in another process;
the job folder is the only witness. :func:`job_position` reads the latest generation's ``_checkpoint.json``;
:func:`claim_notice` lets exactly one caller announce one failure (an exclusive-create marker).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from airflow_batch_provider.storage import Location

CHECKPOINT = "_checkpoint.json"
NOTIFIED = "_notified"
_GEN_RE = re.compile(r"^g(\d{4,})$")
_KEY_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class JobPosition:
    folder: str
    generation: int | None = None
    status: str | None = None
    rows_done: int = 0
    rows_total: int | None = None
    chunks_done: int = 0
    chunks_total: int | None = None
    updated_at: float | None = None

    @property
    def percent(self) -> float | None:
        if self.rows_total:
            return 100.0 * self.rows_done / self.rows_total
        if self.chunks_total:
            return 100.0 * self.chunks_done / self.chunks_total
        return None

    def describe(self) -> str:
        """``failed at 63% (chunk 53/84), 5,300,000 rows kept; will resume from chunk 53``."""
        if self.generation is None:
            return "failed before its first checkpoint; the next try starts from the beginning"
        if self.status == "succeeded":
            return f"generation {self.generation} had already succeeded; the next run starts fresh"
        at = "" if self.percent is None else f" at {int(self.percent)}%"
        of = f"/{self.chunks_total}" if self.chunks_total else ""
        return (
            f"failed{at} (chunk {self.chunks_done}{of}), {self.rows_done:,} rows kept; "
            f"will resume from chunk {self.chunks_done}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


def latest_generation(folder: Location) -> int | None:
    gens = [int(m.group(1)) for n in folder.listdir() if (m := _GEN_RE.match(n))]
    return max(gens) if gens else None


def job_position(folder: Any) -> JobPosition:
    """The position recorded in the latest generation's checkpoint (zeros when there is none yet)."""
    loc = Location.of(folder)
    gen = latest_generation(loc)
    if gen is None:
        return JobPosition(loc.uri)
    try:
        checkpoint = loc.child(f"g{gen:04d}", CHECKPOINT).read_json(default={})
    except ValueError:  # a torn or foreign file: report what we know
        checkpoint = {}
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    raw = checkpoint.get("counters")
    counters: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def pick(key: str) -> int | None:
        return _int(counters.get(key, checkpoint.get(key)))

    return JobPosition(
        folder=loc.uri,
        generation=gen,
        status=checkpoint.get("status"),
        rows_done=pick("rows_done") or 0,
        rows_total=pick("rows_total"),
        chunks_done=pick("chunks_done") or 0,
        chunks_total=pick("chunks_total"),
        updated_at=checkpoint.get("updated_at"),
    )


def claim_notice(folder: Any, position: JobPosition, key: str) -> bool:
    """True for the first caller with this ``key`` (e.g. ``try-3``) for this generation, False after.

    The marker is ``gNNNN/_notified/<key>`` (``_notified/<key>`` before the first generation), created with
    an exclusive create, so two callbacks racing in two processes still send one message.
    """
    loc = Location.of(folder)
    name = _KEY_RE.sub("_", key) or "unknown"
    base = loc if position.generation is None else loc.child(f"g{position.generation:04d}")
    return base.child(NOTIFIED, name).create_exclusive(name.encode())
