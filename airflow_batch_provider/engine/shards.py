"""Shards: one job split into row ranges that run as separate tasks (on separate workers), then merged.

``plan_shards`` -> ``run_shard`` (once per shard, anywhere; :mod:`airflow_batch_provider.jobs` runs it like a
single job, monitored) -> ``merge_shards``. No Airflow imports.

- The plan does the processor's fit/statistics pass ONCE, freezes the file plan and the batch size, and
  splits the chunk plan into contiguous row-range groups balanced by rows.
- Each shard runs the ordinary engine (its own checkpoints, resume, chunk workers) over its ranges only,
  using the shared fit state, and keeps its partial states without finalizing.
- The merge loads every shard's partial states in source order, merges and finalizes them once, and commits
  the job folder's ``_manifest.json`` listing every shard's parts. Chunk boundaries are those of the
  single-task run, so the result equals it (under the processors' merge contract).

Layout inside the job folder (``output_path``)::

    _manifest.json, _report.json, _SUCCESS      committed by the merge (parts point into the shards)
    _shards/g0001/                              one plan generation (a checkpointed job folder of its own)
      plan.json, fit_state.json, fit/           frozen file plan and what the fit/statistics pass learned
      shards.json                               the shard specs
      _report.json                              the merged report
      s0000/                                    shard 0: an ordinary job folder (g0001/parts, segments...)
        _shard.json                             written when the shard finished: generation + fingerprint
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import memory_sources, sources, workers
from airflow_batch_provider.engine.checkpoints import (
    CHECKPOINT,
    FORMAT_VERSION,
    CheckpointStore,
    Decision,
    schema_from_text,
)
from airflow_batch_provider.engine.jsonsafe import to_jsonable
from airflow_batch_provider.engine.progress import ProgressEvent
from airflow_batch_provider.engine.runner import (
    JobResult,
    JobRunner,
    as_config,
    build_runner,
    fingerprint_of,
    plan_chunks,
)
from airflow_batch_provider.exceptions import BatchInputError, ShardIncompleteError
from airflow_batch_provider.processors import side_files
from airflow_batch_provider.processors.registry import resolve_processor
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.engine")

SHARDS_DIR = "_shards"
SHARD_SPECS = "shards.json"
SHARD_DONE = "_shard.json"


def split_chunks(chunks: list[workers.ChunkTask], shards: int) -> list[tuple[int, int]]:
    """At most ``shards`` contiguous ``[first, stop)`` chunk-index groups, balanced by rows, none empty."""
    n = max(1, min(shards, len(chunks)))
    total = sum(c.rows for c in chunks)
    groups: list[tuple[int, int]] = []
    first, done = 0, 0
    for i, chunk in enumerate(chunks):
        done += chunk.rows
        left_chunks, left_groups = len(chunks) - i - 1, n - len(groups) - 1
        reached = done * n >= total * (len(groups) + 1)
        if left_groups and (reached or left_chunks == left_groups):
            groups.append((first, i + 1))
            first = i + 1
    groups.append((first, len(chunks)))
    return groups


def _row_ranges(chunks: list[workers.ChunkTask]) -> list[list[int]]:
    """Contiguous chunks as ``[file_index, start, stop]`` row ranges."""
    out: list[list[int]] = []
    for c in chunks:
        if out and out[-1][0] == c.file_index and out[-1][2] == c.start:
            out[-1][2] = c.stop
        else:
            out.append([c.file_index, c.start, c.stop])
    return out


def _shard_fingerprint(spec: Mapping[str, Any]) -> str:
    doc = {k: spec[k] for k in ("fingerprint", "generation", "shard", "ranges", "batch_size")}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


# -- plan ------------------------------------------------------------------------------------------
def plan_shards(
    source: Any,
    processor: Any,
    *,
    output_path: Any,
    shards: int,
    max_shards: int | None = None,
    config: BatchConfig | Mapping[str, Any] | None = None,
    csv_options: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    progress_callbacks: Iterable[Callable[[ProgressEvent], Any]] | None = None,
    cancel_event: threading.Event | None = None,
    **processor_kwargs: Any,
) -> list[dict[str, Any]]:
    """Fit once, freeze the plan, and split it into at most ``min(shards, max_shards)`` shard specs.

    The plan folder (``{output_path}/_shards/gNNNN``) is a checkpointed job folder: a retried plan resumes
    the fit/statistics pass and reuses what it learned. Returns JSON-safe specs, one per shard, in source order.
    """
    if int(shards) < 1:
        raise BatchInputError(f"shards must be >= 1, got {shards!r}")
    limit = min(int(shards), int(max_shards) if max_shards else int(shards))
    config = as_config(config)
    out = Location.of(output_path)
    proc = resolve_processor(processor, processor_kwargs)
    source = memory_sources.stage(source, out)  # an in-memory source: stored once, read by every shard
    job_id = job_id or out.name
    planner = build_runner(
        JobRunner,
        source,
        proc,
        config,
        out.child(SHARDS_DIR),
        f"{job_id}/plan",
        csv_options=csv_options,
        progress_callbacks=progress_callbacks,
        cancel_event=cancel_event,
    )
    _, store, files, schema = planner.prepare()
    planner.validate_schema(schema)  # the job's one pre-flight check: the shards run what the plan checked
    planner.fit(store, files, schema)
    batch_size, why = planner.choose_batch_size(files, schema)
    chunks = plan_chunks(files, batch_size, [])
    plan_ref = f"{SHARDS_DIR}/g{store.generation:04d}"
    specs = []
    for i, (first, stop) in enumerate(split_chunks(chunks, limit)):
        spec = {  # row ranges and checks only: every path a shard uses comes from its job folder and index
            "generation": store.generation,
            "shard": i,
            "fingerprint": store.fingerprint,
            "batch_size": batch_size,
            "chunks": [first, stop],
            "ranges": _row_ranges(chunks[first:stop]),
            "rows": sum(c.rows for c in chunks[first:stop]),
        }
        specs.append({**spec, "shard_fingerprint": _shard_fingerprint(spec)})
    for spec in specs:
        spec["shards"] = len(specs)
    store.gen.child(SHARD_SPECS).write_json(specs)
    store.counters.update(batch_size=batch_size, shards=len(specs), chunks=len(chunks))
    store.write("planned")
    log.info(
        "job %s: %d rows in %d chunk(s) of %d rows (%s) split into %d shard(s) of %s rows; plan %s",
        job_id,
        sum(f.rows for f in files),
        len(chunks),
        batch_size,
        why,
        len(specs),
        "/".join(str(s["rows"]) for s in specs),
        plan_ref,
    )
    return specs


# -- one shard -------------------------------------------------------------------------------------
class ShardRunner(JobRunner):
    """The engine over one shard's row ranges, with the plan's files, batch size and fit state."""

    def __init__(self, *args: Any, spec: Mapping[str, Any], plan: Location, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.plan = plan

    def prepare(self) -> tuple[Decision, CheckpointStore, list[sources.SourceFile], Any]:
        plan = self.plan.child("plan.json").read_json()
        if plan is None:
            raise ShardIncompleteError(f"shard plan {self.plan.uri} is missing; run the plan step first")
        files = [sources.SourceFile.from_dict(f) for f in plan["files"]]
        expected = fingerprint_of(files, self.processor, self.text_options)
        if expected != self.spec["fingerprint"]:
            raise BatchInputError(
                f"shard {self.spec['shard']}: the processor, its parameters, the CSV options or the library "
                f"versions on this worker differ from the plan's (fingerprint {expected} != "
                f"{self.spec['fingerprint']}); every shard must run the same job as the plan"
            )
        decision, store = self.open_generation(self.spec["shard_fingerprint"])
        if decision.resume and decision.previous:
            store.load(decision.previous)
        else:
            store.write("running")
        return decision, store, files, schema_from_text(plan["schema"])

    def validate_schema(self, schema: Any) -> None:
        """Nothing: ``plan_shards`` validated the job once (the fingerprint check proves this is that job)."""

    def fit(self, store: CheckpointStore, files: list[sources.SourceFile], schema: Any) -> None:
        saved = self.plan.child("fit_state.json").read_json()
        if saved is not None:
            self.processor.set_state(saved)
        elif getattr(self.processor, "fit_sample_size", 0) or getattr(self.processor, "stats_pass", False):
            raise ShardIncompleteError(f"shard plan {self.plan.uri} has no fit_state.json; re-run the plan")

    def plan_tasks(
        self, files: list[sources.SourceFile], batch_size: int, done: list[tuple[int, int, int]]
    ) -> list[workers.ChunkTask]:
        """Everything outside the shard's ranges counts as done: the global chunk boundaries are kept."""
        mine: dict[int, list[tuple[int, int]]] = {}
        for f, s, e in self.spec["ranges"]:
            mine.setdefault(f, []).append((s, e))
        outside = []
        for fi, f in enumerate(files):
            pos = 0
            for s, e in sorted(mine.get(fi, [])) + [(f.rows, f.rows)]:
                if pos < s:
                    outside.append((fi, pos, s))
                pos = e
        return plan_chunks(files, batch_size, [*done, *outside])

    def finalize(self, decision: Decision, resumed: int) -> JobResult:
        """Keep the partial states (no merge, no report); mark the shard finished."""
        store = self.store
        self._checkpoint("finalizing")
        records = sorted(store.records.values(), key=lambda r: (r["f"], r["s"]))
        rows_out = sum(r["rows_out"] for r in records)
        self.out.child(SHARD_DONE).write_json(
            {
                "shard": self.spec["shard"],
                "generation": store.generation,
                "fingerprint": store.fingerprint,
                "chunks": len(records),
                "rows_in": store.rows_done,
                "rows_out": rows_out,
                "finished_at": time.time(),
            }
        )
        store.write("succeeded")
        store.remove_stale(
            {r["part"] for r in records if r["part"]},
            {r["quarantine"] for r in records if r.get("quarantine")},
        )
        self.tracker.emit("completed", f"shard {self.spec['shard']}: {rows_out:,} rows out")
        return JobResult(
            output_uri=self.out.uri,
            rows_in=store.rows_done,
            rows_out=rows_out,
            chunks_total=len(records),
            chunks_processed=self.processed,
            chunks_resumed=resumed,
            chunks_skipped=0,
            report=None,
            duration_s=round(time.monotonic() - self.started, 3),
            job_id=self.job_id,
            generation=store.generation,
            fingerprint=store.fingerprint,
            batch_size=self.batch_size,
            resume_decision=decision.reason,
            extra={"shard": self.spec["shard"], "runs": store.counters.get("runs", 1)},
        )


