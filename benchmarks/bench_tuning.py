#!/usr/bin/env python
"""Batch-size tuning: is the memory estimate right, does adaptation keep memory under the target, and is the
auto-tuned size as fast as the best fixed size?

One command, one run (about 5-10 minutes on 2 busy cores)::

    python benchmarks/bench_tuning.py [--scale 1.0] [--repeats 3] [--out benchmarks/results/tuning.json]

Three data shapes (deterministic, Parquet, snappy): ``narrow`` (4 numeric columns), ``wide`` (200 float
columns), ``strings`` (an id and two 300-character strings). Processor: ``passthrough`` (reads, converts to
pandas, writes a part file: the engine's own cost). Every measurement runs in a fresh
``python bench_tuning.py --child ...`` subprocess so memory figures belong to that one run.

a. sizing: ``calculate_optimal_batch_config``-style recommendation (the engine's own, from a 10,000-row
   sample) at a memory limit chosen so that chunks are >= 100 MB in memory; the job then runs at exactly the
   recommended size and concurrency (no adaptation) and the estimate is compared with the measured
   incremental peak: the process tree's summed PSS (parent + forked chunk workers, ``smaps_rollup``, polled
   every 10 ms) over the baseline after imports. Target: within 25%.
b. adaptive: the auto-tuned job (no ``batch_size``, adaptation on) at the same memory limit: its measured
   peak vs the limit (target: under it), and its batch-size trajectory.
c. throughput: the auto-tuned job vs a grid of 4 fixed batch sizes (about 4, 16, 64 and 128 MB of rows),
   ``--repeats`` interleaved repeats, medians; target auto >= 0.9x the best fixed size. All at 2 workers, so
   only the batch size differs.

The machine is shared: the load average before and after is recorded. Compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MB = 2**20
RESULT_MARK = "BENCH_RESULT "
WORKERS = 2
CHUNKS = 4  # every shape is ~4 x 105 MB in memory: 4 chunks of >= 100 MB, 2 per worker
GRID_MB = (4, 16, 64, 128)


# --------------------------------------------------------------------------------------------- data
def write_shape(shape: str, folder: Path, scale: float) -> Path:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    path = folder / f"{shape}.parquet"
    if shape == "narrow":
        rows, group = int(13_200_000 * scale), 250_000
        blocks = lambda n, s: pd.DataFrame(  # noqa: E731
            {"id": np.arange(s, s + n), "x": rng.random(n), "k": rng.integers(0, 1000, n), "y": rng.random(n)}
        )
    elif shape == "wide":
        rows, group = int(264_000 * scale), 5_000
        blocks = lambda n, s: pd.DataFrame({f"c{i}": rng.random(n) for i in range(200)})  # noqa: E731
    else:
        rows, group = int(680_000 * scale), 20_000
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = np.array(["".join(rng.choice(letters, 300)) for _ in range(2000)], dtype=object)
        blocks = lambda n, s: pd.DataFrame(  # noqa: E731
            {
                "id": np.arange(s, s + n),
                "text": words[rng.integers(0, 2000, n)],
                "note": words[rng.integers(0, 2000, n)],
            }
        )
    writer = None
    for start in range(0, rows, group * 4):
        table = pa.Table.from_pandas(blocks(min(group * 4, rows - start), start), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=group)
    writer.close()
    return path


# ---------------------------------------------------------------------------------------- child side
class TreePss(threading.Thread):
    """Polls the summed PSS of this process and its descendants (forked chunk workers).

    ``peak``: the peak of the sum, which depends on timing: whether the workers' chunk peaks fall at the same
    moment (on a loaded machine they drift apart and the sum's peak falls). ``coincident_peak``: this process's
    peak while workers exist plus each worker's own peak, the tree's peak had they coincided (what the estimate
    models), which does not depend on timing."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.stop_event = threading.Event()
        self.peak = 0
        self.samples = 0
        self.parent_with_workers = 0
        self.worker_peaks: dict[int, int] = {}

    @property
    def coincident_peak(self) -> int:
        if not self.worker_peaks:
            return self.peak
        return self.parent_with_workers + sum(self.worker_peaks.values())

    def sample(self) -> int:
        total = 0
        try:
            procs = [self.me] + self.me.children(recursive=True)
        except Exception:  # noqa: BLE001 - a process that just exited
            procs = [self.me]
        for proc in procs:
            try:
                with open(f"/proc/{proc.pid}/smaps_rollup") as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            pss = int(line.split()[1]) * 1024
                            total += pss
                            if proc.pid == self.me.pid:
                                if len(procs) > 1:
                                    self.parent_with_workers = max(self.parent_with_workers, pss)
                            else:
                                self.worker_peaks[proc.pid] = max(self.worker_peaks.get(proc.pid, 0), pss)
                            break
            except (OSError, ValueError):
                continue
        return total

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, self.sample())
            self.samples += 1
            self.stop_event.wait(self.interval)


