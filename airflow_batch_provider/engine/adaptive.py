"""Online batch-size adaptation: grow chunks while memory allows and throughput improves, shrink before
memory runs out.

The runner feeds every finished chunk's record (rows, ``seconds``, ``mem_peak`` = the chunk's measured
allocation in its worker, see :class:`~airflow_batch_provider.engine.workers.ChunkMemory`) to
:meth:`BatchSizeAdapter.observe` and cuts the next chunks to :attr:`BatchSizeAdapter.size`. Each worker's
share of the memory target is ``target / concurrency``. Only chunk-invariant processors adapt, so results
never change; finished work is recorded as row ranges, so a resume with other sizes neither redoes nor
skips rows.

The target can be lowered (or raised) while the job runs: :meth:`BatchSizeAdapter.set_target_mb`, or a
JSON file ``{"target_memory_usage_mb": N}`` at ``{output_path}/_tuning_control.json`` that the runner
re-reads at most once per :data:`CONTROL_INTERVAL_S`.

No Airflow imports.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from typing import Any

log = logging.getLogger("airflow_batch_provider.engine")

CONTROL_FILE = "_tuning_control.json"
CONTROL_INTERVAL_S = 1.0
GROW_FACTOR = 2.0
FILL = 0.7  # grow or shrink to this share of a worker's memory budget
SHRINK_AT = 0.9  # a chunk peak above this share of the budget shrinks the batch
SLOWER = 0.95  # a larger size whose throughput is below this share of the smaller one's is reverted
MIN_ROWS = 1_000
_MB = 2**20


@dataclasses.dataclass
class _SizeStats:
    rates: list[float] = dataclasses.field(default_factory=list)  # rows/s of single chunks

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


class BatchSizeAdapter:
    """The current batch size and how it got there (``trajectory``: one entry per change, with the reason).

    :param initial: the starting size (the tuning estimate).
    :param target_mb: the memory target of the whole job (all workers).
    :param concurrency: workers sharing the target.
    :param max_size: never grow past this many rows.
    :param min_size: never shrink below this many rows (a smaller start is kept).
    :param extra_rows: rows a worker holds besides its chunk (decoded row groups at the chunk's edges, the
        worker's row-group cache): the memory model is ``peak = bytes_per_row x (rows + extra_rows)``, so
        shrinking stops where it no longer lowers the peak.
    """

    def __init__(
        self,
        initial: int,
        *,
        target_mb: float,
        concurrency: int,
        max_size: int,
        min_size: int = MIN_ROWS,
        extra_rows: int = 0,
    ) -> None:
        self.size = max(1, int(initial))
        self.initial = self.size
        self.target_mb = float(target_mb)
        self.concurrency = max(1, int(concurrency))
        self.max_size = max(self.size, int(max_size))
        self.min_size = min(self.size, int(min_size))
        self.extra_rows = max(0, int(extra_rows))
        self.trajectory: list[dict[str, Any]] = []
        self.chunks = 0
        self.converged = False
        self._stats: dict[int, _SizeStats] = {}
        self._bytes_per_row = 0.0  # measured allocation per row (rows + extra_rows) of recent chunks
        self._lock = threading.Lock()

    @property
    def budget_bytes(self) -> float:
        """One worker's share of the memory target."""
        return self.target_mb * _MB / self.concurrency

    def _change(self, new: int, reason: str) -> None:
        new = int(min(self.max_size, max(self.min_size, new)))
        if new == self.size:
            return
        entry = {
            "chunk": self.chunks,
            "from": self.size,
            "to": new,
            "reason": reason,
            "time": round(time.time(), 3),
        }
        self.trajectory.append(entry)
        log.info("batch size %d -> %d after %d chunk(s): %s", self.size, new, self.chunks, reason)
        self.size = new

    def _fits(self) -> int:
        """The largest size whose predicted peak is ``FILL`` of the budget."""
        if self._bytes_per_row <= 0:
            return self.max_size
        return int(FILL * self.budget_bytes / self._bytes_per_row) - self.extra_rows

    def _need(self, rows: int) -> float:
        """The predicted peak of a chunk of ``rows`` rows (bytes)."""
        return self._bytes_per_row * (rows + self.extra_rows)

    def set_target_mb(self, target_mb: float) -> None:
        """Change the memory target while the job runs; shrinks at once when the current size no longer fits."""
        with self._lock:
            if target_mb <= 0 or target_mb == self.target_mb:
                return
            old, self.target_mb = self.target_mb, float(target_mb)
            self.converged = False
            predicted = self._need(self.size)
            if predicted > SHRINK_AT * self.budget_bytes and self.size > self.min_size:
                self._change(
                    self._fits(),
                    f"memory target {old:,.0f} -> {target_mb:,.0f} MB: a chunk of {self.size:,} rows needs "
                    f"~{predicted / _MB:,.0f} MB, over {SHRINK_AT:.0%} of {self.budget_bytes / _MB:,.0f} MB per worker",
                )

    def observe(self, rows: int, seconds: float, mem_peak: int | None) -> None:
        """One finished chunk: its rows, its worker seconds and its measured allocation (bytes)."""
        if rows <= 0:
            return
        with self._lock:
            self.chunks += 1
            if mem_peak:
                per_row = mem_peak / (rows + self.extra_rows)
                # the newest measurement counts most; a larger one raises the estimate at once
                self._bytes_per_row = max(per_row, 0.5 * (self._bytes_per_row + per_row))
                if (
                    mem_peak > SHRINK_AT * self.budget_bytes
                    and rows > self.min_size
                    and self.size > self.min_size
                ):
                    self.converged = False
                    if self._fits() >= SHRINK_AT * self.size:
                        return  # an older, larger chunk: the current size (about) fits already
                    self._change(
                        self._fits(),
                        f"a chunk of {rows:,} rows peaked at {mem_peak / _MB:,.0f} MB, over {SHRINK_AT:.0%} of "
                        f"{self.budget_bytes / _MB:,.0f} MB per worker (target {self.target_mb:,.0f} MB)",
                    )
                    return
            if rows != self.size or seconds <= 0:
                return  # a remainder, a split or a chunk cut before the last change: no throughput evidence
            stats = self._stats.setdefault(rows, _SizeStats())
            stats.rates.append(rows / seconds)
            if self.converged or len(stats.rates) < self.concurrency:
                return
            smaller = [s for s in self._stats if s < self.size and self._stats[s].rates]
            if smaller:
                prev = max(smaller)
                if stats.rate < SLOWER * self._stats[prev].rate:
                    self.converged = True
                    self._change(
                        prev,
                        f"{self.size:,} rows ran at {stats.rate:,.0f} rows/s, slower than {prev:,} rows "
                        f"({self._stats[prev].rate:,.0f} rows/s)",
                    )
                    return
            grown = min(int(self.size * GROW_FACTOR), self._fits(), self.max_size)
            if grown <= self.size * 1.1:
                self.converged = True
                return
            self._change(
                grown,
                f"{stats.rate:,.0f} rows/s at {self.size:,} rows; peak ~{self._need(self.size) / _MB:,.0f} MB "
                f"of {self.budget_bytes / _MB:,.0f} MB per worker leaves room",
            )

    def poll_control(self, folder: Any, now: float | None = None) -> None:
        """Re-read ``{folder}/_tuning_control.json`` (at most once per ``CONTROL_INTERVAL_S``)."""
        now = time.monotonic() if now is None else now
        if now - getattr(self, "_polled", -1e9) < CONTROL_INTERVAL_S:
            return
        self._polled = now
        try:
            doc = folder.child(CONTROL_FILE).read_json()
        except Exception:  # noqa: BLE001 - a control file that cannot be read changes nothing
            log.warning("could not read %s", CONTROL_FILE, exc_info=True)
            return
        value = (doc or {}).get("target_memory_usage_mb") if isinstance(doc, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            self.set_target_mb(float(value))

    def summary(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "final": self.size,
            "target_mb": self.target_mb,
            "changes": list(self.trajectory),
        }