def shard_folder(plan: Location, shard: int) -> Location:
    """Shard ``shard``'s folder inside a plan folder (``{job}/_shards/gNNNN/sNNNN``)."""
    return plan.child(f"s{int(shard):04d}")


def frozen_spec(
    out: Location, spec: Mapping[str, Any], shard: int | None = None
) -> tuple[Location, dict[str, Any]]:
    """The latest plan of the job folder ``out`` and shard ``shard``'s spec as that plan froze it.

    ``spec`` (it travelled through XCom) is only compared with the frozen one: any difference, in the row ranges
    or anything else, is a ``BatchInputError``. ``shard`` is the shard's own index (the mapped task's map index);
    ``None``: the spec's.
    """
    plan = _latest_plan(out)
    specs = plan.child(SHARD_SPECS).read_json() or []
    try:
        index = int(spec["shard"] if shard is None else shard)
    except (KeyError, TypeError, ValueError):
        raise BatchInputError(f"shard spec {spec!r} has no shard index") from None
    if not 0 <= index < len(specs):
        raise BatchInputError(f"shard {index}: the plan {plan.uri} has {len(specs)} shard(s)")
    frozen = specs[index]
    if dict(spec) != frozen:
        changed = sorted(k for k in set(spec) | set(frozen) if spec.get(k) != frozen.get(k))
        raise BatchInputError(
            f"shard {index}: the spec given to the task differs from the one the plan {plan.uri} froze "
            f"(keys {changed}); a spec is never trusted over the plan. Re-run the plan task"
        )
    return plan, frozen


