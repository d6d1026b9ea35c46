#!/usr/bin/env python
"""Two versions of the package on the same work, in one run: did a change (a refactor) move speed or memory?

    python benchmarks/bench_versions.py --before 871f322 [--after WORKTREE] [--rows 1000000] [--repeats 3]
                                        [--processors noop,data_profiling,...] [--out benchmarks/results/versions.json]

``--before`` is a git revision, exported with ``git archive`` to a temporary folder; ``--after`` defaults to
this checkout. Every measurement is a fresh ``python -c`` subprocess with ``PYTHONPATH`` set to one of the two
trees, timed around ``run_batch_job`` only (imports excluded), with a fixed ``BatchConfig(batch_size=250_000,
max_concurrent_batches=2)`` so both versions run the same plan (quality: not_null and unique on ``id``, a range on
``amount``; features: two scalings and a one-hot column) (sizing decisions are not what is compared).
Repeats are interleaved (ABBA). Peak memory is the summed PSS of the child's whole process tree (the job and
its forked workers), sampled every 50 ms. Prints ``after / before`` of the median seconds per processor and
both peaks; compare ratios from one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = """
import json, sys, time
from airflow_batch_provider.engine import run_batch_job
name, source, out = sys.argv[1:4]
processor = (lambda batch, ctx: None) if name == "noop" else name
params = {
    "data_quality": {"rules": [{"type": "not_null", "column": "id"}, {"type": "unique", "column": "id"},
                               {"type": "between", "column": "amount", "min": 0, "max": 500}]},
    "feature_engineering": {"scale": {"amount": "standard", "price": "minmax"},
                            "encode": {"country": "onehot"}},
}.get(name, {})
t = time.perf_counter()
result = run_batch_job(source, processor, output_path=out,
                       config={"batch_size": 250_000, "max_concurrent_batches": 2}, **params)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": result.rows_in}))
"""


def tree_pss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def measure(tree: Path, name: str, source: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(out.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, name, str(source), str(out)], env=env, stdout=subprocess.PIPE, text=True
    )
    watched, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_pss_mb(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{name} on {tree} failed (exit {proc.returncode})")
    return {**json.loads(stdout.strip().splitlines()[-1]), "pss_peak_mb": round(peak, 1)}


def export(rev: str, folder: Path) -> Path:
    archive = folder / "before.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "before", filter="data")
    return folder / "before"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default=str(ROOT))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--processors", default="noop,data_profiling,data_quality,feature_engineering,anomaly_detection"
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "versions.json"))
    args = ap.parse_args()
    import pyarrow.parquet as pq
    from bench_engine import make_block  # the engine benchmark's deterministic 16-column data

    with tempfile.TemporaryDirectory(prefix="abp-versions-") as tmp:
        work = Path(tmp)
        trees = {"before": export(args.before, work), "after": Path(args.after)}
        source = work / "data.parquet"
        with pq.ParquetWriter(source, make_block(0, 1, 0).schema) as writer:
            for start in range(0, args.rows, 100_000):
                writer.write_table(make_block(start, min(100_000, args.rows - start), start))
        runs: dict[str, dict[str, list[dict]]] = {}
        started = time.perf_counter()
        for name in args.processors.split(","):
            runs[name] = {"before": [], "after": []}
            for r in range(args.repeats):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for label in order:
                    out = work / f"out-{name}-{label}-{r}" / "job"
                    runs[name][label].append(measure(trees[label], name, source, out))
        summary = {}
        for name, by in runs.items():
            sec = {k: statistics.median(m["seconds"] for m in v) for k, v in by.items()}
            pss = {k: max(m["pss_peak_mb"] for m in v) for k, v in by.items()}
            summary[name] = {
                "seconds_median": sec,
                "pss_peak_mb": pss,
                "time_ratio_after_over_before": round(sec["after"] / sec["before"], 3),
                "pss_ratio_after_over_before": round(pss["after"] / pss["before"], 3),
            }
            print(
                f"{name:20s} before {sec['before']:6.2f} s  after {sec['after']:6.2f} s  "
                f"time after/before {sec['after'] / sec['before']:.3f}  "
                f"tree PSS {pss['before']:.0f} -> {pss['after']:.0f} MB"
            )
    doc = {
        "benchmark": "versions",
        "command": " ".join(sys.argv),
        "before": args.before,
        "rows": args.rows,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"raw JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