def _job_estimate(extra: dict[str, Any]) -> float | None:
    estimate = extra.get("estimated_memory_usage_mb")
    components = extra.get("estimated_memory_components_mb") or {}
    return None if estimate is None else round(estimate - components.get("process", 0.0), 3)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas  # noqa: F401 - imported before the baseline, as in a task
    import pyarrow  # noqa: F401

    from airflow_batch_provider.engine.runner import JobRunner
    from airflow_batch_provider.jobs import run_batch_job

    if spec.get("sample_only"):
        from airflow_batch_provider import tuning

        s = tuning.sample_source(spec["source"])
        return {
            "bytes_per_row": s.bytes_per_row,
            "encoded_bytes_per_row": s.encoded_bytes_per_row,
            "string_bytes_per_row": s.string_bytes_per_row,
            "row_group_rows": s.row_group_rows,
            "total_rows": s.total_rows,
        }
    peaks: list[int] = []
    original = JobRunner._record

    def spy(self: Any, record: dict[str, Any]) -> None:
        peaks.append(int(record.get("mem_peak") or 0))
        original(self, record)

    JobRunner._record = spy  # type: ignore[method-assign]
    monitor = TreePss()
    baseline = monitor.sample()
    monitor.start()
    t0 = time.perf_counter()
    result = run_batch_job(
        spec["source"], "passthrough", config=spec["config"], output_path=spec["out"], records_path=False,
        monitor=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    monitor.stop_event.set()
    monitor.join()
    shutil.rmtree(spec["out"], ignore_errors=True)
    return {
        "seconds": round(seconds, 3),
        "rows": result.rows_in,
        "rows_per_s": round(result.rows_in / seconds, 1),
        "batch_size": result.batch_size,
        "workers": result.extra["workers"],
        "chunks": result.chunks_total,
        # the memory the job adds: the estimate less the process it started in (measured here as the baseline)
        "estimated_memory_usage_mb": _job_estimate(result.extra),
        "memory_target_mb": result.extra.get("memory_target_mb"),
        "trajectory": [(t["from"], t["to"], t["reason"]) for t in result.batch_size_trajectory],
        "reasons": result.extra.get("batch_size_reasons"),
        "incremental_peak_mb": round((monitor.peak - baseline) / MB, 1),
        "coincident_incremental_peak_mb": round((monitor.coincident_peak - baseline) / MB, 1),
        "baseline_mb": round(baseline / MB, 1),
        "pss_samples": monitor.samples,
        "max_chunk_mem_peak_mb": round(max(peaks, default=0) / MB, 1),
    }


# --------------------------------------------------------------------------------------- driver side
def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, timeout=900
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-3000:]}")


def sizing_limit(sample: dict[str, Any], overhead: float) -> int:
    """The memory_limit_mb whose recommendation cuts the source into CHUNKS chunks at WORKERS workers (3%
    over a quarter of the rows, so that the size rounded down to two digits still gives CHUNKS chunks)."""
    from airflow_batch_provider.engine.adaptive import FILL
    from airflow_batch_provider.tuning import ENCODED_COPIES, STRING_COPIES

    rows = sample["total_rows"] / CHUNKS * 1.03
    row_cost = (
        overhead * sample["bytes_per_row"]
        + ENCODED_COPIES * sample["encoded_bytes_per_row"]
        + STRING_COPIES * sample["string_bytes_per_row"]
    )
    per_worker = (rows + sample["row_group_rows"]) * row_cost
    return int(WORKERS * per_worker / FILL / MB) + 1


