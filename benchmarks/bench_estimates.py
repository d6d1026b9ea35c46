#!/usr/bin/env python
"""Does ``calculate_optimal_batch_config``'s memory estimate hold for every standard processor?

One command, one run (about 5-10 minutes on 2 busy cores)::

    python benchmarks/bench_estimates.py [--shapes orders,ratios] [--targets 400,2000]
        [--processors anomaly_detection,data_quality,data_profiling,feature_engineering]
        [--out benchmarks/results/estimates.json]

For every processor x memory target x data shape: a fresh ``python bench_estimates.py --child ...`` process
(spawned, so the measured tree is that job alone) calls ``calculate_optimal_batch_config(source, processor,
target_memory_usage_mb=target)`` and then runs the job at exactly the recommended batch size and concurrency
(``batch_size`` given: no adaptation). The driver polls the child's process tree (the job's parent and its
forked chunk workers, ``smaps_rollup`` PSS summed, every 20 ms); measured = the
peak of that sum, the whole tree's memory (interpreter and imports included, as the estimate counts them).
Printed: estimate, measured, estimate / measured; target: within 25%.

Shapes (deterministic, Parquet, snappy, 100,000-row groups): ``mixed`` (an id, 6 floats with 10% nulls, 3
categorical strings of 20-400 values, a timestamp, a bool), ``wide_nulls`` (60 floats with 20% nulls, 2
integers), ``long_text`` (an id, 2 floats, a category, a 120-character text of 50,000 distinct values),
``categoricals`` (12 string columns of 3-5,000 values with 10% nulls, a nullable integer, a float), ``events``
(ids, a date, an amount, 3 strings, one 40% null, a nullable integer), ``sensors`` (20 nullable small-range
integers, 4 floats, 2 strings), ``orders`` (ids, a price, an int32 quantity, a status, a timestamp, a 50%-null
discount, an 80%-null note), ``ratios`` (30 float32 columns with 3% nulls, an int32 id, a bucket string).
None of them is one of ``bench_tuning.py``'s (narrow, wide, strings: passthrough's constants). The standard
processors' components in ``engine/sizing.py`` were fitted on some of them and checked on the others: quality
and anomaly detection fitted on mixed, wide_nulls, long_text, categoricals (checked on events, sensors, orders,
ratios); profiling and feature engineering fitted on those six (checked on orders, ratios). Processors run with
their defaults (``data_quality``: the rules derived in its statistics pass; ``feature_engineering``: the steps
per column type; ``anomaly_detection``: an isolation forest on the numeric columns, fitted on a 100,000-row
sample).

Memory does not depend on load the way time does, but the measured peak does depend on timing: whether the two
workers' chunk peaks (and the parent's) fall at the same moment. The same configuration measured 686 and
1,151 MB in two cells of one run (feature_engineering on orders). The estimate models the peaks together. The
machine is shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
MB = 2**20
RESULT_MARK = "BENCH_ESTIMATES "
PROCESSORS = ("anomaly_detection", "data_quality", "data_profiling", "feature_engineering")
ROWS = {
    "mixed": 2_400_000,
    "wide_nulls": 1_000_000,
    "long_text": 1_200_000,
    "categoricals": 1_000_000,
    "events": 1_500_000,
    "sensors": 1_200_000,
    "orders": 2_000_000,
    "ratios": 1_000_000,
}
ROW_GROUP = 100_000  # as a job stores a frame

from bench_engine import _read_kb_fields  # noqa: E402


# --------------------------------------------------------------------------------------------- data
def _block(shape: str, rng: Any, start: int, n: int) -> Any:
    import numpy as np
    import pandas as pd

    def floats(null_share: float) -> Any:
        values = rng.normal(100.0, 15.0, n)
        values[rng.random(n) < null_share] = np.nan
        return values

    if shape == "mixed":
        cats = {f"cat{i}": np.array([f"value_{i}_{j:04d}" for j in range(k)], dtype=object)
                for i, k in enumerate((20, 90, 400))}  # fmt: skip
        frame = {"id": np.arange(start, start + n)}
        frame |= {f"f{i}": floats(0.1) for i in range(6)}
        frame |= {name: values[rng.integers(0, len(values), n)] for name, values in cats.items()}
        frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 86400 * 365, n), "s")
        frame["flag"] = rng.random(n) < 0.3
        return pd.DataFrame(frame)
    if shape == "wide_nulls":
        frame = {"id": np.arange(start, start + n), "k": rng.integers(0, 1000, n)}
        frame |= {f"f{i:02d}": floats(0.2) for i in range(60)}
        return pd.DataFrame(frame)
    if shape == "long_text":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
        texts = np.array(["".join(rng.choice(letters, 120)) for _ in range(50_000)], dtype=object)
        cats = np.array([f"group_{j:03d}" for j in range(50)], dtype=object)
        return pd.DataFrame(
            {
                "id": np.arange(start, start + n),
                "x": floats(0.05),
                "y": floats(0.0),
                "group": cats[rng.integers(0, 50, n)],
                "text": texts[rng.integers(0, len(texts), n)],
            }
        )
    if shape == "categoricals":
        frame = {"id": np.arange(start, start + n)}
        for i, k in enumerate((5, 12, 30, 45, 200, 1000, 5000, 20, 8, 60, 300, 3)):
            values = np.array([f"c{i}_{j}" for j in range(k)], dtype=object)[rng.integers(0, k, n)]
            values[rng.random(n) < 0.1] = None
            frame[f"s{i:02d}"] = values
        counts = pd.array(rng.integers(0, 500, n), dtype="Int64")
        counts[rng.random(n) < 0.15] = pd.NA
        frame["count"] = counts
        frame["amount"] = floats(0.15)
        return pd.DataFrame(frame)
    if shape == "orders":
        statuses = np.array(["new", "paid", "shipped", "delivered", "returned", "cancelled"], dtype=object)
        notes = np.array(
            [f"please deliver after {j % 24:02d}:00, door {j:05d}" for j in range(30_000)], dtype=object
        )
        note = notes[rng.integers(0, len(notes), n)]
        note[rng.random(n) < 0.8] = None
        discount = rng.random(n) * 0.3
        discount[rng.random(n) < 0.5] = np.nan
        return pd.DataFrame(
            {
                "order_id": np.arange(start, start + n),
                "customer_id": rng.integers(0, 50_000, n),
                "price": np.round(rng.gamma(2.0, 30.0, n), 2),
                "quantity": rng.integers(1, 11, n).astype("int32"),
                "status": statuses[rng.integers(0, 6, n)],
                "created": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 10**8, n), "s"),
                "discount": discount,
                "note": note,
            }
        )
    if shape == "ratios":
        frame = {"id": np.arange(start, start + n, dtype="int32")}
        for i in range(30):
            values = rng.random(n).astype("float32")
            values[rng.random(n) < 0.03] = np.nan
            frame[f"r{i:02d}"] = values
        frame["bucket"] = np.array([f"b{j}" for j in range(12)], dtype=object)[rng.integers(0, 12, n)]
        return pd.DataFrame(frame)
    if shape == "sensors":
        frame = {"reading_id": np.arange(start, start + n)}
        for i in range(20):
            values = pd.array(rng.integers(0, 50 * (i + 1), n), dtype="Int64")
            values[rng.random(n) < 0.05] = pd.NA
            frame[f"i{i:02d}"] = values
        frame |= {f"t{i}": floats(0.02) for i in range(4)}
        frame["status"] = np.array(["ok", "warn", "fail", "off", "boot"], dtype=object)[rng.integers(0, 5, n)]
        frame["site"] = np.array([f"site-{j:03d}" for j in range(200)], dtype=object)[rng.integers(0, 200, n)]
        return pd.DataFrame(frame)
    if shape == "events":
        countries = np.array([f"country_{j:02d}" for j in range(30)], dtype=object)
        comments = np.array([f"comment number {j:06d}" for j in range(200_000)], dtype=object)
        comment = comments[rng.integers(0, len(comments), n)]
        comment[rng.random(n) < 0.4] = None
        seconds = pd.array(rng.integers(0, 3600, n), dtype="Int64")
        seconds[rng.random(n) < 0.1] = pd.NA
        return pd.DataFrame(
            {
                "event_id": np.arange(start, start + n),
                "user_id": rng.integers(0, 100_000, n),
                "day": (pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 730, n), "D")).date,
                "amount": floats(0.05),
                "country": countries[rng.integers(0, 30, n)],
                "device": np.array(["web", "ios", "android"], dtype=object)[rng.integers(0, 3, n)],
                "session_seconds": seconds,
                "comment": comment,
            }
        )
    raise SystemExit(f"unknown shape {shape!r}; known: {', '.join(ROWS)}")


def write_shape(shape: str, folder: Path, scale: float) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(16)
    rows = int(ROWS[shape] * scale)
    path = folder / f"{shape}.parquet"
    writer = None
    for start in range(0, rows, ROW_GROUP * 4):
        table = pa.Table.from_pandas(
            _block(shape, rng, start, min(ROW_GROUP * 4, rows - start)), preserve_index=False
        )
        writer = writer or pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=ROW_GROUP)
    assert writer is not None
    writer.close()
    return path


def processor_kwargs(processor: str, shape: str) -> dict[str, Any]:
    """Every processor runs with its defaults (data_quality's derived rules, feature_engineering's per-type steps)."""
    return {}


# ---------------------------------------------------------------------------------------- child side
def _own_pss_mb() -> float:
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas  # noqa: F401 - imported before the baseline, as in a task
    import pyarrow  # noqa: F401

    from airflow_batch_provider.jobs import run_batch_job
    from airflow_batch_provider.tuning import calculate_optimal_batch_config

    baseline = _own_pss_mb()
    rec = calculate_optimal_batch_config(
        spec["source"], spec["processor"], target_memory_usage_mb=spec["target"]
    )
    config = {
        "batch_size": rec.recommended_batch_size,
        "max_concurrent_batches": rec.recommended_concurrency,
        "memory_limit_mb": spec["target"],
        "progress_interval_seconds": 60,
    }
    started = time.perf_counter()
    result = run_batch_job(
        spec["source"], spec["processor"], config=config, output_path=spec["out"], records_path=False,
        monitor=False, **spec["kwargs"],
    )  # fmt: skip
    seconds = time.perf_counter() - started
    shutil.rmtree(spec["out"], ignore_errors=True)
    return {
        "estimate_mb": rec.estimated_memory_usage_mb,
        "components_mb": getattr(rec, "memory_components_mb", None),
        "batch_size": rec.recommended_batch_size,
        "workers": rec.recommended_concurrency,
        "bytes_per_row": rec.bytes_per_row,
        "row_cost_bytes": rec.row_cost_bytes,
        "reasons": rec.reasons,
        "baseline_pss_mb": round(baseline, 1),
        "rows": result.rows_in,
        "chunks": result.chunks_total,
        "seconds": round(seconds, 2),
    }


# --------------------------------------------------------------------------------------- driver side
class RoleMonitor(threading.Thread):
    """Polls the child's tree: the peak of the summed PSS, and the peak PSS of the parent and of each worker."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.stop_event = threading.Event()
        self.peak_tree_kb = 0
        self.peak_kb: dict[int, int] = {}
        self.samples = 0

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        tree = 0
        for proc in procs:
            pss = _read_kb_fields(f"/proc/{proc.pid}/smaps_rollup", ("Pss",)).get("Pss", 0)
            self.peak_kb[proc.pid] = max(self.peak_kb.get(proc.pid, 0), pss)
            tree += pss
        self.peak_tree_kb = max(self.peak_tree_kb, tree)
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self._sample()
            self.stop_event.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        workers = [round(kb / 1024, 1) for pid, kb in self.peak_kb.items() if pid != self.root.pid]
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "peak_tree_pss_mb": round(self.peak_tree_kb / 1024, 1),
            "parent_peak_pss_mb": round(self.peak_kb.get(self.root.pid, 0) / 1024, 1),
            "worker_peak_pss_mb": workers,
        }


