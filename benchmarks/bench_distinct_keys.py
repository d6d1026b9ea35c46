#!/usr/bin/env python
"""Peak memory of exact distinct / unique / duplicate state over 10,000,000 distinct keys.

One command, one run::

    python benchmarks/bench_distinct_keys.py [--keys 10000000] [--memory-limit-mb 512]
                                             [--out benchmarks/results/distinct_keys.json]
                                             [--workdir DIR] [--keep] [--only quality,profiling]

The source: two Parquet files (100k-row row groups) holding ``--keys`` distinct int64 keys (a random
permutation, scrambled), plus ``amount`` (float64), ``category`` (text, 12 values) and ``ts``
(timestamp). ``DUPLICATES`` extra rows repeat the key of the row just before a 500k-row chunk boundary
(and the file boundary) right after it, so the duplicates straddle chunk edges. Total rows: keys + dups.

Each measurement runs in a fresh ``python bench_distinct_keys.py --child ...`` subprocess while the
driver polls the whole process tree (the job parent + its forked chunk workers) with psutil every
~20 ms: per process the kernel's peak RSS (``VmHWM``), and per sample the summed RSS and summed PSS
(``/proc/<pid>/smaps_rollup``; forked workers share pages copy-on-write, so summed RSS double-counts
them and summed PSS does not). Reported: parent peak, max worker peak, peak of the summed tree RSS
and PSS, rows/s, whether each stayed under ``--memory-limit-mb``, and whether the job's answer is
exact (distinct keys and duplicate counts equal the generated ones).

a. quality: ``run_batch_job(src, "data_quality", rules=[{"type": "unique", "column": "key"}],
   config=BatchConfig(batch_size=500_000, max_concurrent_batches=2, memory_limit_mb=512))``
b. profiling: ``run_batch_job(src, "data_profiling", columns=["key"], config=same)``

Data is deterministic (fixed seed). The temp working folder is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 20260415
BATCH = 500_000
ROW_GROUP = 100_000
DUPLICATES = 19
RESULT_MARK = "@@BENCH_RESULT@@ "
MB = 2**20


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- data --------------------------------------------------------------------------------------------
def make_keys(n_keys: int) -> Any:
    """``n_keys`` distinct int64 keys in random order, plus duplicates right after chunk boundaries."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    keys = rng.permutation(n_keys).astype(np.int64)
    keys = keys * np.int64(0x9E3779B1) + np.int64(1_000_003)  # scrambled, still distinct (odd multiplier)
    # insert a duplicate of the previous row's key at the first rows after chunk boundaries
    where = [b for b in range(BATCH, n_keys, BATCH)][:DUPLICATES]
    return np.insert(keys, where, keys[np.asarray(where) - 1]), len(where)


