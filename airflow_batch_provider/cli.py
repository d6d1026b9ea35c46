"""``airflow-batch``: command-line helpers of airflow-batch-provider.

``airflow-batch recommend SOURCE --processor NAME [--target-memory-mb N] [--json]`` prints the batch size
and concurrency recommended for SOURCE, the reasons, and advice about the machine. An unknown NAME is refused
with the close match. Row counts are exact for Parquet (footers) and for the first text file (indexed); rows
of further CSV / JSON Lines files are extrapolated from their size and labelled as an estimate.

``airflow-batch --version`` prints the installed version.

``airflow-batch failures [--hours 24] [--base PATH] [--limit 10] [--json]`` prints the failure statistics
(per class: failures, recovered, time lost) and the most recent failures, after the folder it read and where
its base path came from (and, when there is no records folder there, says so instead of a bare 0).

``airflow-batch cleanup [--days 7] [--base PATH] [--dry-run] [--json]`` deletes failure records older than
``--days`` (job folders are cleaned by ``BatchCleanupOperator``).

``airflow-batch status [JOB_ID] [--base PATH] [--json]`` prints the running jobs (from their heartbeats) with
their progress and processed rows; with JOB_ID, that job's status (running, stale, failed, succeeded or
not_found) from its heartbeat, else its checkpoint or committed manifest.

``airflow-batch suggest-rules SOURCE [--from-profile]`` prints, as JSON, the rules ``data_quality`` derives
from SOURCE when given none (completeness, duplicate rows, type consistency, outliers), to paste into
``rules=`` and edit; ``--from-profile``: SOURCE is a saved ``data_profiling`` report (``_report.json``).

The base path is ``--base``, else ``[batch_provider] base_path`` of the Airflow configuration
(``AIRFLOW__BATCH_PROVIDER__BASE_PATH``), else ``$AIRFLOW_HOME/batch_provider``: the operators' and the
dashboard's. Records live in ``{base}/_records`` and are opened through ``--conn-id``, else
``[batch_provider] conn_id``, like the jobs write them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_batch_provider.exceptions import BatchInputError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-batch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "recommend",
        help="recommend a batch size and concurrency for a source",
        description="Sample SOURCE and recommend a batch size and concurrency for a processor.",
    )
    rec.add_argument("source", metavar="SOURCE", help="file, folder, glob or URI of Parquet/CSV/JSONL data")
    rec.add_argument("--processor", required=True, metavar="NAME", help="processor name, e.g. data_quality")
    rec.add_argument("--target-memory-mb", type=float, default=None, metavar="N", help="memory target in MB")
    rec.add_argument("--json", action="store_true", help="print JSON instead of text")
    fail = sub.add_parser(
        "failures",
        help="failure statistics and recent failures",
        description="Print failure statistics per class and the most recent failures.",
    )
    fail.add_argument("--hours", type=float, default=24.0, metavar="H", help="look back H hours (24)")
    fail.add_argument("--limit", type=int, default=10, metavar="N", help="recent failures to list (10)")
    _common(fail)
    clean = sub.add_parser(
        "cleanup",
        help="delete old failure records",
        description="Delete failure records older than --days days.",
    )
    clean.add_argument("--days", type=float, default=7.0, metavar="D", help="keep D days of records (7)")
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    _common(clean)
    stat = sub.add_parser(
        "status",
        help="running jobs and their progress, or one job's status",
        description="Print the running jobs with their progress, or the status of JOB_ID.",
    )
    stat.add_argument(
        "job_id", nargs="?", metavar="JOB_ID", help="a job id (dag_id/run_id/task_id/map_index for a task)"
    )
    _common(stat)
    sug = sub.add_parser(
        "suggest-rules",
        help="data_quality rules derived from a source (the default assessment)",
        description="Print, as JSON, the rules data_quality derives from SOURCE when given none.",
    )
    sug.add_argument(
        "source", metavar="SOURCE", help="file, folder, glob or URI of Parquet/CSV/JSONL data (or a report)"
    )
    sug.add_argument(
        "--from-profile",
        action="store_true",
        help="SOURCE is a saved data_profiling (or data_quality) report JSON, e.g. a job's _report.json",
    )
    return parser


def _version() -> str:
    """The installed distribution's version (the package's own when run from a checkout without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airflow-batch-provider")
    except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path, not installed
        from airflow_batch_provider import __version__

        return __version__


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default=None, metavar="PATH", help="base path of the jobs (see above)")
    parser.add_argument(
        "--conn-id",
        default=None,
        metavar="ID",
        help="Airflow connection for the base path ([batch_provider] conn_id)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def resolve_base_path(explicit: str | None = None) -> str:
    """``--base``, else the operators' base path (``[batch_provider] base_path``, ``operators.conf``)."""
    if explicit:
        return explicit
    from airflow_batch_provider.operators.conf import base_path

    return base_path()


def base_path_source(explicit: str | None = None) -> tuple[str, str]:
    """The base path the commands read and where it came from, in words (printed with every result)."""
    import os

    from airflow_batch_provider import settings

    if explicit:
        return explicit, "--base"
    from airflow_batch_provider.operators.conf import provider_setting

    configured = provider_setting("base_path")
    env_var = settings.option("base_path").env_var
    if configured:
        if os.environ.get(env_var):
            how = env_var
        else:
            from airflow.configuration import AIRFLOW_CONFIG

            how = f"[{settings.SECTION}] base_path in the Airflow configuration ({AIRFLOW_CONFIG})"
    elif os.environ.get(settings.LEGACY_BASE_PATH_ENV):
        how = f"{settings.LEGACY_BASE_PATH_ENV} (deprecated; set {env_var})"
    else:
        home = os.environ.get("AIRFLOW_HOME")
        how = (
            f"the default $AIRFLOW_HOME/batch_provider (AIRFLOW_HOME={home}"
            if home
            else "the default $AIRFLOW_HOME/batch_provider (AIRFLOW_HOME is not set: ~/airflow"
        ) + f"; nothing set {env_var} or [{settings.SECTION}] base_path)"
    # settings.resolve_base_path, not --base's resolver: it also warns about a deprecated variable it ignores
    return settings.resolve_base_path(configured), how


def _records_root(args: argparse.Namespace) -> tuple[str, Any, str]:
    """The records folder as text (for messages), as the jobs open it (through the connection), and where its
    base path came from."""
    from airflow_batch_provider.operators.conf import records_target

    base, how = base_path_source(args.base)
    target = records_target(base, args.conn_id)
    return str(target), target, how


def _records_exist(target: Any) -> bool:
    from airflow_batch_provider.storage import Location

    try:
        return Location.of(target).exists()
    except OSError:
        return False


def _where(how: str, exists: bool) -> str:
    """Where the base path came from, and what it means when there is no records folder there."""
    line = f"  base path from {how}"
    if not exists:
        line += (
            "\n  no records folder there: no job under this base path has recorded a failure yet, or the jobs "
            "write elsewhere (pass --base, or set the base path the jobs use)"
        )
    return line


def _text(source: str, rec: Any, system: Iterable[Any]) -> str:
    rows = (
        f"{rec.total_rows:,} rows" if rec.total_rows_exact else f"about {rec.total_rows:,} rows (estimated)"
    )
    lines = [
        f"Recommendation for {source} (processor {rec.processor_name!r})",
        f"  batch size:          {rec.recommended_batch_size:,} rows",
        f"  concurrency:         {rec.recommended_concurrency}",
        f"  estimated memory:    {rec.estimated_memory_usage_mb:,.1f} MB "
        f"(target {rec.target_memory_usage_mb:,.0f} MB)",
        f"  estimated duration:  {rec.estimated_duration_s:,.1f} s for {rows}",
        "Reasons:",
        *(f"  - {r}" for r in rec.reasons),
        "System:",
        *(f"  [{s.severity}] {s.kind}: {s.message}" for s in system),
    ]
    return "\n".join(lines)


def unknown_processor(name: str) -> str | None:
    """Why ``name`` is not a processor ``recommend`` knows (with the close match), or None: a name with a
    profile, a registered processor (built-in, entry point) or an importable ``module:attr`` path."""
    import difflib

    from airflow_batch_provider.engine.sizing import processing_profile_names
    from airflow_batch_provider.exceptions import ProcessorNotFoundError
    from airflow_batch_provider.processors.registry import lookup, registered_processors

    profiles = processing_profile_names()
    if name in profiles:
        return None
    try:
        lookup(name)
        return None
    except ProcessorNotFoundError as err:
        if "." in name or ":" in name:
            return str(err)
    known = sorted(set(profiles) | set(registered_processors()))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown processor {name!r}; {hint}known: {', '.join(known)}, or an import path 'module:attr'"


def _recommend(args: argparse.Namespace) -> int:
    from airflow_batch_provider import tuning

    problem = unknown_processor(args.processor)
    if problem:
        sys.stderr.write(f"airflow-batch recommend: --processor: {problem}\n")
        return EXIT_BAD_INPUT
    try:
        rec = tuning.calculate_optimal_batch_config(args.source, args.processor, args.target_memory_mb)
    except (BatchInputError, OSError) as err:
        sys.stderr.write(f"airflow-batch recommend: cannot use source {args.source!r}: {err}\n")
        return EXIT_BAD_INPUT
    system = tuning.get_system_recommendations()
    if args.json:
        payload = {
            "source": args.source,
            "recommendation": rec.to_dict(),
            "system": [s.to_dict() for s in system],
        }
        _output.write(json.dumps(payload, indent=2) + "\n")
    else:
        _output.write(_text(args.source, rec, system) + "\n")
    return 0


def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return "?"


def _short(value: Any, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _failures_text(root: str, stats: dict[str, Any], recent: Sequence[Mapping[str, Any]]) -> str:
    rate = "-" if stats["recovery_rate"] is None else f"{stats['recovery_rate']:.0%}"
    lines = [
        f"Failures in the last {stats['hours']:g} h under {root}",
        f"  total {stats['total']}, recovered {stats['recovered']} ({rate}), "
        f"most common: {stats['most_common'] or '-'}, time lost {stats['time_lost_s']:,.1f} s, "
        f"jobs affected {len(stats['jobs'])}",
    ]
    if stats["total"]:
        lines += ["", f"  {'class':<16} {'failures':>8} {'recovered':>9} {'rate':>5} {'time lost':>11}"]
        for cls, row in stats["classes"].items():
            lines.append(
                f"  {cls:<16} {row['failures']:>8} {row['recovered']:>9} "
                f"{row['recovered'] / row['failures']:>5.0%} {row['time_lost_s']:>9,.1f} s"
            )
    if recent:
        lines += ["", f"Most recent {len(recent)} (newest first):"]
        lines.append(
            f"  {'time (UTC)':<19} {'job':<32} {'chunk':<16} {'class':<15} {'strategy':<19} {'ok':<3} error"
        )
        for r in recent:
            lines.append(
                f"  {_when(r.get('ts')):<19} {_short(r.get('job_id'), 32):<32} "
                f"{_short(r.get('chunk_label'), 16):<16} {_short(r.get('class'), 15):<15} "
                f"{_short(r.get('strategy'), 19):<19} {'yes' if r.get('recovered') else 'no':<3} "
                f"{_short(r.get('error_type'), 24)}: {_short(r.get('error'), 80)}"
            )
    return "\n".join(lines)


def _failures(args: argparse.Namespace) -> int:
    from airflow_batch_provider.engine import records

    root, target, how = _records_root(args)
    exists = _records_exist(target)
    stats = records.get_failure_statistics(target, hours=args.hours)
    recent = records.get_job_failure_history(target, hours=args.hours, limit=args.limit)
    if args.json:
        payload = {
            "root": root,
            "base_path_from": how,
            "root_exists": exists,
            "statistics": stats,
            "recent": recent,
        }
        _output.write(json.dumps(payload, indent=2) + "\n")
    else:
        head, _, rest = _failures_text(root, stats, recent).partition("\n")
        _output.write(f"{head}\n{_where(how, exists)}\n{rest}\n")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from airflow_batch_provider.engine import records

    root, target, how = _records_root(args)
    exists = _records_exist(target)
    try:
        result = records.cleanup_old_records(target, days=args.days, dry_run=args.dry_run)
    except ValueError as err:
        sys.stderr.write(f"airflow-batch cleanup: {err}\n")
        return EXIT_BAD_INPUT
    if args.json:
        _output.write(
            json.dumps({"root": root, "base_path_from": how, "root_exists": exists, **result}, indent=2)
            + "\n"
        )
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    lines = [
        f"{verb} {result['removed']} failure records older than {args.days:g} days under {root}",
        _where(how, exists),
    ]
    lines += [f"  {uri}" for uri in result["uris"]] if args.dry_run else []
    lines += [
        f"left alone (a symbolic link; cleanup never follows links): {uri}" for uri in result["refused"]
    ]
    _output.write("\n".join(lines) + "\n")
    return 0


def _suggest_rules(args: argparse.Namespace) -> int:
    """Profile SOURCE as the default assessment does (a job in a temporary folder), or read a saved report."""
    from airflow_batch_provider.processors import quality_defaults

    try:
        if args.from_profile:
            from airflow_batch_provider.storage import Location

            profile = Location.of(args.source).read_json()
            if not isinstance(profile, dict):
                raise BatchInputError("no JSON report there; give a data_profiling job's _report.json")
        else:
            import tempfile

            from airflow_batch_provider.jobs import run_batch_job

            with tempfile.TemporaryDirectory(prefix="suggest-rules-") as folder:
                result = run_batch_job(
                    args.source, quality_defaults.QualityProfileProcessor(), output_path=folder, monitor=False
                )
            profile = result.report or {}
        rules = quality_defaults.suggest_rules(profile)
    except (BatchInputError, OSError, ValueError) as err:
        sys.stderr.write(f"airflow-batch suggest-rules: cannot use {args.source!r}: {err}\n")
        return EXIT_BAD_INPUT
    _output.write(json.dumps(rules, indent=2) + "\n")
    return 0


def _job_line(job: Mapping[str, Any]) -> str:
    rate = job.get("rows_per_second")
    return (
        f"{job.get('status', '?')}, {float(job.get('progress_percentage') or 0):.1f}% "
        f"({int(job.get('processed_items') or 0):,} of {int(job.get('total_items') or 0):,} rows, "
        f"{int(job.get('chunks_done') or 0):,}/{int(job.get('chunks_total') or 0):,} chunks"
        + (f", {float(rate):,.0f} rows/s" if rate else "")
        + ")"
    )


def _status(args: argparse.Namespace) -> int:
    from airflow_batch_provider.monitoring import status
    from airflow_batch_provider.operators.conf import conn_id, storage_target

    base, how = base_path_source(args.base)
    target = storage_target(base, conn_id(args.conn_id))
    if args.job_id:
        job = status.get_job_status(args.job_id, base_path=target)
        if args.json:
            _output.write(
                json.dumps({"base": str(target), "base_path_from": how, **job}, indent=2, default=str) + "\n"
            )
        else:
            lines = [f"Job {args.job_id} under {target} ({how}): {_job_line(job)}"]
            lines += [f"  output: {job['output_uri']}"] if job.get("output_uri") else []
            lines += [f"  error: {job['error']}"] if job.get("error") else []
            lines += [f"  looked in: {', '.join(job['searched'])}"] if job.get("searched") else []
            _output.write("\n".join(lines) + "\n")
        return 0 if job["status"] != "not_found" else 1
    system = status.get_system_status(target)
    if args.json:
        _output.write(
            json.dumps({"base": str(target), "base_path_from": how, **system}, indent=2, default=str) + "\n"
        )
        return 0
    lines = [
        f"Jobs under {system['records_root']} ({how}): {system['running_jobs']} running, "
        f"{system['stale_jobs']} stale; {system['processed_items']:,} rows processed by the running jobs, "
        f"{system['active_alerts']} active alert(s). Queued work is Airflow's: see the UI or the REST API."
    ]
    lines += [f"  {job['job_id']}: {_job_line(job)}" for job in system["jobs"]]
    lines += [
        f"  {job['job_id']}: stale (no heartbeat for {job['heartbeat_age_s']} s)" for job in system["stale"]
    ]
    _output.write("\n".join(lines) + "\n")
    return 0


COMMANDS = {
    "recommend": _recommend,
    "failures": _failures,
    "cleanup": _cleanup,
    "suggest-rules": _suggest_rules,
    "status": _status,
}


class _Output:
    """The command's own output: the stdout ``main`` was called with. While a command runs, everything else
    printed to stdout (Airflow's and botocore's log lines, say) goes to stderr, so ``--json`` stays JSON."""

    stream: Any = None

    def write(self, text: str) -> None:
        (self.stream or sys.stdout).write(text)


_output = _Output()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = COMMANDS.get(args.command)
    if command is None:
        return EXIT_BAD_INPUT  # pragma: no cover - argparse rejects unknown commands
    _output.stream = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return command(args)
    finally:
        _output.stream = None


if __name__ == "__main__":
    sys.exit(main())
