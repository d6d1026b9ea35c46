#!/usr/bin/env python
"""CSV reading figures: indexing, typing (whole-file schema) and parsing rows/s on the CSV twin of
``bench_engine.py``'s 16-column dataset, and a no-op engine job over the same file.

    python benchmarks/bench_csv.py [--rows 2000000] [--out benchmarks/results/csv.json] [--label after]

Each measurement runs in a fresh subprocess (``--child``), so one does not warm the page cache or the
allocator for the next beyond what a second read of the file does anyway. To measure another version of
the package (e.g. the last commit, exported with ``git archive HEAD | tar -x -C /tmp/head``), run this
script with ``PYTHONPATH=/tmp/head``: the figures are for whatever ``airflow_batch_provider`` imports.

Figures (rows/s = data rows / wall seconds):

- ``index``: :func:`index_text_file` (one streaming pass, offsets of every 1,024th record);
- ``schema``: :func:`infer_text_schema` on that index (samples with READER_VERSION 1, every row from 2 on);
- ``parse``: :func:`read_text_rows` over 100,000-row ranges, one process, one thread (what a worker does);
- ``noop_job``: ``run_batch_job(csv, noop, batch_size=100_000)`` with the default concurrency, timed around
  the call (planning included). ``schema / noop_job`` is the typing budget of issue #17 (<= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def noop(batch: Any, ctx: Any) -> None:
    return None


def write_csv(path: Path, rows: int) -> dict[str, Any]:
    """The CSV twin: the same deterministic blocks as bench_engine's Parquet file, via ``DataFrame.to_csv``."""
    from bench_engine import BATCH, SEED, make_block

    t0 = time.perf_counter()
    with open(path, "w", newline="") as fh:
        for b, start in enumerate(range(0, rows, BATCH)):
            frame = make_block(start, min(BATCH, rows - start), SEED + b).to_pandas()
            frame.to_csv(fh, index=False, header=b == 0)
    return {
        "path": str(path),
        "rows": rows,
        "bytes": path.stat().st_size,
        "seconds_to_generate": round(time.perf_counter() - t0, 3),
    }


def _child(kind: str, path: str, rows: int) -> dict[str, Any]:
    import fsspec

    from airflow_batch_provider.engine import textformats as tf

    fs = fsspec.filesystem("file")
    options = tf.TextOptions()
    t0 = time.perf_counter()
    if kind == "noop_job":
        from airflow_batch_provider.engine import run_batch_job

        out = tempfile.mkdtemp(prefix="bench-csv-out-")
        result = run_batch_job(
            path, noop, config={"batch_size": 100_000}, output_path=out, records_path=False
        )
        assert result.rows_in == rows, result.rows_in
        return {"seconds": time.perf_counter() - t0}
    index = tf.index_text_file(fs, path, "csv", options)
    t_index = time.perf_counter() - t0
    assert index.rows == rows, index.rows
    if kind == "index":
        return {"seconds": t_index}
    t1 = time.perf_counter()
    schema = tf.infer_text_schema(fs, path, index, options)
    t_schema = time.perf_counter() - t1
    if kind == "schema":
        return {"seconds": t_schema, "schema": [f"{f.name}:{f.type}" for f in schema]}
    t2 = time.perf_counter()
    n = 0
    for start in range(0, rows, 100_000):
        n += tf.read_text_rows(fs, path, index, start, min(rows, start + 100_000), schema, options).num_rows
    assert n == rows
    return {"seconds": time.perf_counter() - t2}


def _measure(kind: str, path: Path, rows: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path), "--rows", str(rows)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    got = json.loads(done.stdout.strip().splitlines()[-1])
    got["rows_per_s"] = round(rows / got["seconds"]) if got["seconds"] else None
    got["seconds"] = round(got["seconds"], 3)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--out", default=str(HERE / "results" / "csv.json"))
    ap.add_argument("--label", default="after")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", default=None)
    ap.add_argument("--path", default=None)
    args = ap.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(_child(args.child, args.path, args.rows)) + "\n")
        return
    import airflow_batch_provider

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-csv-"))
    path = work / f"twin_{args.rows}.csv"
    data = {"rows": args.rows, "bytes": path.stat().st_size} if path.exists() else write_csv(path, args.rows)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("index", "schema", "parse", "noop_job")}
    for _ in range(args.repeats):
        for kind in runs:
            runs[kind].append(_measure(kind, path, args.rows))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    figures = {
        "label": args.label,
        "package": str(Path(airflow_batch_provider.__file__).parent),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "data": data,
        "best": best,
        "runs": runs,
        "schema_over_noop_job": round(best["schema"]["seconds"] / best["noop_job"]["seconds"], 3),
    }
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[args.label] = figures
    out.write_text(json.dumps(previous, indent=2) + "\n")
    sys.stdout.write(json.dumps({k: {"s": v["seconds"], "rows/s": v["rows_per_s"]} for k, v in best.items()}))
    sys.stdout.write(f"\nschema/noop_job = {figures['schema_over_noop_job']}\n")


if __name__ == "__main__":
    main()
