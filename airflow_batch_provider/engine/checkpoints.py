"""Checkpoints: the per-generation manifest, its segments, and the committed output manifest.

Layout of a job folder (``output_path``)::

    _manifest.json       committed output: generation, parts (relative paths), counters  <- readers
    _report.json         the processor's final report (copy of the generation's)
    _SUCCESS             written after the committed manifest
    g0001/               one output generation
      _checkpoint.json   the working manifest: format_version, fingerprint, status, plan ref, segment count
      plan.json          the frozen plan: files (size, version, row groups or text index) and schema
      segments/s000000.json  finished row ranges (part name, rows, partial state) since the previous checkpoint
      parts/f00000-r000000000000.parquet  row output of one range: file index + first row, zero-padded
      compacted/c000000.parquet  the parts merged at commit (``compact_output``, :mod:`.compaction`)
      states/...         partial states too large for a segment
      fit_state.json     what the processor's ``fit`` learned
      _report.json

A checkpoint writes one new segment and rewrites the small working manifest: O(1) per checkpoint
whatever the job size. Every write is atomic (see ``Location.write_bytes``).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_batch_provider.engine.compaction import COMPACTED
from airflow_batch_provider.engine.sources import OUTPUT_FORMAT, OUTPUT_MANIFEST, SourceFile
from airflow_batch_provider.exceptions import StaleAttemptError
from airflow_batch_provider.storage import Location

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT = "_checkpoint.json"
EPOCHS = "_epochs"
_GEN_RE = re.compile(r"^g(\d{4,})$")
_EPOCH_RE = re.compile(r"^e(\d{10})$")


def part_name(file_index: int, start: int) -> str:
    return f"f{file_index:05d}-r{start:012d}.parquet"


def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


@dataclass(frozen=True)
class Fence:
    """Zombie safety: the newest attempt on a job folder owns it; older attempts stop before they write.

    Each attempt holds an epoch (the Airflow try number, or one more than the highest seen). Taking the folder
    creates ``_epochs/eNNNNNNNNNN`` with an exclusive create, so two attempts can never hold the same epoch.
    :meth:`check` runs before every write that commits something (a part, a segment, the working manifest,
    the output manifest), in chunk workers too: an attempt that sees a higher epoch raises
    :class:`StaleAttemptError` and writes nothing more. Object stores offer exclusive create but no
    compare-and-swap, so a write already past its check can still land; what it writes is a finished chunk of
    the same deterministic job, so the folder stays consistent (see ``docs/failures.md``).
    """

    out: Location
    epoch: int

    @staticmethod
    def epochs(out: Location) -> list[int]:
        return sorted(int(m.group(1)) for n in out.child(EPOCHS).listdir() if (m := _EPOCH_RE.match(n)))

    @classmethod
    def acquire(cls, out: Location, epoch: int | None = None) -> Fence:
        """Take the folder with ``epoch`` (None: one more than the highest so far)."""
        for _ in range(20):
            seen = cls.epochs(out)
            highest = seen[-1] if seen else 0
            mine = highest + 1 if epoch is None else int(epoch)
            if mine < highest and not _owner_running(out):
                mine = highest + 1  # the newer attempt finished: a rerun with an older try number may go on
            if mine < highest:
                raise StaleAttemptError(
                    f"{out.uri} belongs to a newer attempt (epoch {highest} > {mine}): this attempt stops"
                )
            if out.child(EPOCHS, f"e{mine:010d}").create_exclusive(
                f"{time.time():.6f} {os.getpid()} {uuid.uuid4().hex}".encode()
            ):
                return cls(out, mine)
            if epoch is not None:
                # the same try number twice (a manual rerun of the same try): take the next free epoch
                epoch = None
        raise StaleAttemptError(f"could not take {out.uri}: other attempts keep taking epochs")

    def check(self) -> None:
        seen = self.epochs(self.out)
        if seen and seen[-1] > self.epoch:
            raise StaleAttemptError(
                f"{self.out.uri} was taken by a newer attempt (epoch {seen[-1]} > {self.epoch}); this attempt "
                "stops without writing (the newer one resumes from the last checkpoint)"
            )


def _owner_running(out: Location) -> bool:
    """Whether the latest generation's working manifest says an attempt is still running it."""
    gens = sorted(int(m.group(1)) for n in out.listdir() if (m := _GEN_RE.match(n)))
    if not gens:
        return False
    working = out.child(f"g{gens[-1]:04d}", CHECKPOINT).read_json()
    return isinstance(working, dict) and working.get("status") in ("running", "finalizing")


