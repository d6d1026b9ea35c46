"""The failure ledger of one job run: what failed, how it was handled, and whether it recovered.

Every chunk failure the runner handles is noted here twice over:

* a short entry for the checkpoint (``_checkpoint.json`` keeps the last 50: :meth:`FailureLedger.take`);
* a failure record for ``_records/failures`` (:class:`~airflow_batch_provider.engine.records.FailureRecords`),
  written once its outcome is known: at once when the strategy settles it (quarantine, split), when the
  chunk's whole row range later finishes (``recovered: true``, :meth:`FailureLedger.resolve`), or when the job
  stops (``recovered: false``, :meth:`FailureLedger.job_failed`).

Messages are scrubbed of row values by the job's :class:`~airflow_batch_provider.engine.redaction.Scrubber`.
A failure record never fails the job. No Airflow imports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from airflow_batch_provider.engine.failures import FailureClass, error_signature
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.engine.redaction import Scrubber

log = logging.getLogger("airflow_batch_provider.engine")


class FailureLedger:
    """Failures of one job run, for its checkpoints and its failure records."""

    def __init__(
        self,
        *,
        job_id: str,
        output_uri: str,
        scrubber: Scrubber,
        records: FailureRecords | None = None,
        task_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.output_uri = output_uri
        self.scrubber = scrubber
        self.records = records
        self.task_info = dict(task_info or {})
        self.recent: list[dict[str, Any]] = []  # for the next checkpoint
        self.pending: list[dict[str, Any]] = []  # records waiting to learn whether they recovered

    def note(
        self,
        *,
        chunk: tuple[int, int, int],
        label: str,
        attempt: int,
        err: BaseException,
        kind: FailureClass | str,
        strategy: str,
        record_strategy: str,
        lost: float,
        fatal: bool = False,
        recovered: bool | None = None,
    ) -> None:
        """One handled chunk failure (``strategy``: what the log says; ``record_strategy``: its name)."""
        kind = FailureClass.parse(kind)
        self.recent.append(
            {
                "time": time.time(),
                "chunk": list(chunk),
                "attempt": attempt,
                "class": kind.value,
                "error": self.scrubber.record(f"{type(err).__name__}: {err}"),
                "strategy": record_strategy,
            }
        )
        log.warning(
            "%s attempt %d failed (%s, %s): %s: %s",
            label,
            attempt,
            kind.value,
            strategy,
            type(err).__name__,
            str(err)[:500],
        )
        note = {
            "chunk": list(chunk),
            "chunk_label": label,
            "class": kind.value,
            "error_type": type(err).__name__,
            "error": self.scrubber.record(str(err)),
            "attempt": attempt,
            "strategy": record_strategy,
            "time_lost_s": round(lost, 3),
            "ts": time.time(),
            "fatal": fatal,
            "_done": 0,
            "_signature": error_signature(err),
        }
        if recovered is not None:
            self._write(note, recovered=recovered)
        else:
            self.pending.append(note)

    def forget_signature(self, signature: str) -> None:
        """Drop the unsettled, non-fatal notes of one error signature (fail fast makes them one record)."""
        self.pending = [n for n in self.pending if n.get("fatal") or n.get("_signature") != signature]

    def resolve(self, record: Mapping[str, Any]) -> None:
        """A finished chunk record settles the failures noted for its range: recovered once all of it is done."""
        if not self.pending:
            return
        keep = []
        for note in self.pending:
            f, s, e = note["chunk"] or (None, 0, 0)
            if not note["fatal"] and f == record["f"] and s <= record["s"] < e:
                note["_done"] += record["e"] - record["s"]
                if note["_done"] >= e - s:
                    self._write(note, recovered=True)
                    continue
            keep.append(note)
        self.pending = keep

    def job_failed(self, err: BaseException, kind: FailureClass) -> None:
        """The job stops with ``err``: every unsettled note is written as not recovered; a job-level record too,
        unless a chunk failure already explains the stop or an inner job (a statistics pass) recorded ``err``."""
        chunk_level = any(n.get("fatal") for n in self.pending)
        for note in self.pending:
            self._write(note, recovered=False)
        self.pending = []
        if not chunk_level and not getattr(err, "_batch_recorded", False):
            self._write(
                {
                    "chunk": None,
                    "chunk_label": None,
                    "class": kind.value,
                    "error_type": type(err).__name__,
                    "error": self.scrubber.record(str(err)),
                    "attempt": None,
                    "strategy": "checkpoint_and_fail",
                    "time_lost_s": 0.0,
                    "ts": time.time(),
                },
                recovered=False,
            )
        try:  # an outer job (a statistics pass's) does not record the same failure again
            err._batch_recorded = True  # type: ignore[attr-defined]
        except AttributeError:
            pass

    def take(self) -> list[dict[str, Any]]:
        """The entries noted since the last checkpoint (and forget them)."""
        out, self.recent = self.recent, []
        return out

    def _write(self, note: dict[str, Any], *, recovered: bool) -> None:
        if self.records is None:
            return
        record = {k: v for k, v in note.items() if not k.startswith("_") and k != "fatal"}
        record.update(self.task_info, job_id=self.job_id, output_uri=self.output_uri, recovered=recovered)
        try:
            self.records.add(record, known=self.scrubber.known)
        except Exception:  # noqa: BLE001 - a failure record must never fail the job
            log.warning("could not write a failure record under %s", self.records, exc_info=True)
