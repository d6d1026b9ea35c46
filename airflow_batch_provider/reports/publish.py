"""Write ``_report.html`` next to a job's ``_report.json``, with the change since the previous run.

:func:`write_html_report` reads the committed ``_report.json`` of a ``data_profiling`` or ``data_quality`` job
folder and writes ``_report.html`` beside it (:mod:`~airflow_batch_provider.reports.render`). For a quality
job it also reads the committed manifest for the quarantine's location and, when the quarantine stores values
(``quarantine_values=True``), a few failing rows per failed rule; a values-free quarantine gives none.

The previous run: ``history`` is a small JSON file per task (the operators keep it at
``{base_path}/_records/reports/{dag_id}/{task_id}/{map_index}.json``) holding the digest of the latest run
(:func:`~airflow_batch_provider.reports.render.profile_digest` / ``quality_digest``: counts per column or rule,
no row values) and of the run before it. A retry or a re-run of the same run id compares with the run before
it, so the comparison does not change when a task is retried. No Airflow imports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_batch_provider.reports import render
from airflow_batch_provider.storage import Location

log = logging.getLogger(__name__)

REPORT_HTML = "_report.html"
REPORT_JSON = "_report.json"
MANIFEST = "_manifest.json"
POSITION_COLUMNS = ("_source_file_index", "_source_row", "_failed_rules")
EXAMPLE_SCAN_ROWS = 20_000  # quarantined rows read at most to find examples
EXAMPLE_COLUMNS = 8  # columns shown for a rule that names none (expressions, unique over all columns)


def report_kind(report: Any) -> str | None:
    """``data_profiling``, ``data_quality`` or None (another processor's report)."""
    if not isinstance(report, Mapping):
        return None
    if report.get("processor") == "data_profiling" or (
        isinstance(report.get("columns"), Mapping) and "column_count" in report
    ):
        return "data_profiling"
    if isinstance(report.get("rules"), list) and "score" in report and "rows_failed" in report:
        return "data_quality"
    return None


def digest(report: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = report_kind(report)
    if kind == "data_profiling":
        return render.profile_digest(report)
    if kind == "data_quality":
        return render.quality_digest(report)
    return None


def exchange_history(
    history: Any, run_id: str, current: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The previous run's digest (and its run id) for ``run_id``; records ``current`` as ``run_id``'s."""
    loc = Location.of(history)
    old = loc.read_json(None)
    previous, previous_run = None, ""
    if isinstance(old, Mapping):
        if old.get("run_id") != run_id:
            previous, previous_run = old.get("digest"), str(old.get("run_id") or "")
        else:  # a retry or re-run of the same run: keep comparing with the run before it
            previous, previous_run = old.get("previous"), str(old.get("previous_run_id") or "")
    if not isinstance(previous, Mapping) or previous.get("kind") != current.get("kind"):
        previous, previous_run = None, ""
    loc.write_json(
        {"run_id": run_id, "digest": dict(current), "previous": previous, "previous_run_id": previous_run}
    )
    return (dict(previous) if previous else None), previous_run


def _quarantine(out: Location) -> tuple[list[Location], str]:
    manifest = out.child(MANIFEST).read_json({}) or {}
    parts = [out.child(p) for p in manifest.get("quarantine") or [] if isinstance(p, str) and ".." not in p]
    folder = out.uri
    if parts:
        folder = parts[0].uri.rsplit("/", 1)[0]
    return parts, folder


def _stores_values(part: Location) -> bool:
    import pyarrow.parquet as pq

    with part.fs.open(part.path, "rb") as fh:
        names = pq.ParquetFile(fh).schema_arrow.names
    return any(n not in POSITION_COLUMNS for n in names)


def failing_examples(
    parts: list[Location], report: Mapping[str, Any], per_rule: int = render.MAX_EXAMPLES
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_rule`` quarantined rows per failed rule (its columns, or the first few), from the first
    ``EXAMPLE_SCAN_ROWS`` quarantined rows. Call it only on a quarantine that stores values."""
    import pyarrow.parquet as pq

    wanted = {
        str(r["name"]): [str(c) for c in r.get("columns") or []]
        for r in report.get("rules") or []
        if r.get("failed") and r.get("type") != "row_count"
    }
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
    scanned = 0
    for part in parts:
        if scanned >= EXAMPLE_SCAN_ROWS or all(len(v) >= per_rule for v in found.values()):
            break
        with part.fs.open(part.path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=2_000):
                rows = batch.to_pylist()
                scanned += len(rows)
                for row in rows:
                    for name in row.get("_failed_rules") or []:
                        bucket = found.get(str(name))
                        if bucket is None or len(bucket) >= per_rule:
                            continue
                        keys = [c for c in wanted[str(name)] if c in row] or [
                            k for k in row if k not in POSITION_COLUMNS
                        ][:EXAMPLE_COLUMNS]
                        example = {k: row[k] for k in keys}
                        example.update({k: row.get(k) for k in POSITION_COLUMNS[:2]})
                        bucket.append(example)
                if scanned >= EXAMPLE_SCAN_ROWS or all(len(v) >= per_rule for v in found.values()):
                    break
    return {k: v for k, v in found.items() if v}


def render_html(
    report: Mapping[str, Any],
    out: Any,
    *,
    title: str | None = None,
    subtitle: str = "",
    previous: Mapping[str, Any] | None = None,
) -> str | None:
    """The page for ``report`` (the report of the job folder ``out``), or None for another processor's."""
    kind = report_kind(report)
    if kind == "data_profiling":
        return render.render_profile(
            report, title=title or "Data profile", subtitle=subtitle, previous=previous
        )
    if kind != "data_quality":
        return None
    loc = Location.of(out)
    parts, folder = _quarantine(loc)
    values = bool(parts) and _stores_values(parts[0])
    examples = failing_examples(parts, report) if values else None
    return render.render_quality(
        report,
        title=title or "Data quality",
        subtitle=subtitle,
        previous=previous,
        quarantine={"uri": folder, "parts": len(parts), "values": values},
        examples=examples,
    )


def write_html_report(
    output: Any,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    history: Any = None,
    run_id: str = "",
) -> str | None:
    """Write ``{output}/_report.html`` from ``{output}/_report.json``; returns its URI, or None when the folder
    holds no profiling/quality report.

    :param output: the job folder (path, URI, ``ObjectStoragePath`` or ``Location``).
    :param history: the task's history file (see the module); None: no comparison with a previous run.
    :param run_id: this run's id, recorded in ``history``.
    """
    out = Location.of(output)
    report = out.child(REPORT_JSON).read_json(None)
    current = digest(report) if isinstance(report, Mapping) else None
    if current is None:
        return None
    previous, previous_run = (None, "")
    if history is not None:
        previous, previous_run = exchange_history(history, run_id, current)
    sub = out.uri if subtitle is None else subtitle
    if previous_run:
        sub += f" \u00b7 compared with run {previous_run}"
    page = render_html(report, out, title=title, subtitle=sub, previous=previous)
    if page is None:
        return None
    data = page.encode("utf-8")
    if len(data) > render.MAX_BYTES:  # the budgets keep pages far below; never write an oversized one
        log.warning(
            "report page of %s is %d bytes, over %d: not written", out.uri, len(data), render.MAX_BYTES
        )
        return None
    target = out.child(REPORT_HTML)
    target.write_bytes(data)
    return target.uri