@dataclass
class Decision:
    generation: int
    resume: bool
    reason: str
    previous: dict[str, Any] | None = None


def decide_generation(out: Location, fingerprint: str, *, resume: bool = True) -> Decision:
    """Resume the latest unfinished generation with the same fingerprint, or start a new one.

    ``resume=False`` (checkpointing disabled) discards an unfinished generation and starts clean.
    """
    committed = out.child(OUTPUT_MANIFEST).read_json()
    committed_gen = committed.get("generation") if isinstance(committed, dict) else None
    gens = sorted(int(m.group(1)) for n in out.listdir() if (m := _GEN_RE.match(n)))
    log.debug(
        "resume decision for %s: generations %s, committed %s, fingerprint %s, checkpointing %s",
        out.uri,
        gens or "none",
        committed_gen,
        fingerprint,
        "on" if resume else "off",
    )
    if not gens:
        return Decision(1, False, "no checkpoint: starting a new job")
    latest = gens[-1]
    working = out.child(f"g{latest:04d}", CHECKPOINT).read_json()
    if latest == committed_gen or (isinstance(working, dict) and working.get("status") == "succeeded"):
        return Decision(
            latest + 1, False, f"generation {latest} succeeded: running fresh as generation {latest + 1}"
        )
    if not isinstance(working, dict) or working.get("format_version") != FORMAT_VERSION:
        out.child(f"g{latest:04d}").remove(recursive=True)
        return Decision(latest + 1, False, f"generation {latest} has no readable checkpoint: starting clean")
    if not resume:
        out.child(f"g{latest:04d}").remove(recursive=True)
        return Decision(
            latest + 1, False, f"checkpointing disabled: discarded generation {latest}, starting clean"
        )
    if working.get("fingerprint") != fingerprint:
        log.warning(
            "job fingerprint changed (%s -> %s): the source, processor or its parameters changed; "
            "discarding unfinished generation %d and starting clean",
            working.get("fingerprint"),
            fingerprint,
            latest,
        )
        out.child(f"g{latest:04d}").remove(recursive=True)
        return Decision(
            latest + 1, False, f"fingerprint changed: discarded generation {latest}, starting clean"
        )
    return Decision(latest, True, f"resuming generation {latest} from its checkpoint", working)


