"""Retention: delete old job outputs, old checkpoint/work files and old failure records under a base path.

Three clocks, because downstream tasks read outputs long after the checkpoints stop being useful:

* **output** (``output_days``): a job folder whose committed output (``_manifest.json``) is older is deleted
  whole: output, report, generations.
* **work** (``work_days``): in the committed generation, ``segments/``, ``states/``, ``fit/``,
  ``fit_state.json`` and ``quarantine/`` (the output's ``parts/``, ``plan.json`` and ``_checkpoint.json``
  stay); every other generation (failed, abandoned or superseded) is deleted whole.
* **records** (``records_days``): failure records, monitoring alerts and the job history (``jobs/`` and
  ``series/``, :mod:`airflow_batch_provider.monitoring.history`) under ``{base}/_records`` (the ``active/``
  heartbeats and ``series/running/`` of running jobs are left alone).

Safety rules, checked for every deletion:

* the base path must not be empty or ``/``; every target must resolve inside it (symlinks are resolved on
  local storage and never followed: a link, or a records tree with a link in it, is left alone, logged and
  listed in ``refused``); in record folders only the record files the engine writes are deleted;
* a job folder with a live attempt (a generation whose ``_checkpoint.json`` says running or finalizing and
  was updated within ``live_grace_s``, or a generation too young to have a checkpoint) is left alone whole;
* ages come from the checkpoints' ``updated_at`` (falling back to the file's modification time); what has
  no known age is kept.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_provider.engine.records import RECORDS_FOLDER, cleanup_old_records
from airflow_batch_provider.exceptions import BatchInputError, ConfigError
from airflow_batch_provider.storage import Location

log = logging.getLogger(__name__)

DAY = 86400.0
MANIFEST = "_manifest.json"
CHECKPOINT = "_checkpoint.json"
LIVE_STATUSES = ("running", "finalizing")
WORK_ENTRIES = ("segments", "states", "fit", "fit_state.json", "quarantine")
#: under {base}/_records, all laid out in day folders; "active" heartbeats belong to running jobs
RECORD_KINDS = ("failures", "alerts", "jobs", "series")
MAX_DEPTH = 8  # {dag}/{run}/{task}/{map} plus room for hand-made output paths under the base
MAX_LISTED = 500  # deletions listed in the summary (counts are always complete)
_GEN_RE = re.compile(r"^g(\d{4,})$")


@dataclass(frozen=True)
class RetentionPolicy:
    output_days: float = 30.0
    work_days: float = 7.0
    records_days: float = 30.0
    live_grace_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("output_days", "work_days", "records_days", "live_grace_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass
class Deletion:
    uri: str
    kind: str  # "output" | "work" | "records"
    reason: str


@dataclass
class RetentionReport:
    base: str
    dry_run: bool
    deletions: list[Deletion] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    records_removed: int = 0
    #: symbolic links and targets outside the base: left alone
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        counts = {"output": 0, "work": 0, "records": self.records_removed}
        for d in self.deletions:
            counts[d.kind] += 1
        return {
            "base": self.base,
            "dry_run": self.dry_run,
            "counts": counts,
            "deleted": [vars(d) for d in self.deletions[:MAX_LISTED]],
            "listed_all": len(self.deletions) <= MAX_LISTED,
            "skipped_live": self.live,
            "refused": self.refused[:MAX_LISTED],
        }


class _Base:
    """The base folder and the containment check every deletion goes through."""

    def __init__(self, base: Any) -> None:
        raw = str(getattr(base, "path", base) or "").strip()
        loc = Location.of(base) if raw else None
        if loc is None or loc.path.rstrip("/") in ("", "/") or posixpath.normpath(loc.path) == "/":
            raise BatchInputError(f"refusing to clean up base path {base!r}: empty or the root")
        self.loc = loc
        self.real = self._real(loc.path)

    def _real(self, path: str) -> str:
        return os.path.realpath(path) if self.loc.is_local else posixpath.normpath(path)

    def contains(self, loc: Location) -> bool:
        if self.loc.is_local and os.path.islink(loc.path):
            return False
        real = self._real(loc.path)
        return real.startswith(self.real.rstrip("/") + "/")


def _mtime(loc: Location) -> float | None:
    try:
        info = loc.fs.info(loc.path)
    except (OSError, ValueError):
        return None
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
    return None


@dataclass
class _Generation:
    number: int
    loc: Location
    checkpoint: dict[str, Any] | None
    updated_at: float | None

    @classmethod
    def read(cls, job: Location, name: str) -> _Generation:
        loc = job.child(name)
        try:
            checkpoint = loc.child(CHECKPOINT).read_json()
        except (OSError, ValueError):
            checkpoint = None
        checkpoint = checkpoint if isinstance(checkpoint, dict) else None
        updated = checkpoint.get("updated_at") if checkpoint else None
        if not isinstance(updated, (int, float)):
            updated = _mtime(loc.child(CHECKPOINT)) if checkpoint else _mtime(loc)
        match = _GEN_RE.match(name)
        if match is None:
            raise ValueError(f"not a generation folder name: {name!r}")
        return cls(int(match.group(1)), loc, checkpoint, updated)

    def is_live(self, now: float, grace: float) -> bool:
        if self.updated_at is None:
            return True  # cannot date it: assume someone is working in it
        young = now - self.updated_at < grace
        if self.checkpoint is None:
            return young  # being created: no checkpoint written yet
        return young and self.checkpoint.get("status") in LIVE_STATUSES


def _is_job_folder(names: list[str]) -> bool:
    return MANIFEST in names or any(_GEN_RE.match(n) for n in names)


class _Cleaner:
    def __init__(self, base: _Base, policy: RetentionPolicy, dry_run: bool, now: float) -> None:
        self.base = base
        self.policy = policy
        self.dry_run = dry_run
        self.now = now
        self.report = RetentionReport(base.loc.uri, dry_run)

    def delete(self, loc: Location, kind: str, reason: str) -> None:
        if not self.base.contains(loc):
            log.warning(
                "not deleting %s: a symbolic link or outside the base path %s", loc.uri, self.base.loc.uri
            )
            self.report.refused.append(loc.uri)
            return
        self.report.deletions.append(Deletion(loc.uri, kind, reason))
        if not self.dry_run:
            loc.remove(recursive=True)

    def walk(self, folder: Location, depth: int) -> None:
        names = folder.listdir()
        if depth > 0 and _is_job_folder(names):
            self.clean_job(folder, names)
            return
        if depth >= MAX_DEPTH:
            return
        for name in names:
            child = folder.child(name)
            if (depth == 0 and name == RECORDS_FOLDER) or not self.base.contains(child) or not child.isdir():
                continue
            self.walk(child, depth + 1)

    def clean_job(self, job: Location, names: list[str]) -> None:
        gens = [_Generation.read(job, n) for n in names if _GEN_RE.match(n)]
        if any(g.is_live(self.now, self.policy.live_grace_s) for g in gens):
            self.report.live.append(job.uri)
            return
        manifest = job.child(MANIFEST).read_json() if MANIFEST in names else None
        committed = manifest.get("generation") if isinstance(manifest, dict) else None
        current = next((g for g in gens if g.number == committed), None)
        if committed is not None and self._older(self._committed_at(job, current), self.policy.output_days):
            self.delete(job, "output", f"committed output older than {self.policy.output_days:g} days")
            return
        for gen in gens:
            if gen is current:
                self._clean_committed(gen)
            elif self._older(gen.updated_at, self.policy.work_days):
                status = (gen.checkpoint or {}).get("status", "unknown")
                self.delete(gen.loc, "work", f"{status} generation older than {self.policy.work_days:g} days")

    def _clean_committed(self, gen: _Generation) -> None:
        if not self._older(gen.updated_at, self.policy.work_days):
            return
        present = set(gen.loc.listdir())
        for name in WORK_ENTRIES:
            if name in present:
                reason = f"work files of the committed generation older than {self.policy.work_days:g} days"
                self.delete(gen.loc.child(name), "work", reason)

    @staticmethod
    def _committed_at(job: Location, current: _Generation | None) -> float | None:
        if current is not None and current.updated_at is not None:
            return current.updated_at
        return _mtime(job.child(MANIFEST))

    def _older(self, ts: float | None, days: float) -> bool:
        return ts is not None and self.now - ts >= days * DAY


def apply_retention(
    base: Any, policy: RetentionPolicy | None = None, *, dry_run: bool = False, now: float | None = None
) -> dict[str, Any]:
    """Apply ``policy`` to every job folder under ``base`` and to its failure records; returns a summary.

    With ``dry_run`` nothing is deleted and the summary lists what would be.
    """
    policy = policy or RetentionPolicy()
    cleaner = _Cleaner(_Base(base), policy, dry_run, time.time() if now is None else now)
    cleaner.walk(cleaner.base.loc, 0)
    records = cleaner.base.loc.child(RECORDS_FOLDER)
    if records.is_link() or (records.exists() and not cleaner.base.contains(records)):
        log.warning("not cleaning up records under %s: a symbolic link or outside the base path", records.uri)
        cleaner.report.refused.append(records.uri)
    else:
        done = cleanup_old_records(
            records, policy.records_days, dry_run, folders=RECORD_KINDS, now=cleaner.now
        )
        cleaner.report.records_removed = done["removed"]
        cleaner.report.refused.extend(done["refused"])
    summary = cleaner.report.to_dict()
    log.info(
        "retention%s under %s: %d output folders, %d work entries, %d records; %d live job folders skipped",
        " (dry run)" if dry_run else "",
        summary["base"],
        summary["counts"]["output"],
        summary["counts"]["work"],
        summary["counts"]["records"],
        len(summary["skipped_live"]),
    )
    return summary