# -- merge -----------------------------------------------------------------------------------------
def _latest_plan(out: Location) -> Location:
    root = out.child(SHARDS_DIR)
    gens = [n for n in root.listdir() if n.startswith("g") and root.child(n, SHARD_SPECS).exists()]
    if not gens:
        raise ShardIncompleteError(f"{out.uri} holds no shard plan; run plan_shards first")
    return root.child(gens[-1])


def _shard_records(plan: Location, spec: Mapping[str, Any]) -> tuple[Location, list[dict[str, Any]]]:
    """The finished records of one shard, checked against its spec; raises if it is missing or unfinished."""
    folder = shard_folder(plan, spec["shard"])
    done = folder.child(SHARD_DONE).read_json()
    if not isinstance(done, dict) or done.get("fingerprint") != spec["shard_fingerprint"]:
        raise ShardIncompleteError(
            f"shard {spec['shard']} of {spec['shards']} has not finished ({folder.uri} has no matching "
            f"{SHARD_DONE}); run or retry that shard before merging"
        )
    store = CheckpointStore(folder, int(done["generation"]), done["fingerprint"], "")
    manifest = store.gen.child(CHECKPOINT).read_json()
    if not isinstance(manifest, dict):
        raise ShardIncompleteError(f"shard {spec['shard']}: {store.gen.uri} has no checkpoint")
    store.load(manifest)
    records = sorted(store.records.values(), key=lambda r: (r["f"], r["s"]))
    if store.rows_done != int(spec["rows"]):
        raise ShardIncompleteError(
            f"shard {spec['shard']}: {store.rows_done} of its {spec['rows']} rows are checkpointed"
        )
    return store.gen, records


