#!/usr/bin/env python
"""Overhead of the resource sampler (``ResourceSampler``) on a CPU-bound job.

    python benchmarks/bench_sampler.py [--repeats 5] [--work-s 2.0] [--children 2]
                                       [--out benchmarks/results/sampler.json]

a. A pure-Python CPU loop (calibrated to ``--work-s`` seconds) timed without the sampler and with it
   running at 0.5 s and 2 s intervals, interleaved (none, 0.5, 2, none, ...) ``--repeats`` times; the
   process has ``--children`` idle forked children, so every sample walks a tree like a job's
   (parent + chunk workers). Reported: median wall time per mode and the slowdown vs none.
b. The cost of one sample, timed directly (median of 200 ``sample()`` calls, with and without PSS):
   the sampler's CPU share is that cost divided by the interval. (a) is noisy on a shared machine;
   (b) is the figure to trust.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_batch_provider.monitoring.sampler import ResourceSampler  # noqa: E402


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        start = time.perf_counter()
        spin(n)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


def timed_loop(n: int, interval: float | None) -> float:
    sampler = ResourceSampler(interval) if interval else None
    if sampler:
        sampler.start()
    start = time.perf_counter()
    spin(n)
    took = time.perf_counter() - start
    if sampler:
        sampler.stop()
    return took


def sample_cost(pss: bool, calls: int = 200) -> float:
    sampler = ResourceSampler(measure_pss=pss, disk_path=os.getcwd())
    sampler.sample()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        sampler.sample()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def idle_child(done) -> None:
    done.wait(600)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-s", type=float, default=2.0)
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sampler.json"))
    args = parser.parse_args()

    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    children = [ctx.Process(target=idle_child, args=(done,)) for _ in range(args.children)]
    for child in children:
        child.start()
    try:
        n = calibrate(args.work_s)
        modes = {"none": None, "0.5s": 0.5, "2s": 2.0}
        runs: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode, interval in modes.items():
                runs[mode].append(timed_loop(n, interval))
        cost = {"rss_only": sample_cost(False), "with_pss": sample_cost(True)}
    finally:
        done.set()
        for child in children:
            child.join(10)

    base = statistics.median(runs["none"])
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "params": {**vars(args), "loop_iterations": n},
        "loop_seconds": runs,
        "loop_median_s": {m: statistics.median(v) for m, v in runs.items()},
        "slowdown_vs_none": {m: statistics.median(v) / base for m, v in runs.items() if m != "none"},
        "sample_cost_ms": {k: v * 1000 for k, v in cost.items()},
        "sampler_cpu_share": {
            f"{kind}@{interval}s": cost[kind] / interval for kind in cost for interval in (0.5, 2.0)
        },
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(
        f"process tree: 1 parent + {args.children} forked children; CPU loop ~{args.work_s:.1f}s, {args.repeats} repeats"
    )
    for mode, median in result["loop_median_s"].items():
        slow = result["slowdown_vs_none"].get(mode)
        print(
            f"  sampler {mode:>4}: median {median:.3f}s"
            + (f"  ({(slow - 1) * 100:+.2f}% vs none)" if slow else "")
        )
    for kind, ms in result["sample_cost_ms"].items():
        print(
            f"  one sample ({kind}): {ms:.2f} ms -> {ms / 5:.3f}% of one core at 0.5 s, {ms / 20:.4f}% at 2 s"
        )
    print(f"raw figures: {args.out}")


if __name__ == "__main__":
    main()