def write_source(folder: Path, n_keys: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    keys, dups = make_keys(n_keys)
    rows = len(keys)
    half = rows // 2 + 1  # the second file starts right after a duplicate: one straddles the file edge
    rng = np.random.default_rng(SEED + 1)
    cats = np.array([f"cat_{i:02d}" for i in range(12)], dtype=object)
    for name, lo, hi in (("a.parquet", 0, half), ("b.parquet", half, rows)):
        with pq.ParquetWriter(
            folder / name,
            pa.schema(
                [
                    ("key", pa.int64()),
                    ("amount", pa.float64()),
                    ("category", pa.string()),
                    ("ts", pa.timestamp("us")),
                ]
            ),
        ) as writer:
            for s in range(lo, hi, ROW_GROUP):
                e = min(hi, s + ROW_GROUP)
                n = e - s
                writer.write_table(
                    pa.table(
                        {
                            "key": keys[s:e],
                            "amount": rng.normal(100, 30, n),
                            "category": cats[rng.integers(0, len(cats), n)],
                            "ts": (
                                np.int64(1_700_000_000_000_000) + np.arange(s, e, dtype=np.int64) * 1_000_000
                            ).astype("datetime64[us]"),
                        }
                    ),
                    row_group_size=ROW_GROUP,
                )
    return {"rows": rows, "distinct_keys": n_keys, "duplicates": dups, "files": 2}


# -- child: one measurement ---------------------------------------------------------------------------
def child(kind: str, src: str, workdir: str, limit_mb: int) -> None:
    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.jobs import run_batch_job

    cfg = BatchConfig(batch_size=BATCH, max_concurrent_batches=2, memory_limit_mb=limit_mb)
    target = os.path.join(workdir, f"job-{kind}")
    t0 = time.perf_counter()
    if kind == "quality":
        result = run_batch_job(
            src, "data_quality", rules=[{"type": "unique", "column": "key"}], config=cfg, output_path=target
        )
        rule = result.report["rules"][0]
        answer = {"distinct_keys": rule.get("distinct_keys"), "duplicates": rule["failed"]}
    else:
        result = run_batch_job(src, "data_profiling", columns=["key"], config=cfg, output_path=target)
        col = result.report["columns"]["key"]
        answer = {"distinct_keys": col["distinct"], "duplicates": result.report.get("duplicate_rows")}
    seconds = time.perf_counter() - t0
    usage = {
        "ru_maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ru_maxrss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    disk = sum(p.stat().st_size for p in Path(target).rglob("*") if p.is_file())
    out(
        RESULT_MARK
        + json.dumps(
            {
                "rows": result.rows_in,
                "seconds": seconds,
                "answer": answer,
                "job_folder_mb": disk / MB,
                **usage,
            }
        )
    )


# -- driver: run a child and poll its process tree ----------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    got: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line.split(":")[0]] = int(line.split()[1]) * 1024
    return got


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(kind: str, src: Path, workdir: Path, limit_mb: int) -> dict[str, Any]:
    import psutil

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--src",
        str(src),
        "--workdir",
        str(workdir),
        "--memory-limit-mb",
        str(limit_mb),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    root = psutil.Process(proc.pid)
    hwm: dict[int, int] = {}
    peak_rss = peak_pss = samples = 0
    while proc.poll() is None:
        try:
            pids = [proc.pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = pss = 0
        for pid in pids:
            try:
                st = _status(pid)
                rss += st.get("VmRSS", 0)
                hwm[pid] = max(hwm.get(pid, 0), st.get("VmHWM", 0))
                pss += _pss(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        peak_rss, peak_pss, samples = max(peak_rss, rss), max(peak_pss, pss), samples + 1
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{stderr[-4000:]}")
    line = next(ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK))
    res = json.loads(line[len(RESULT_MARK) :])
    parent_peak = max(hwm.get(proc.pid, 0) / MB, res["ru_maxrss_self_mb"])
    workers = [v / MB for pid, v in hwm.items() if pid != proc.pid]
    res.update(
        {
            "rows_per_s": res["rows"] / res["seconds"],
            "parent_peak_rss_mb": parent_peak,
            "max_worker_peak_rss_mb": max(workers + [res["ru_maxrss_children_mb"]]),
            "tree_peak_rss_sum_mb": peak_rss / MB,
            "tree_peak_pss_sum_mb": peak_pss / MB,
            "worker_processes_seen": len(workers),
            "samples": samples,
        }
    )
    res["under_limit"] = {
        "parent": res["parent_peak_rss_mb"] < limit_mb,
        "max_worker": res["max_worker_peak_rss_mb"] < limit_mb,
        "tree_pss_sum": res["tree_peak_pss_sum_mb"] < limit_mb,
        "tree_rss_sum": res["tree_peak_rss_sum_mb"] < limit_mb,
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=10_000_000)
    ap.add_argument("--memory-limit-mb", type=int, default=512)
    ap.add_argument("--out", default=str(HERE / "results" / "distinct_keys.json"))
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="quality,profiling")
    ap.add_argument("--label", default="", help="free text stored with the results (e.g. before/after)")
    ap.add_argument("--child")
    ap.add_argument("--src")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.src, args.workdir, args.memory_limit_mb)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-distinct-"))
    try:
        src = work / "src"
        t0 = time.perf_counter()
        if (src / "_data.json").exists():
            data = json.loads((src / "_data.json").read_text())
        else:
            data = write_source(src, args.keys)
            (src / "_data.json").write_text(json.dumps(data))
        out(
            f"source: {data['rows']:,} rows, {data['distinct_keys']:,} distinct keys, "
            f"{data['duplicates']} duplicates across chunk edges ({time.perf_counter() - t0:.1f}s)"
        )
        results: dict[str, Any] = {}
        for kind in args.only.split(","):
            shutil.rmtree(work / f"job-{kind}", ignore_errors=True)
            res = measure(kind, src, work, args.memory_limit_mb)
            res["exact"] = res["answer"]["distinct_keys"] == data["distinct_keys"] and (
                res["answer"]["duplicates"] in (None, data["duplicates"])
            )
            results[kind] = res
            ok = "yes" if all(res["under_limit"].values()) else "NO"
            out(
                f"{kind:>9}: {res['rows_per_s']:>10,.0f} rows/s | peak RSS parent {res['parent_peak_rss_mb']:.0f} "
                f"MB, max worker {res['max_worker_peak_rss_mb']:.0f} MB, tree sum RSS "
                f"{res['tree_peak_rss_sum_mb']:.0f} MB / PSS {res['tree_peak_pss_sum_mb']:.0f} MB | under "
                f"{args.memory_limit_mb} MB: {ok} {res['under_limit']} | answer {res['answer']} exact: "
                f"{res['exact']}"
            )
        doc = {
            "benchmark": "distinct_keys",
            "label": args.label,
            "time": time.time(),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "data": data,
            "batch_size": BATCH,
            "max_concurrent_batches": 2,
            "memory_limit_mb": args.memory_limit_mb,
            "results": results,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2))
        out(f"wrote {args.out}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