def _state(gen: Location, record: Mapping[str, Any]) -> Any:
    if record.get("state_ref"):
        return gen.child("states", record["state_ref"]).read_json()
    return record.get("state")


def merge_shards(
    output_path: Any,
    processor: Any,
    *,
    job_id: str | None = None,
    success_marker: bool | Callable[[Any], bool] = True,
    **processor_kwargs: Any,
) -> JobResult:
    """Merge every shard's partial states in source order, finalize once, and commit the job folder.

    Writes ``_manifest.json`` (every shard's parts, relative to ``output_path``, in source order),
    ``_report.json`` and ``_SUCCESS``, like a single-task run. Raises :class:`ShardIncompleteError` when a
    shard is missing or unfinished.

    :param success_marker: as ``run_batch_job``'s: a bool, or a callable given the final report (a quality
        job failed by ``fail_on`` commits its report and quarantine without ``_SUCCESS``).
    """
    out = Location.of(output_path)
    side_files.register(out)  # the shards' side files on object storage (see processors/side_files.py)
    try:
        return _merge_shards(out, processor, job_id=job_id, success_marker=success_marker, **processor_kwargs)
    finally:
        side_files.release(out)


def _merge_shards(
    out: Location,
    processor: Any,
    *,
    job_id: str | None,
    success_marker: bool | Callable[[Any], bool],
    **processor_kwargs: Any,
) -> JobResult:
    started = time.monotonic()
    plan = _latest_plan(out)
    specs = plan.child(SHARD_SPECS).read_json()
    proc = resolve_processor(processor, processor_kwargs)
    fit_state = plan.child("fit_state.json").read_json()
    if fit_state is not None:
        proc.set_state(fit_state)
    states: list[Any] = []
    parts: list[Any] = []
    quarantine: list[Any] = []
    skipped: list[Any] = []
    totals = {"rows_out": 0, "rows_quarantined": 0, "chunks": 0}
    for spec in specs:
        gen, records = _shard_records(plan, spec)
        prefix = out.relative(gen.path)
        states.extend(_state(gen, r) for r in records if not r.get("skipped"))
        skipped.extend(f"{prefix}/skipped/{r['skipped']}" for r in records if r.get("skipped"))
        parts.extend(f"{prefix}/parts/{r['part']}" for r in records if r["part"])
        quarantine.extend(f"{prefix}/quarantine/{r['quarantine']}" for r in records if r.get("quarantine"))
        totals["rows_out"] += sum(r["rows_out"] for r in records)
        totals["rows_quarantined"] += sum(r.get("rows_quarantined", 0) for r in records)
        totals["chunks"] += len(records)
    report = proc.finalize(proc.merge(states))
    report = to_jsonable(report) if report is not None else None
    rows_in = sum(int(s["rows"]) for s in specs)
    summary = {"rows_in": rows_in, **totals, "chunks_skipped": len(skipped)}
    success = success_marker(report) if callable(success_marker) else success_marker
    listed = {"parts": parts, "quarantine": quarantine, "skipped": skipped}
    _commit(out, plan, specs, listed, report, summary, success=bool(success))
    duration = round(time.monotonic() - started, 3)
    log.info(
        "job %s: merged %d shard(s), %d chunk(s), %d rows out in %.2fs; output %s",
        job_id or out.name,
        len(specs),
        totals["chunks"],
        totals["rows_out"],
        duration,
        out.uri,
    )
    return JobResult(
        output_uri=out.uri,
        rows_in=rows_in,
        rows_out=totals["rows_out"],
        chunks_total=totals["chunks"],
        chunks_processed=0,
        chunks_resumed=0,
        chunks_skipped=len(skipped),
        report=report,
        duration_s=duration,
        job_id=job_id or out.name,
        generation=int(plan.name[1:]),
        fingerprint=specs[0]["fingerprint"],
        batch_size=int(specs[0]["batch_size"]),
        resume_decision="merged shards",
        extra={"shards": len(specs), "rows_quarantined": totals["rows_quarantined"], "merge_s": duration},
    )


