#!/usr/bin/env python
"""Benchmark of the four standard processors: chunked ``run_batch_job`` vs one-piece pandas/scikit-learn.

One command, one run::

    python benchmarks/bench_processors.py [--rows 2000000] [--n-rows 500000] [--repeats 2]
                                          [--only data_profiling,anomaly_detection] [--cprofile]
                                          [--out benchmarks/results/processors.json] [--workdir DIR] [--keep]

Data: the engine benchmark's deterministic 16-column dataset (``bench_engine.make_block``: a string id,
4 integer columns, 6 float columns with 1-20 % nulls, 3 text categoricals, a timestamp, a boolean), as
snappy Parquet with 100k-row row groups: one file of ``--rows`` rows and one of ``--n-rows`` rows (N).

For each processor (realistic parameters, see ``PROCESSORS``):

a. chunked: ``run_batch_job(path, name, config=BatchConfig(batch_size=100_000, max_concurrent_batches=2))``,
   default config otherwise; timed around the call (statistics pass / sampling / fit, chunks, final merge,
   commit: the whole job).
b. one-piece: the same computation in plain pandas/scikit-learn on the whole table, with the same I/O:
   ``pandas.read_parquet`` of the whole file, and ``DataFrame.to_parquet`` of the same row output where the
   processor writes rows (quality: clean rows + quarantine; features: transformed rows; anomaly: rows with
   scores). Library defaults (pyarrow reads with its thread pool; scikit-learn with ``n_jobs=None``).
c. chunked peak memory at N and 4N rows (4N = the main file when ``--rows`` is 4 x ``--n-rows``).

Targets on 2 cores: throughput ratio chunked/one-piece >= 1.0 (profiling, anomaly detection) and >= 0.8
(quality, features), median of the pairwise ratios of ``--repeats`` interleaved (ABBA) repeats; chunked
peak RSS(4N) / RSS(N) <= 1.25, also shown with the exact distinct-key state (8-byte hashes, and the
quality ``unique`` rule's 8-byte first positions) taken out of both sides.

Every measurement runs in a fresh ``python bench_processors.py --child ...`` subprocess; the driver polls
that process tree with psutil/procfs (``bench_engine.TreeMonitor``): ``VmHWM`` of the parent and of every
forked chunk worker. "RSS" below is the peak, over the samples, of the summed RSS of the parent and its live
chunk workers (copy-on-write pages shared through fork count in each process, so this over-counts; the peak
of the tree's summed PSS, and every process's own ``VmHWM``, are in the JSON too).

Where the chunked time goes (``--cprofile``: cProfile in the job's parent, top functions in the JSON):
the per-chunk ``seconds`` of the records under ``{output}/g0001/segments`` (main pass) and
``{output}/g0001/fit/g0001/segments`` (statistics pass) give the worker time; wall minus that divided by
the concurrency is roughly the parent's serial time (planning, sampling and fitting, final merge, commit).

The machine is shared and noisy: compare ratios from one run. Nothing outside this repository is read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import bench_engine as be  # noqa: E402  (the engine benchmark's data and process-tree helpers)

BATCH = 100_000
WORKERS = 2
RESULT_MARK = "@@BENCH_PROC_RESULT@@ "
MB = 2**20
FLOATS = ["amount", "price", "score", "latitude", "longitude", "discount"]
COUNTRIES_OK = be.COUNTRIES[:18]  # 2 of 20 countries are not allowed: ~10 % of rows fail that rule
TARGETS = {
    "data_profiling": 1.0,
    "data_quality": 0.8,
    "feature_engineering": 0.8,
    "anomaly_detection": 1.0,
}
MEM_TARGET = 1.25

QUALITY_RULES = [
    {"type": "not_null", "column": "amount"},
    {"type": "between", "column": "price", "min": 5.0, "max": 35.0},
    {"type": "allowed_values", "column": "country", "values": COUNTRIES_OK},
    {"type": "unique", "column": "id"},
    {"type": "regex", "column": "id", "pattern": r"ID-\d{10}"},
]
FEATURES = {
    "scale": {"amount": "standard", "price": "standard"},
    "encode": {"country": "onehot", "status": "onehot"},
    "date_parts": {"created_at": ["year", "month", "dayofweek", "hour"]},
}
ANOMALY = {
    "algorithm": "isolation_forest",
    "features": ["amount", "price", "score", "latitude"],
    "sample_size": 100_000,
    "random_state": 0,
}
PROCESSORS: dict[str, dict[str, Any]] = {
    "data_profiling": {},
    "data_quality": {"rules": QUALITY_RULES},
    "feature_engineering": FEATURES,
    "anomaly_detection": ANOMALY,
}


def out(text: str = "") -> None:
    be.out(text)


# --------------------------------------------------------------------------------------------------
# one-piece implementations (pandas / scikit-learn on the whole table)
# --------------------------------------------------------------------------------------------------
def onepiece_profiling(df: Any, out_dir: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    qs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    cols: dict[str, Any] = {}
    for name in df.columns:
        s = df[name]
        c: dict[str, Any] = {
            "count": int(s.count()),
            "nulls": int(s.isna().sum()),
            "distinct": int(s.nunique()),
        }
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            x = s.to_numpy(dtype="float64", na_value=np.nan)
            x = x[np.isfinite(x)]
            c.update(
                min=float(x.min()),
                max=float(x.max()),
                mean=float(x.mean()),
                std=float(x.std(ddof=1)),
                quantiles=dict(zip(map(str, qs), np.quantile(x, qs).tolist(), strict=True)),
                histogram=np.histogram(x, bins=20, range=(x.min(), x.max()))[0].tolist(),
            )
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            c.update(min=str(s.min()), max=str(s.max()))
        else:
            c["top_values"] = [[str(k), int(v)] for k, v in s.value_counts().head(10).items()]
        cols[str(name)] = c
    report = {
        "rows": len(df),
        "column_count": len(cols),
        "memory": int(df.memory_usage(deep=True).sum()),
        "duplicate_rows": int(df.duplicated().sum()),
        "columns": cols,
    }
    (out_dir / "report.json").write_text(json.dumps(report, default=str))
    return {"duplicate_rows": report["duplicate_rows"]}


def onepiece_quality(df: Any, out_dir: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    masks = {
        "not_null(amount)": df["amount"].isna().to_numpy(),
        "between(price)": (df["price"].notna() & ~df["price"].between(5.0, 35.0)).to_numpy(),
        "allowed_values(country)": (df["country"].notna() & ~df["country"].isin(COUNTRIES_OK)).to_numpy(),
        "unique(id)": df["id"].duplicated().to_numpy(),
        "regex(id)": (df["id"].notna() & ~df["id"].str.fullmatch(r"ID-\d{10}")).to_numpy(),
    }
    failed = np.column_stack(list(masks.values()))
    bad = np.flatnonzero(failed.any(axis=1))
    names = np.array(list(masks), dtype=object)
    df.drop(df.index[bad]).to_parquet(out_dir / "clean.parquet", index=False)
    quarantine = (
        df.iloc[bad]
        .reset_index(drop=True)
        .assign(
            _source_file_index=np.zeros(len(bad), dtype=np.int64),
            _source_row=bad.astype(np.int64),
            _failed_rules=pd.Series([list(names[row]) for row in failed[bad]], dtype=object),
        )
    )
    quarantine.to_parquet(out_dir / "quarantine.parquet", index=False)
    return {"rows_failed": len(bad), "failed": {k: int(v.sum()) for k, v in masks.items()}}


def onepiece_features(df: Any, out_dir: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    pieces = []
    for name in df.columns:
        if name in FEATURES["scale"]:
            scaled = StandardScaler().fit_transform(df[[name]].to_numpy(dtype="float64", na_value=np.nan))
            pieces.append(pd.Series(scaled[:, 0], name=name))
        elif name in FEATURES["encode"]:
            vocab = df[name].value_counts().index  # count descending (ties: either order, same cost)
            onehot = pd.get_dummies(
                pd.Categorical(df[name], categories=vocab), prefix=name, prefix_sep="=", dtype=np.uint8
            )
            onehot[f"{name}=<other>"] = np.uint8(0)
            pieces.append(onehot)
        elif name in FEATURES["date_parts"]:
            dt = df[name].dt
            for part in FEATURES["date_parts"][name]:
                value = dt.day_of_week if part == "dayofweek" else getattr(dt, part)
                pieces.append(value.astype("Int64").rename(f"{name}_{part}"))
        else:
            pieces.append(df[name])
    result = pd.concat(pieces, axis=1)
    result.to_parquet(out_dir / "features.parquet", index=False)
    return {"output_columns": result.shape[1]}


def onepiece_anomaly(df: Any, out_dir: Path) -> dict[str, Any]:
    import numpy as np
    from sklearn.ensemble import IsolationForest

    x = df[ANOMALY["features"]].to_numpy(dtype="float64", na_value=np.nan)
    if not x.flags.writeable:  # pandas copy-on-write may hand out a read-only array
        x = x.copy()
    pick = np.sort(
        np.random.default_rng(0).choice(len(df), size=min(ANOMALY["sample_size"], len(df)), replace=False)
    )
    sample = x[pick]
    medians = np.nanmedian(sample, axis=0)
    for mat in (sample, x):
        missing = ~np.isfinite(mat)
        mat[missing] = np.take(medians, np.nonzero(missing)[1])
    model = IsolationForest(random_state=ANOMALY["random_state"]).fit(sample)
    scores = -model.score_samples(x)
    flags = scores > -model.offset_
    df.assign(anomaly_score=scores, is_anomaly=flags).to_parquet(out_dir / "scored.parquet", index=False)
    return {"anomalies": int(flags.sum())}


ONEPIECE = {
    "data_profiling": onepiece_profiling,
    "data_quality": onepiece_quality,
    "feature_engineering": onepiece_features,
    "anomaly_detection": onepiece_anomaly,
}


# --------------------------------------------------------------------------------------------------
# child side: one measurement per process
# --------------------------------------------------------------------------------------------------
def _records(folder: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for seg in sorted(folder.glob("segments/*.json")):
        records.extend(json.loads(seg.read_text()))
    return records


def _worker_time(records: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [r["seconds"] for r in records]
    return {
        "chunks": len(secs),
        "seconds_sum": round(sum(secs), 3),
        "seconds_median": round(statistics.median(secs), 4) if secs else None,
        "workers": len({r.get("pid") for r in records}),
    }


def _top_functions(prof: Any, limit: int = 30) -> list[dict[str, Any]]:
    import pstats

    stats = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}:{fn}",
                "calls": nc,
                "tottime": round(tt, 4),
                "cumtime": round(ct, 4),
            }
        )
    rows.sort(key=lambda r: -r["cumtime"])
    return rows[:limit]


def child_chunked(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.jobs import run_batch_job

    out_dir = Path(spec["output_path"])
    config = BatchConfig(batch_size=BATCH, max_concurrent_batches=WORKERS)
    prof = None
    if spec.get("cprofile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    with be.Window() as win:
        result = run_batch_job(
            spec["path"],
            spec["processor"],
            config=config,
            output_path=str(out_dir),
            **PROCESSORS[spec["processor"]],
        )
    if prof is not None:
        prof.disable()
    gen = out_dir / f"g{result.generation:04d}"
    main, fit = _worker_time(_records(gen)), _worker_time(_records(gen / "fit" / "g0001"))
    worker_s = main["seconds_sum"] + fit["seconds_sum"]
    res = {
        "rows": result.rows_in,
        "rows_out": result.rows_out,
        "seconds": win.seconds,
        "rows_per_s": result.rows_in / win.seconds,
        "main_pass": main,
        "stats_pass": fit,
        "effective_parallelism": round(worker_s / win.seconds, 3),
        "parent_serial_s_estimate": round(max(0.0, win.seconds - worker_s / WORKERS), 3),
        "summary": _summary(spec["processor"], result.report),
        **win.info,
    }
    if prof is not None:
        res["cprofile_top"] = _top_functions(prof)
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


def _summary(name: str, report: dict[str, Any] | None) -> dict[str, Any]:
    """The few report numbers the driver needs (and a sanity check against the one-piece run)."""
    report = report or {}
    if name == "data_profiling":
        cols = report.get("columns", {})
        return {
            "duplicate_rows": report.get("duplicate_rows"),
            "distinct_keys": sum(int(c.get("distinct") or 0) for c in cols.values())
            + report.get("rows", 0)
            - (report.get("duplicate_rows") or 0),
        }
    if name == "data_quality":
        rules = report.get("rules", [])
        return {
            "rows_failed": report.get("rows_failed"),
            "failed": {r["name"]: r["failed"] for r in rules},
            "distinct_keys": sum(int(r.get("distinct_keys") or 0) for r in rules),
        }
    if name == "anomaly_detection":
        return {"anomalies": report.get("anomalies")}
    return {"output_columns": len(report.get("output_columns", []))}


def child_onepiece(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    out_dir = Path(spec["output_path"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with be.Window() as win:
        df = pd.read_parquet(spec["path"])
        summary = ONEPIECE[spec["processor"]](df, out_dir)
        rows = len(df)
        del df
    shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "summary": summary,
        **win.info,
    }


def child_main(spec_text: str) -> None:
    spec = json.loads(spec_text)
    res = {"chunked": child_chunked, "onepiece": child_onepiece}[spec["mode"]](spec)
    res.update(be._rusage())
    sys.stdout.write(RESULT_MARK + json.dumps(res) + "\n")


# --------------------------------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------------------------------
def run_child(spec: dict[str, Any], interval: float) -> dict[str, Any]:
    res = be.run_child(spec, interval=interval, pss=True, script=Path(__file__), mark=RESULT_MARK)
    # peak over samples of the summed RSS of the parent and its live chunk workers (pools of the statistics
    # pass and of the main pass run one after the other, so summing every worker's own peak would add them)
    res["rss_mb"] = res["monitor"]["peak_tree_rss_mb"]
    return res


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir, self.jobs = args, workdir, 0
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def measure(self, name: str, kind: str, path: str, rows: int) -> dict[str, Any]:
        self.jobs += 1
        spec = {
            "mode": "chunked" if kind != "onepiece" else "onepiece",
            "processor": name,
            "path": path,
            "rows": rows,
            "cprofile": bool(self.args.cprofile and kind == "chunked"),
            "output_path": str(self.workdir / "jobs" / f"job{self.jobs:03d}"),
        }
        quiet = be.settle(self.args.settle)
        res = run_child(spec, self.args.interval)
        res["settle"] = quiet
        out(
            f"  {name:<20} {kind:<11} {rows:>9,} rows {res['rows_per_s'] / 1e3:8.0f} k rows/s "
            f"{res['seconds']:7.2f} s  RSS {res['rss_mb']:7.1f} MB  (parent {res['monitor']['parent_hwm_mb']:.0f},"
            f" worker max {res['monitor']['worker_hwm_max_mb']:.0f}, tree PSS {res['monitor']['peak_tree_pss_mb']:.0f})"
            f"  other load {res['foreign_cpu_share']:4.0%}"
        )
        self.runs.setdefault(name, {}).setdefault(kind, []).append(res)
        return res

    def processor(self, name: str, big: dict[str, Any], small: dict[str, Any]) -> None:
        for i in range(self.args.repeats):  # ABBA ... interleaving
            order = ("onepiece", "chunked") if i % 2 == 0 else ("chunked", "onepiece")
            for kind in order:
                self.measure(name, kind, big["path"], big["rows"])
        if small["rows"] != big["rows"]:
            self.measure(name, "chunked_N", small["path"], small["rows"])


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summarize(bench: Bench, big: dict[str, Any], small: dict[str, Any]) -> dict[str, Any]:
    table = {}
    for name, runs in bench.runs.items():
        chunked, onepiece = runs["chunked"], runs["onepiece"]
        pairs = [_ratio(c["rows_per_s"], o["rows_per_s"]) for c, o in zip(chunked, onepiece, strict=False)]
        ratio = statistics.median(pairs)
        big_rss = statistics.median(r["rss_mb"] for r in chunked)
        small_runs = runs.get("chunked_N") or chunked
        small_rss = statistics.median(r["rss_mb"] for r in small_runs)
        key_mb = {}
        for label, rs in (("N", small_runs), ("4N", chunked)):
            keys = rs[0]["summary"].get("distinct_keys") or 0
            key_mb[label] = keys * (16 if name == "data_quality" else 8) / MB
        mem_ratio = _ratio(big_rss, small_rss)
        mem_ratio_ex = _ratio(big_rss - key_mb["4N"], small_rss - key_mb["N"])
        table[name] = {
            "chunked_rows_per_s": statistics.median(r["rows_per_s"] for r in chunked),
            "onepiece_rows_per_s": statistics.median(r["rows_per_s"] for r in onepiece),
            "ratio": ratio,
            "ratio_pairs": pairs,
            "target": TARGETS[name],
            "ratio_verdict": "PASS" if ratio >= TARGETS[name] else "MISS",
            "chunked_rss_mb": big_rss,
            "onepiece_rss_mb": statistics.median(r["rss_mb"] for r in onepiece),
            "chunked_rss_N_mb": small_rss,
            "rows_N": small["rows"],
            "rows_4N": big["rows"],
            "mem_ratio": mem_ratio,
            "key_state_mb": {k: round(v, 1) for k, v in key_mb.items()},
            "mem_ratio_ex_keys": mem_ratio_ex,
            "mem_verdict": "PASS" if mem_ratio_ex <= MEM_TARGET else "MISS",
            "effective_parallelism": statistics.median(r["effective_parallelism"] for r in chunked),
            "parent_serial_s_estimate": statistics.median(r["parent_serial_s_estimate"] for r in chunked),
            "summaries": {"chunked": chunked[0]["summary"], "onepiece": onepiece[0]["summary"]},
        }
    return table


def print_table(table: dict[str, Any], rows: int) -> None:
    out()
    out(
        f"Processors, {rows:,} rows, batch_size {BATCH:,}, {WORKERS} workers (ratios: median of interleaved pairs)"
    )
    head = (
        f"{'processor':<20} {'chunked':>9} {'one-piece':>9} {'ratio':>6} {'target':>6} {'':4}  "
        f"{'RSS ch.':>8} {'RSS 1p':>8} {'RSS N':>7} {'4N/N':>5} {'ex-keys':>7} {'':4}  {'par.':>4}"
    )
    out(head)
    out(f"{'':<20} {'k rows/s':>9} {'k rows/s':>9} {'':>6} {'':>6} {'':4}  {'MB':>8} {'MB':>8} {'MB':>7}")
    out("-" * len(head))
    for name, t in table.items():
        out(
            f"{name:<20} {t['chunked_rows_per_s'] / 1e3:9.0f} {t['onepiece_rows_per_s'] / 1e3:9.0f} "
            f"{t['ratio']:6.2f} {t['target']:6.2f} {t['ratio_verdict']:4}  {t['chunked_rss_mb']:8.0f} "
            f"{t['onepiece_rss_mb']:8.0f} {t['chunked_rss_N_mb']:7.0f} {t['mem_ratio']:5.2f} "
            f"{t['mem_ratio_ex_keys']:7.2f} {t['mem_verdict']:4}  {t['effective_parallelism']:4.2f}"
        )
    out()
    out(
        "ratio = chunked / one-piece rows/s (target: >= target); 4N/N = chunked peak RSS (parent + workers) at "
        f"4N vs N rows; ex-keys = the same without the exact distinct-key state (target <= {MEM_TARGET});"
    )
    out("par. = worker chunk-seconds per wall second (stats pass + main pass) of the chunked run.")


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for dist in ("pandas", "pyarrow", "numpy", "scikit-learn", "psutil"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "git": be._git("rev-parse", "HEAD"),
        "git_dirty": bool(be._git("status", "--porcelain")),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the main file (default 2,000,000)")
    p.add_argument(
        "--n-rows", type=int, default=500_000, help="rows N of the memory comparison (4N = --rows)"
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved chunked/one-piece repeats (default 2)")
    p.add_argument("--only", default=None, help="comma-separated processor names (default: all four)")
    p.add_argument(
        "--cprofile", action="store_true", help="cProfile the chunked jobs' parent (top in the JSON)"
    )
    p.add_argument(
        "--settle", type=float, default=3.0, help="max seconds to wait for a quiet machine per run"
    )
    p.add_argument("--interval", type=float, default=0.1, help="process-tree polling interval (s)")
    p.add_argument("--out", default=str(HERE / "results" / "processors.json"), help="JSON results file")
    p.add_argument("--workdir", default=None, help="folder in which the temp working folder is created")
    p.add_argument("--keep", action="store_true", help="keep the temp working folder")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return 0
    names = args.only.split(",") if args.only else list(PROCESSORS)
    unknown = sorted(set(names) - set(PROCESSORS))
    if unknown:
        raise SystemExit(f"--only: unknown processor(s) {unknown}; choose from {list(PROCESSORS)}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-processors-", dir=args.workdir))
    started = time.monotonic()
    try:
        out(f"data: writing {args.rows:,} and {args.n_rows:,} rows to {workdir}")
        big = be.write_dataset(workdir / "main.parquet", args.rows)
        small = big if args.n_rows == args.rows else be.write_dataset(workdir / "small.parquet", args.n_rows)
        bench = Bench(args, workdir)
        for name in names:
            bench.processor(name, big, small)
        table = summarize(bench, big, small)
        print_table(table, args.rows)
        result = {
            "benchmark": "processors",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "args": {k: v for k, v in vars(args).items() if k != "child"},
            "environment": environment(),
            "data": {"main": big, "small": small},
            "processor_params": {n: PROCESSORS[n] for n in names},
            "summary": table,
            "runs": bench.runs,
            "total_seconds": round(time.monotonic() - started, 1),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
        out(f"total {time.monotonic() - started:.0f} s; raw results: {args.out}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
