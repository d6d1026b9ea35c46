#!/usr/bin/env python
"""Issue #22's memory proof: a high-cardinality ``unique`` rule and profile on S3 vs the same job on local disk.

    python benchmarks/bench_s3_spill.py [--rows 10000000] [--out benchmarks/results/s3_spill.json]

Data: one Parquet file of ``--rows`` rows, 2 columns: ``key`` (int64, every value distinct but 3 repeated) and
``x`` (float64, all distinct), 500k-row row groups. The S3 API is moto's server on 127.0.0.1 in its own process
(its in-memory objects are not in the measured tree); both children import Airflow's task SDK, as a task
process does, so the difference is the S3 client stack and the key state; the source is read from S3 and the job folder is on S3
(an Airflow connection through ``ObjectStoragePath``, as a DAG would do it). Each job runs in a fresh child
process (``bench_engine.run_child``) whose whole process tree (parent + forked chunk workers) is polled for
summed PSS; wall seconds include the commit. Prints the peak-PSS ratio S3 / local and whether the reports are
equal; writes the raw JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
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

import bench_engine as be  # noqa: E402

MARK = "@@BENCH_S3_SPILL@@ "
CONN = "bench_s3"
BUCKET = "bench"
RULES = [{"type": "unique", "column": "key"}]


def _child(spec: dict[str, Any]) -> None:
    # both jobs run as they would in an Airflow task process: the task SDK imported (ObjectStoragePath)
    from airflow.sdk import ObjectStoragePath

    from airflow_batch_provider.engine import run_batch_job

    source, out = spec["source"], spec["out"]
    if spec["remote"]:
        source, out = ObjectStoragePath(source), ObjectStoragePath(out)
    kwargs = {"rules": RULES} if spec["processor"] == "data_quality" else {"duplicates": False}
    t0 = time.perf_counter()
    result = run_batch_job(source, spec["processor"], output_path=out, **kwargs)
    seconds = time.perf_counter() - t0
    print(MARK + json.dumps({"seconds": seconds, "report": result.report}, default=str), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out", default=str(HERE / "results" / "s3_spill.json"))
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    import boto3
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps(conn)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        work = Path(tempfile.mkdtemp(prefix="bench-s3-spill-"))
        rng = np.random.default_rng(11)
        key = rng.permutation(args.rows).astype(np.int64)
        key[[7, args.rows // 2, args.rows - 1]] = key[[1, 2, 3]]
        table = pa.table({"key": key, "x": rng.normal(size=args.rows)})
        local_src = work / "src.parquet"
        pq.write_table(table, local_src, row_group_size=500_000)
        del table, key
        s3.upload_file(str(local_src), BUCKET, "src/src.parquet")
        runs: list[dict[str, Any]] = []
        for processor in ("data_quality", "data_profiling"):
            for remote in (False, True):
                name = f"{processor}-{'s3' if remote else 'local'}"
                spec = {
                    "processor": processor,
                    "remote": remote,
                    "source": f"s3://{CONN}@{BUCKET}/src/src.parquet" if remote else str(local_src),
                    "out": f"s3://{CONN}@{BUCKET}/{name}" if remote else str(work / name),
                }
                res = be.run_child(spec, interval=0.05, pss=True, script=Path(__file__), mark=MARK)
                res["name"] = name
                runs.append(res)
                be.out(
                    f"{name:22s} {res['seconds']:7.1f} s  peak tree PSS {res['monitor']['peak_tree_pss_mb']:7.1f} MB"
                )
        summary = {}
        for processor in ("data_quality", "data_profiling"):
            loc, rem = (next(r for r in runs if r["name"] == f"{processor}-{w}") for w in ("local", "s3"))
            equal = json.dumps(loc["report"], sort_keys=True) == json.dumps(rem["report"], sort_keys=True)
            ratio = rem["monitor"]["peak_tree_pss_mb"] / loc["monitor"]["peak_tree_pss_mb"]
            summary[processor] = {"pss_ratio_s3_vs_local": round(ratio, 3), "reports_equal": equal}
            be.out(f"{processor}: peak PSS S3/local {ratio:.2f} (target <= 1.25); reports equal: {equal}")
        record = {
            "benchmark": "s3_spill (issue #22)",
            "command": " ".join(["python", "benchmarks/bench_s3_spill.py", *sys.argv[1:]]),
            "rows": args.rows,
            "summary": summary,
            "runs": [{k: v for k, v in r.items() if k != "report"} for r in runs],
        }
        Path(args.out).write_text(json.dumps(record, indent=1, default=str) + "\n")
        be.out(f"wrote {args.out}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
