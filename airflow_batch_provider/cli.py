"""``airflow-batch``: command-line helpers of airflow-batch-provider.

``airflow-batch recommend SOURCE --processor NAME [--target-memory-mb N] [--json]`` prints the batch size
and concurrency recommended for SOURCE, the reasons, and advice about the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from airflow_batch_provider.exceptions import BatchInputError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-batch", description=__doc__.splitlines()[0])
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
    return parser


def _text(source: str, rec: Any, system: list[Any]) -> str:
    lines = [
        f"Recommendation for {source} (processor {rec.processor_name!r})",
        f"  batch size:          {rec.recommended_batch_size:,} rows",
        f"  concurrency:         {rec.recommended_concurrency}",
        f"  estimated memory:    {rec.estimated_memory_usage_mb:,.1f} MB "
        f"(target {rec.target_memory_usage_mb:,.0f} MB)",
        f"  estimated duration:  {rec.estimated_duration_s:,.1f} s for {rec.total_rows:,} rows",
        "Reasons:",
        *(f"  - {r}" for r in rec.reasons),
        "System:",
        *(f"  [{s.severity}] {s.kind}: {s.message}" for s in system),
    ]
    return "\n".join(lines)


def _recommend(args: argparse.Namespace) -> int:
    from airflow_batch_provider import tuning

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
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(_text(args.source, rec, system) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "recommend":
        return _recommend(args)
    return EXIT_BAD_INPUT  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