def run_child(spec: dict[str, Any], interval: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    monitor = RoleMonitor(proc.pid, interval)
    monitor.start()
    stdout, stderr = proc.communicate()
    monitor.stop_event.set()
    monitor.join()
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measurement {spec} failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    return {**json.loads(lines[-1][len(RESULT_MARK) :]), "monitor": monitor.summary()}


def measure(
    path: Path, work: Path, processor: str, target: int, shape: str, interval: float
) -> dict[str, Any]:
    spec = {"source": str(path), "processor": processor, "target": target,
            "out": str(work / f"out-{processor}-{target}"), "kwargs": processor_kwargs(processor, shape)}  # fmt: skip
    res = run_child(spec, interval)
    measured = res["monitor"]["peak_tree_pss_mb"]
    ratio = res["estimate_mb"] / measured if measured else float("nan")
    return {
        "processor": processor,
        "target_mb": target,
        "shape": shape,
        **{k: v for k, v in res.items() if k != "monitor"},
        "measured_peak_tree_pss_mb": measured,
        "measured_incremental_mb": round(measured - res["baseline_pss_mb"], 1),
        "ratio": round(ratio, 3),
        "within_25_percent": bool(abs(ratio - 1) <= 0.25),
        "monitor": res["monitor"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child")
    parser.add_argument("--shapes", default="orders,ratios", help=f"comma-separated, of: {', '.join(ROWS)}")
    parser.add_argument("--targets", default="400,2000")
    parser.add_argument("--processors", default=",".join(PROCESSORS))
    parser.add_argument("--scale", type=float, default=1.0, help="rows factor")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between PSS samples")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "estimates.json"))
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(RESULT_MARK + json.dumps(child(json.loads(args.child))) + "\n")
        return 0
    started, load_start = time.time(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    cells: list[dict[str, Any]] = []
    header = f"{'processor':20} {'target':>6} {'shape':11} {'batch':>9} {'wk':>2} {'est MB':>7} {'meas MB':>7} {'ratio':>6}  ok"
    print(header, flush=True)
    try:
        for shape in args.shapes.split(","):
            path = write_shape(shape, work, args.scale)
            for processor in args.processors.split(","):
                for target in (int(t) for t in args.targets.split(",")):
                    cell = measure(path, work, processor, target, shape, args.interval)
                    cells.append(cell)
                    print(
                        f"{processor:20} {target:6} {shape:11} {cell['batch_size']:9,} {cell['workers']:2} "
                        f"{cell['estimate_mb']:7.0f} {cell['measured_peak_tree_pss_mb']:7.0f} {cell['ratio']:6.2f}  "
                        f"{'yes' if cell['within_25_percent'] else 'NO'}",
                        flush=True,
                    )
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import pandas
    import pyarrow

    doc = {
        "benchmark": "bench_estimates",
        "command": "python benchmarks/bench_estimates.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "rows": {s: int(ROWS[s] * args.scale) for s in args.shapes.split(",")},
        "all_within_25_percent": all(c["within_25_percent"] for c in cells),
        "cells": cells,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"\nall within 25%: {doc['all_within_25_percent']}; {doc['duration_s']:.0f}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