def _commit(
    out: Location,
    plan: Location,
    specs: list[dict[str, Any]],
    listed: dict[str, list[str]],
    report: Any,
    summary: dict[str, Any],
    success: bool = True,
) -> None:
    """Report, committed manifest, ``_SUCCESS`` (removed instead when not ``success``); then mark the plan
    succeeded and drop older plans."""
    plan.child("_report.json").write_json(report)
    out.child(sources.OUTPUT_MANIFEST).write_json(
        {
            "format": sources.OUTPUT_FORMAT,
            "format_version": FORMAT_VERSION,
            "generation": int(plan.name[1:]),
            "fingerprint": specs[0]["fingerprint"],
            "job_id": out.name,
            **listed,
            "report": f"{out.relative(plan.path)}/_report.json",
            "summary": summary,
            "shards": len(specs),
        }
    )
    out.child("_report.json").write_json(report)
    marker = out.child("_SUCCESS")
    if success:
        marker.write_bytes(b"")
    elif marker.exists():
        marker.remove()
    working = plan.child(CHECKPOINT).read_json() or {}
    working.update(status="succeeded", updated_at=time.time())
    plan.child(CHECKPOINT).write_json(working)
    root = out.child(SHARDS_DIR)
    for name in root.listdir():
        if name.startswith("g") and name < plan.name:
            root.child(name).remove(recursive=True)


def __getattr__(name: str) -> Any:
    if (
        name == "run_shard"
    ):  # deprecated location: it runs monitored, so it lives in airflow_batch_provider.jobs
        from airflow_batch_provider.jobs import run_shard

        return run_shard
    raise AttributeError(name)