@dataclass
class CheckpointStore:
    """The working manifest of one generation, plus the finished-range records it references."""

    out: Location
    generation: int
    fingerprint: str
    job_id: str
    records: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    segments: int = 0
    counters: dict[str, Any] = field(default_factory=dict)
    rows_done: int = 0  # rows in finished ranges, kept up to date so a checkpoint stays O(1)
    fence: Fence | None = None
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def _check(self) -> None:
        if self.fence is not None:
            self.fence.check()

    @property
    def gen(self) -> Location:
        return self.out.child(f"g{self.generation:04d}")

    def load(self, manifest: dict[str, Any]) -> None:
        self.segments = int(manifest.get("segments", 0))
        self.counters = dict(manifest.get("counters", {}))
        for i in range(self.segments):
            for rec in self.gen.child("segments", f"s{i:06d}.json").read_json(default=[]):
                self.records[(rec["f"], rec["s"])] = rec
        self.rows_done = sum(r["e"] - r["s"] for r in self.records.values())

    def save_plan(self, files: list[SourceFile], schema: pa.Schema) -> None:
        self.gen.child("plan.json").write_json(
            {"files": [f.to_dict() for f in files], "schema": schema_to_text(schema)}
        )

    def load_plan(self) -> tuple[list[SourceFile], pa.Schema]:
        plan = self.gen.child("plan.json").read_json()
        return [SourceFile.from_dict(f) for f in plan["files"]], schema_from_text(plan["schema"])

    def add(self, record: dict[str, Any]) -> None:
        old = self.records.get((record["f"], record["s"]))
        self.rows_done += (record["e"] - record["s"]) - (old["e"] - old["s"] if old else 0)
        self.records[(record["f"], record["s"])] = record
        self._pending.append(record)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, status: str, **extra: Any) -> None:
        """Append a segment with the records since the last checkpoint, then rewrite the working manifest."""
        self._check()
        written = len(self._pending)
        if self._pending:
            self.gen.child("segments", f"s{self.segments:06d}.json").write_json(self._pending)
            self.segments += 1
            self._pending = []
        log.debug(
            "checkpoint %s: generation %d %s, %s; %d range(s), %d rows done in all",
            self.gen.uri,
            self.generation,
            status,
            f"segment {self.segments - 1} with {written} new range(s)" if written else "no new range",
            len(self.records),
            self.rows_done,
        )
        self.gen.child(CHECKPOINT).write_json(
            {
                "format_version": FORMAT_VERSION,
                "job_id": self.job_id,
                "generation": self.generation,
                "fingerprint": self.fingerprint,
                "status": status,
                "segments": self.segments,
                "counters": self.counters,
                "updated_at": time.time(),
                "epoch": self.fence.epoch if self.fence else None,
                **extra,
            }
        )

    def commit_output(
        self,
        parts: list[str],
        report: Any,
        summary: dict[str, Any],
        quarantine: list[str] | None = None,
        skipped: list[str] | None = None,
        success: bool = True,
        compaction: dict[str, Any] | None = None,
    ) -> None:
        """Make this generation the folder's output: report, then the committed manifest, then ``_SUCCESS``.

        ``compaction``: what :mod:`~airflow_batch_provider.engine.compaction` did (``parts`` then lists the
        compacted files), recorded in the manifest under ``compaction``.

        ``success=False`` (a quality task failed by ``fail_on``): the output is committed but ``_SUCCESS`` is
        not written, and a previous generation's is removed, so a marker never stands for a failed task."""
        self._check()
        self.gen.child("_report.json").write_json(report)
        self.out.child(OUTPUT_MANIFEST).write_json(
            {
                "format": OUTPUT_FORMAT,
                "format_version": FORMAT_VERSION,
                "generation": self.generation,
                "fingerprint": self.fingerprint,
                "job_id": self.job_id,
                "parts": parts,
                "quarantine": quarantine or [],
                "skipped": skipped or [],
                "report": f"g{self.generation:04d}/_report.json",
                "summary": summary,
                **({"compaction": compaction} if compaction is not None else {}),
            }
        )
        self.out.child("_report.json").write_json(report)
        marker = self.out.child("_SUCCESS")
        if success:
            marker.write_bytes(b"")
        elif marker.exists():
            marker.remove()

    def remove_stale(
        self,
        keep_parts: set[str],
        keep_quarantine: set[str] | frozenset[str] = frozenset(),
        keep_compacted: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Delete parts no record lists (left by an unrecorded chunk), compacted files the manifest does not
        list (a crashed or differently sized attempt's) and older generations. A folder none of whose files is
        kept (the parts, once compacted) goes in one recursive delete: batched requests on object stores."""
        self._check()
        folders = (("parts", keep_parts), ("quarantine", keep_quarantine), (COMPACTED, keep_compacted))
        for folder, keep in folders:
            loc = self.gen.child(folder)
            if not keep:
                loc.remove(recursive=True)
                continue
            for name in loc.listdir():
                if name not in keep:
                    loc.child(name).remove()
        for name in self.out.listdir():
            m = _GEN_RE.match(name)
            if m and int(m.group(1)) < self.generation:
                self.out.child(name).remove(recursive=True)