def bench_shape(shape: str, path: Path, work: Path, repeats: int) -> dict[str, Any]:
    from airflow_batch_provider import tuning

    sample = run_child({"sample_only": True, "source": str(path)})
    overhead = tuning.get_processing_profile("passthrough").memory_overhead_factor
    limit = sizing_limit(sample, overhead)
    out = str(work / f"out-{shape}")
    base = {"max_concurrent_batches": WORKERS, "memory_limit_mb": limit}
    probe = run_child({"source": str(path), "out": out, "config": {**base, "progress_interval_seconds": 60}})
    # a. sizing: the recommended size, fixed
    fixed_rec = {**base, "batch_size": probe["batch_size"]}
    sizing = run_child({"source": str(path), "out": out, "config": fixed_rec})
    estimate = probe["estimated_memory_usage_mb"]
    measured = sizing["incremental_peak_mb"]
    # c. throughput: interleaved repeats of auto and the grid
    grid = sorted({max(1_000, int(mb * MB / sample["bytes_per_row"])) for mb in GRID_MB})
    configs = {"auto": base, **{f"fixed_{n}": {**base, "batch_size": n} for n in grid}}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
    for _ in range(repeats):
        for name, config in configs.items():
            runs[name].append(run_child({"source": str(path), "out": out, "config": config}))
    median = {k: statistics.median(r["rows_per_s"] for r in v) for k, v in runs.items()}
    best = max((k for k in median if k != "auto"), key=median.get)
    auto_peaks = [r["incremental_peak_mb"] for r in runs["auto"]]
    return {
        "shape": shape,
        "rows": sample["total_rows"],
        "bytes_per_row": round(sample["bytes_per_row"], 1),
        "encoded_bytes_per_row": round(sample["encoded_bytes_per_row"], 1),
        "row_group_rows": sample["row_group_rows"],
        "memory_limit_mb": limit,
        "sizing": {
            "recommended_batch_size": probe["batch_size"],
            "chunk_mb_in_memory": round(probe["batch_size"] * sample["bytes_per_row"] / MB, 1),
            "workers": sizing["workers"],
            "estimated_memory_usage_mb": estimate,
            "measured_incremental_peak_mb": measured,
            "error": round(estimate / measured - 1, 3) if measured else None,
            "within_25_percent": bool(measured and abs(estimate / measured - 1) <= 0.25),
            "max_chunk_mem_peak_mb": sizing["max_chunk_mem_peak_mb"],
            "reasons": probe["reasons"],
        },
        "adaptive": {
            "memory_target_mb": limit,
            "incremental_peaks_mb": auto_peaks,
            "under_target": all(p <= limit for p in auto_peaks),
            "trajectories": [r["trajectory"] for r in runs["auto"]],
        },
        "throughput": {
            "rows_per_s_median": median,
            "best_fixed": best,
            "auto_vs_best": round(median["auto"] / median[best], 3),
            "meets_0_9": median["auto"] >= 0.9 * median[best],
            "runs": runs,
        },
    }


def print_table(shapes: list[dict[str, Any]]) -> None:
    print("\nsizing (estimate vs measured incremental peak, recommended size fixed)")
    print(
        f"{'shape':8} {'B/row':>7} {'batch':>9} {'chunk MB':>9} {'est MB':>8} {'meas MB':>8} {'error':>7}  ok"
    )
    for s in shapes:
        z = s["sizing"]
        print(
            f"{s['shape']:8} {s['bytes_per_row']:7.0f} {z['recommended_batch_size']:9,} {z['chunk_mb_in_memory']:9.0f} "
            f"{z['estimated_memory_usage_mb']:8.0f} {z['measured_incremental_peak_mb']:8.0f} {z['error']:+7.1%}  "
            f"{'yes' if z['within_25_percent'] else 'NO'}"
        )
    print("\nadaptive run under the memory target, and throughput vs a grid of fixed sizes (medians)")
    print(
        f"{'shape':8} {'target MB':>9} {'peaks MB':>22} {'auto rows/s':>12} {'best fixed':>22} {'ratio':>6}"
    )
    for s in shapes:
        a, t = s["adaptive"], s["throughput"]
        peaks = "/".join(f"{p:.0f}" for p in a["incremental_peaks_mb"])
        print(
            f"{s['shape']:8} {a['memory_target_mb']:9,} {peaks:>22} {t['rows_per_s_median']['auto']:12,.0f} "
            f"{t['best_fixed'] + ' ' + format(t['rows_per_s_median'][t['best_fixed']], ',.0f'):>22} "
            f"{t['auto_vs_best']:6.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="data size factor (1.0: 4 chunks of >= 100 MB per shape)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", default="narrow,wide,strings")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tuning.json"))
    args = parser.parse_args(argv)
    if args.child:
        res = child(json.loads(args.child))
        sys.stdout.write(RESULT_MARK + json.dumps(res) + "\n")
        return 0
    started, load_start = time.time(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    try:
        shapes = []
        for shape in args.shapes.split(","):
            path = write_shape(shape, work, args.scale)
            print(f"{shape}: {path.stat().st_size / MB:,.0f} MB on disk", flush=True)
            shapes.append(bench_shape(shape, path, work, args.repeats))
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(shapes)
    import pandas
    import pyarrow

    doc = {
        "benchmark": "bench_tuning",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "workers": WORKERS,
        "repeats": args.repeats,
        "scale": args.scale,
        "shapes": shapes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(
        f"\nloadavg {load_start[0]:.2f} -> {doc['loadavg_end'][0]:.2f}; {doc['duration_s']:.0f}s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
