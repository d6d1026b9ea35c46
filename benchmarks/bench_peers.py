#!/usr/bin/env python
"""Issues #15 and #16's proof: our standard processors against polars, duckdb, scikit-learn and a plain scan.

One command, one run::

    python benchmarks/bench_peers.py [--sizes 2000000,20000000] [--repeats 3] [--only profile,quality,anomaly,noop]
                                     [--out benchmarks/results/peers.json] [--workdir DIR] [--keep]
                                     [--batch-size N] [--workers N]   (diagnostics: ours only)

Needs the ``bench`` extra (``pip install -e '.[bench]'``: polars and duckdb).

Data: the engine benchmark's deterministic 16-column file (``bench_engine.make_block``: a string id, 4 integer
and 6 float columns (the floats with 1-20 % nulls), 3 text categoricals, a timestamp, a boolean), written as
snappy Parquet with 100k-row row groups, block by block (the generator holds one 100k-row block at a time),
one file per ``--sizes`` entry. The file is read once before the measurements of its size (page cache warm for
every tool alike).

Work (the same numbers on every side; each tool at its defaults: polars and duckdb use every core, ours its
default ``BatchConfig()``: auto-sized chunks and auto-tuned concurrency (``engine/sizing.py``: at most one
worker per CPU, fewer when the 1-minute load average is high), 2 GB memory budget; ``--batch-size`` and
``--workers`` override those two for diagnostics and are recorded in the JSON):

profile_exact
    count, nulls and exact distinct (non-null) of all 16 columns; mean, std (ddof=1), min, max and the
    quantiles 0.05, 0.25, 0.5, 0.75, 0.95 with linear interpolation (pandas' default, position (n-1)q) of the
    10 numeric (integer and float) columns.
    ours: ``run_batch_job(path, "data_profiling", exact_quantile_limit=<rows>)`` (quantiles from exact value
    counts; everything else at its defaults, so ours also computes histograms, top values, 0.01/0.99 quantiles,
    duplicate rows and a statistics pass for the histogram edges: work the peers do not do).
    polars: one ``select`` over ``pl.scan_parquet(path)``, ``collect(engine="streaming")``, with
    ``quantile(qs, interpolation="linear")`` and ``drop_nulls().n_unique()``.
    duckdb: one ``SELECT`` over ``read_parquet(path)`` with ``quantile_cont`` and ``count(DISTINCT ...)``.
profile_default
    the same statistics, ours at its defaults (quantiles exact up to 10,000 distinct values per column, else
    within 2**-10 relative error; distinct counts always exact) against the peers' approximate forms: duckdb
    ``approx_quantile`` (T-digest) and ``approx_count_distinct`` (HyperLogLog); polars
    ``approx_n_unique()`` (polars has no approximate quantile: its quantiles stay exact).
quality
    25 row rules: ``not_null`` on all 16 columns, 8 ``between`` rules (``RANGES``: a few % of rows fail them)
    and ``unique`` on ``id`` (a row fails when its id equals an earlier row's); per-rule failure counts and
    rows failed; two outputs: the clean rows (unchanged, source order) and the quarantine (each failing row's
    16 values + ``_source_file_index``, ``_source_row``, ``_failed_rules``: the list of the rule names it
    broke, in rule order), as ours writes them.
    ours: ``run_batch_job(path, "data_quality", rules=QUALITY_RULES)`` (parts and quarantine parts, one
    snappy Parquet file per chunk).
    polars: the repeated ids and their first position (``group_by("id")`` over ``with_row_index``, collected:
    tiny), the distinct failure combinations (``collect``), then ``pl.collect_all`` of two ``sink_parquet``
    (snappy) over a left join (``maintain_order="left"``) on the repeated ids, the quarantine's list column
    from a join on the combination code; counts read back from the quarantine file.
    duckdb: a temp table of the repeated ids (``GROUP BY id HAVING count(*) > 1`` over
    ``read_parquet(path, file_row_number=true)``), then two ``COPY (SELECT ...) TO ... (FORMAT parquet,
    COMPRESSION snappy)`` over a LEFT JOIN on it, the list column by ``list_filter``, each ``ORDER BY
    file_row_number`` (duckdb's hash join does not keep the source order, ``preserve_insertion_order`` or not:
    without the sort the clean rows come out shuffled); counts read back from the quarantine file.
features (issue #16; ``--only features``)
    standard scaling (population std, ddof=0) of the 10 numeric columns (nulls stay null), one-hot of the 3
    text categoricals (uint8 columns, count-descending vocabulary), date parts year, month, day, dayofweek
    (Monday = 0), hour of ``created_at`` (int64); ``id`` and ``is_active`` passed through; written as
    snappy Parquet. ours: ``run_batch_job(path, "feature_engineering", scale=..., encode=..., date_parts=...)``
    (its exact statistics pass, then the transform). polars: a fit pass (means, stds, value counts: one
    ``collect_all``), then one ``select`` over ``scan_parquet`` sunk to Parquet. No duckdb. Agreement (first
    repeat, ``agreement["features"]``): rows, column names, order and types equal; every integer column's
    null count, sum and row-weighted sum equal; vocabularies equal; fitted centres/scales and the values of
    ``FEATURE_VALUE_COLUMNS`` within 1e-12 (relative to max(|a|, |b|, 1)).

anomaly (issue #16)
    ``anomaly_detection`` with ``features=`` the 10 numeric columns (isolation forest, its defaults: fitted on the
    engine's deterministic 100,000-row sample, then every chunk scored in a forked worker, all columns plus
    ``anomaly_score`` and ``is_anomaly`` written) against scikit-learn in one piece, as a ``@task`` would do it:
    ``pq.read_table``, ``IsolationForest(random_state=0)`` fitted on the same sampled rows with the same median
    imputation, one ``score_samples`` over the whole table, one snappy Parquet file. Agreement: the anomaly count,
    the threshold and the output's row-hash digests (same scores, same rows, same order) are equal.
noop (issue #16)
    ``run_batch_job(path, fn, input_format="arrow")`` with ``fn`` returning None (no pandas on the path, nothing
    written) against a plain ``ParquetFile(path, pre_buffer=False).iter_batches()`` over every column. Run it at
    two sizes (``--sizes 500000,2000000``): the table ``marginal`` line gives each side's marginal rate between
    them and its start-up apart.

Measurements: every one in a fresh ``python bench_peers.py --child ...`` subprocess (``bench_engine.run_child``),
timed inside it around the work alone (imports and connection set-up excluded, output writing and our job's
commit included); interleaved: repeat i runs each work's three tools in the order rotated by i (ABC, CAB,
BCA, ...), after a wait (``--settle``) for the machine to go quiet. Per measurement: wall seconds, rows/s, and
the peak over samples (every ``--interval`` s, default 50 ms) of the summed PSS (``/proc/<pid>/smaps_rollup``)
of the whole process tree (``bench_engine.TreeMonitor``: our job's parent + its forked chunk workers; polars'
and duckdb's threads live in their one process). Medians over ``--repeats``; ratio = (ours rows/s) / (fastest
peer rows/s), of the medians (the per-repeat ratios are in the JSON too); memory ratio = our peak PSS at the
largest size / at the smallest size of the run.

Agreement (first repeat of each tool, recorded in the JSON under ``agreement``, printed when anything
disagrees): profile: counts, nulls, min, max equal; means and stds within 1e-9 relative; exact distinct counts
equal; exact quantiles equal (bitwise equality and the largest relative difference are both recorded; up to
1e-12 relative counts as equal: the interpolation's last-bit rounding); against the exact reference (polars
exact, else duckdb exact) the approximate forms' largest relative errors are recorded. quality: rows, rows
failed and per-rule failure counts equal; both outputs re-read by the driver (polars): row counts, schemas, an
order-independent and an order-dependent digest of the row hashes (``pl.struct(all).hash``).

Where our time goes (``ours`` runs): the job parent's phases, timed by wrapping ``JobRunner.fit``,
``run_tasks`` and ``finalize`` in the measurement process (no package file changes): statistics pass (its
chunks, its merge), main pass, final merge + report + commit; chunk counts, batch size and worker chunk-seconds
from the chunk records.

The machine is shared and noisy (load averages at start and end, and each measurement's share of CPU taken by
other processes, are recorded): compare ratios from one run. The package may be edited while the benchmark
runs: each measurement records a hash of the package's sources just before it starts (and whether they changed
while it ran); the table warns when our measurements of one run imported different versions. Nothing outside
this repository is read.
"""

from __future__ import annotations

import argparse
import hashlib
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

import bench_engine as be  # noqa: E402  (the engine benchmark's data, child-process and process-tree helpers)

RESULT_MARK = "@@BENCH_PEERS_RESULT@@ "
MB = 2**20
COLUMNS = [
    "id",
    "user_id",
    "quantity",
    "age",
    "visits",
    "amount",
    "price",
    "score",
    "latitude",
    "longitude",
    "discount",
    "country",
    "status",
    "channel",
    "created_at",
    "is_active",
]
NUMERIC = [
    "user_id",
    "quantity",
    "age",
    "visits",
    "amount",
    "price",
    "score",
    "latitude",
    "longitude",
    "discount",
]
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
# inclusive bounds; expected failure share of the evaluated (non-null) values in brackets
RANGES: dict[str, tuple[float, float]] = {
    "quantity": (1, 98),  # uniform 1..99 (1.0 %)
    "age": (18, 88),  # uniform 18..89 (1.4 %)
    "visits": (0, 8),  # Poisson(3) (0.4 %)
    "amount": (0.0, 220.0),  # N(100, 40) (0.8 %)
    "price": (5.0, 35.0),  # N(20, 5) (0.3 %)
    "score": (-2.5, 2.5),  # N(0, 1) (1.2 %)
    "latitude": (20.0, 70.0),  # N(45, 10) (1.2 %)
    "discount": (0.0, 0.25),  # N(0.1, 0.05) (2.4 %)
}
QUALITY_RULES: list[dict[str, Any]] = [
    *({"type": "not_null", "column": c} for c in COLUMNS),
    *({"type": "between", "column": c, "min": lo, "max": hi} for c, (lo, hi) in RANGES.items()),
    {"type": "unique", "column": "id"},
]
RULE_NAMES = [f"{r['type']}({r['column']})" for r in QUALITY_RULES]  # our default rule names
COMPARISONS: dict[str, dict[str, Any]] = {
    "profile_exact": {
        "work": "profile",
        "tools": [("ours", "exact"), ("polars", "exact"), ("duckdb", "exact")],
    },
    "profile_default": {
        "work": "profile",
        "tools": [("ours", "default"), ("polars", "approx"), ("duckdb", "approx")],
    },
    "quality": {"work": "quality", "tools": [("ours", ""), ("polars", ""), ("duckdb", "")]},
    "anomaly": {"work": "anomaly", "tools": [("ours", ""), ("sklearn", "")]},
    "noop": {"work": "noop", "tools": [("ours", ""), ("scan", "")]},
    "features": {"work": "features", "tools": [("ours", ""), ("polars", "")]},
}
WORKS = tuple(dict.fromkeys(spec["work"] for spec in COMPARISONS.values()))
ANOMALY_SAMPLE = 100_000  # anomaly_detection's default sample_size: both sides fit on the same rows
MEAN_RTOL = 1e-9
QUANTILE_RTOL = 1e-12


def out(text: str = "") -> None:
    be.out(text)


def _rel(a: Any, b: Any) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


# --------------------------------------------------------------------------------------------------
# child side: ours
# --------------------------------------------------------------------------------------------------
def _instrument_phases() -> list[dict[str, Any]]:
    """Time the job parent's phases by wrapping three ``JobRunner`` methods in this process only."""
    from airflow_batch_provider.engine import runner

    phases: list[dict[str, Any]] = []

    def wrap(name: str) -> None:
        real = getattr(runner.JobRunner, name)

        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(self, *args, **kwargs)
            finally:
                phases.append({"job": self.job_id, "phase": name, "t0": t0, "t1": time.perf_counter()})

        setattr(runner.JobRunner, name, timed)

    for name in ("fit", "run_tasks", "finalize"):
        wrap(name)
    return phases


def _phase_split(phases: list[dict[str, Any]], t_start: float, t_end: float) -> dict[str, Any]:
    def pick(nested: bool, phase: str) -> float:
        return round(
            sum(
                p["t1"] - p["t0"]
                for p in phases
                if p["job"].endswith("/fit") == nested and p["phase"] == phase
            ),
            3,
        )

    outer = [p for p in phases if not p["job"].endswith("/fit")]
    first = min((p["t0"] for p in outer), default=t_end)
    return {
        "setup_s": round(first - t_start, 3),  # plan, fingerprint, batch sizing, validation
        "stats_pass_s": pick(False, "fit"),
        "stats_pass_chunks_s": pick(True, "run_tasks"),
        "stats_pass_merge_s": pick(True, "finalize"),
        "main_pass_s": pick(False, "run_tasks"),
        "final_merge_commit_s": pick(False, "finalize"),
        "wall_s": round(t_end - t_start, 3),
    }


def _ours_profile_stats(report: dict[str, Any]) -> dict[str, Any]:
    cols = {}
    for name, c in report["columns"].items():
        entry = {"count": c["count"], "nulls": c["nulls"], "distinct": c["distinct"]}
        if name in NUMERIC:
            qs = c.get("quantiles") or {}
            entry.update(
                mean=c["mean"],
                std=c["std"],
                min=c["min"],
                max=c["max"],
                quantiles=[qs.get(repr(float(q))) for q in QUANTILES],
                quantiles_exact=c.get("quantiles_exact"),
            )
        cols[name] = entry
    return {"rows": report["rows"], "columns": cols}


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    import bench_processors as bp

    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.jobs import run_batch_job

    out_dir = Path(spec["output_path"])
    processor: Any
    kwargs: dict[str, Any] = {}
    if spec["work"] == "profile":
        processor = "data_profiling"
        kwargs = {"exact_quantile_limit": spec["rows"]} if spec["variant"] == "exact" else {}
    elif spec["work"] == "quality":
        processor, kwargs = "data_quality", {"rules": QUALITY_RULES}
    elif spec["work"] == "features":
        processor, kwargs = "feature_engineering", feature_kwargs()
    elif spec["work"] == "anomaly":
        processor, kwargs = "anomaly_detection", {"features": NUMERIC}
        import sklearn.ensemble  # noqa: F401  (imports are outside the window on every side, as the peer's)
    else:  # noop: a callable that returns None, handed Arrow tables (no pandas on the path)
        processor, kwargs = _noop, {"input_format": "arrow"}
    phases = _instrument_phases()
    config = BatchConfig(**spec.get("ours_config", {}))  # default: BatchConfig(), what a user gets
    t_start = time.perf_counter()
    with be.Window() as win:
        result = run_batch_job(
            spec["path"],
            processor,
            config=config,
            output_path=str(out_dir),
            records_path=spec["records_path"],
            **kwargs,
        )
    t_end = time.perf_counter()
    gen = out_dir / f"g{result.generation:04d}"
    main, fit = bp._worker_time(bp._records(gen)), bp._worker_time(bp._records(gen / "fit" / "g0001"))
    res: dict[str, Any] = {
        "rows": result.rows_in,
        "seconds": win.seconds,
        "rows_per_s": result.rows_in / win.seconds,
        "job": {
            "processor": processor if isinstance(processor, str) else "noop (a callable returning None)",
            "processor_kwargs": {k: v for k, v in kwargs.items() if k != "rules"},
            "batch_size": result.batch_size,
            "chunks": result.chunks_total,
            "concurrency": config.concurrency,
            "memory_limit_mb": config.memory_limit_mb,
            "main_pass": main,
            "stats_pass": fit,
            "phases": _phase_split(phases, t_start, t_end),
        },
        **win.info,
    }
    report = result.report or {}
    if spec["work"] == "profile":
        res["stats"] = _ours_profile_stats(report)
        res["job"]["duplicate_rows"] = report.get("duplicate_rows")
        shutil.rmtree(out_dir, ignore_errors=True)
    elif spec["work"] == "noop":
        res["counts"] = {"rows": result.rows_in, "rows_out": result.rows_out}
        shutil.rmtree(out_dir, ignore_errors=True)
    elif spec["work"] == "features":
        columns = report["spec"]["columns"]
        res["fit"] = {
            "scale": {c: [columns[c]["scale"]["center"], columns[c]["scale"]["scale"]] for c in NUMERIC},
            "vocabulary": {c: columns[c]["encode"]["vocabulary"] for c in FEATURE_CATEGORICALS},
        }
        manifest = json.loads((out_dir / "_manifest.json").read_text())
        res["outputs"] = {"features": [str(out_dir / p) for p in manifest["parts"]], "cleanup": str(out_dir)}
    elif spec["work"] == "anomaly":
        res["counts"] = {
            "rows": report["rows"],
            "anomalies": report["anomalies"],
            "fit_rows": report["fit_rows"],
            "threshold": report["threshold"],
            "features": report["features"],
        }
        manifest = json.loads((out_dir / "_manifest.json").read_text())
        res["outputs"] = {"clean": [str(out_dir / p) for p in manifest["parts"]], "cleanup": str(out_dir)}
    else:
        res["counts"] = {
            "rows": report["rows"],
            "rows_failed": report["rows_failed"],
            "failed": {r["name"]: r["failed"] for r in report["rules"]},
        }
        manifest = json.loads((out_dir / "_manifest.json").read_text())
        res["outputs"] = {
            "clean": [str(out_dir / p) for p in manifest["parts"]],
            "quarantine": [str(out_dir / p) for p in manifest["quarantine"]],
            "cleanup": str(out_dir),
        }
    return res


def _noop(chunk: Any, ctx: Any) -> None:
    """The no-op job's processor: returns None (no rows written); module level so forked workers find it."""
    return None


# --------------------------------------------------------------------------------------------------
# child side: scikit-learn in one piece, and the plain scan
# --------------------------------------------------------------------------------------------------
def child_sklearn_anomaly(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user would write in a ``@task``: read the table, fit scikit-learn's ``IsolationForest`` (its
    defaults, ``random_state=0``) on the same 100,000 sampled rows as ours (positions from
    ``default_rng(0)``, sorted; NaN imputed with the sample's medians), score the whole table in one
    ``score_samples`` call and write it with ``anomaly_score`` and ``is_anomaly`` to one snappy Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import IsolationForest

    out_dir = Path(spec["output_path"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with be.Window() as win:
        table = pq.read_table(spec["path"])
        x = np.empty((table.num_rows, len(NUMERIC)), dtype=np.float64)
        for j, c in enumerate(NUMERIC):
            x[:, j] = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        total = table.num_rows
        pick = np.sort(np.random.default_rng(0).choice(total, size=min(ANOMALY_SAMPLE, total), replace=False))
        medians = np.nanmedian(x[pick], axis=0)
        missing = np.isnan(x)
        x[missing] = np.take(medians, np.nonzero(missing)[1])
        model = IsolationForest(random_state=0).fit(x[pick])
        scores = -model.score_samples(x)
        threshold = -float(model.offset_)
        flags = scores > threshold
        table = table.append_column("anomaly_score", pa.array(scores)).append_column(
            "is_anomaly", pa.array(flags)
        )
        path = out_dir / "scored.parquet"
        pq.write_table(table, path, compression="snappy")
    return {
        "rows": total,
        "seconds": win.seconds,
        "rows_per_s": total / win.seconds,
        "counts": {
            "rows": total,
            "anomalies": int(flags.sum()),
            "fit_rows": len(pick),
            "threshold": threshold,
            "features": NUMERIC,
        },
        "outputs": {"clean": [str(path)], "cleanup": str(out_dir)},
        **win.info,
    }


def child_scan(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain scan the no-op job is measured against: every column, batch by batch."""
    import pyarrow.parquet as pq

    with be.Window() as win:
        rows = 0
        for batch in pq.ParquetFile(spec["path"], pre_buffer=False).iter_batches():
            rows += batch.num_rows
    return {"rows": rows, "seconds": win.seconds, "rows_per_s": rows / win.seconds, **win.info}


# --------------------------------------------------------------------------------------------------
# child side: polars
# --------------------------------------------------------------------------------------------------
def child_polars_profile(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    exact = spec["variant"] == "exact"
    with be.Window() as win:
        lf = pl.scan_parquet(spec["path"])
        exprs = [pl.len().alias("rows")]
        for c in COLUMNS:
            distinct = (
                pl.col(c).drop_nulls().n_unique() if exact else pl.col(c).drop_nulls().approx_n_unique()
            )
            exprs += [pl.col(c).null_count().alias(f"{c}|nulls"), distinct.alias(f"{c}|distinct")]
        for c in NUMERIC:
            x = pl.col(c)
            exprs += [
                x.mean().alias(f"{c}|mean"),
                x.std(ddof=1).alias(f"{c}|std"),
                x.min().alias(f"{c}|min"),
                x.max().alias(f"{c}|max"),
                x.quantile(QUANTILES, interpolation="linear").alias(f"{c}|quantiles"),
            ]
        row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
    rows = int(row["rows"])
    cols = {}
    for c in COLUMNS:
        nulls = int(row[f"{c}|nulls"])
        entry: dict[str, Any] = {"count": rows - nulls, "nulls": nulls, "distinct": int(row[f"{c}|distinct"])}
        if c in NUMERIC:
            entry.update({k: row[f"{c}|{k}"] for k in ("mean", "std", "min", "max")})
            entry["quantiles"] = [float(v) for v in row[f"{c}|quantiles"]]
        cols[c] = entry
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "stats": {"rows": rows, "columns": cols},
        **win.info,
    }


def _polars_flags(pl: Any) -> dict[str, Any]:
    flags = {f"not_null({c})": pl.col(c).is_null() for c in COLUMNS}
    for c, (lo, hi) in RANGES.items():
        flags[f"between({c})"] = pl.col(c).is_not_null() & ~pl.col(c).is_between(lo, hi)
    flags["unique(id)"] = pl.col("_first").is_not_null() & (pl.col("_first") < pl.col("_source_row"))
    assert list(flags) == RULE_NAMES
    return flags


def child_polars_quality(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    folder = Path(spec["output_path"])
    folder.mkdir(parents=True, exist_ok=True)
    clean_path, quarantine_path = folder / "clean.parquet", folder / "quarantine.parquet"
    with be.Window() as win:
        lf = pl.scan_parquet(spec["path"]).with_row_index("_source_row")
        # ids that occur more than once, with their first position (usually none: a tiny frame)
        repeated = (
            lf.group_by("id")
            .agg(pl.col("_source_row").min().alias("_first"), pl.len().alias("_n"))
            .filter(pl.col("_n") > 1)
            .select("id", "_first")
            .collect(engine="streaming")
        )
        flags = _polars_flags(pl)
        code = pl.sum_horizontal([f.cast(pl.Int64) * (1 << i) for i, f in enumerate(flags.values())])
        checked = lf.join(repeated.lazy(), on="id", how="left", maintain_order="left").with_columns(
            code.alias("_code")
        )
        # one list of rule names per failure combination (a list built per row is ~3x slower in polars)
        codes = (
            checked.filter(pl.col("_code") > 0).select(pl.col("_code").unique()).collect(engine="streaming")
        )
        names = [[n for i, n in enumerate(RULE_NAMES) if c >> i & 1] for c in codes["_code"].to_list()]
        lookup = pl.DataFrame(
            {"_code": codes["_code"], "_failed_rules": names},
            schema={"_code": pl.Int64, "_failed_rules": pl.List(pl.String)},
        ).lazy()
        clean = checked.filter(pl.col("_code") == 0).select(COLUMNS)
        quarantine = (
            checked.filter(pl.col("_code") > 0)
            .join(lookup, on="_code", how="left", maintain_order="left")
            .select(
                *COLUMNS,
                pl.lit(0, pl.Int64).alias("_source_file_index"),
                pl.col("_source_row").cast(pl.Int64),
                "_failed_rules",
            )
        )
        pl.collect_all(
            [
                clean.sink_parquet(clean_path, compression="snappy", lazy=True),
                quarantine.sink_parquet(quarantine_path, compression="snappy", lazy=True),
            ],
            engine="streaming",
        )
        per_rule = (
            pl.scan_parquet(quarantine_path)
            .select(pl.col("_failed_rules").explode())
            .group_by("_failed_rules")
            .len()
            .collect(engine="streaming")
        )
        failed_rows = pl.scan_parquet(quarantine_path).select(pl.len()).collect().item()
        clean_rows = pl.scan_parquet(clean_path).select(pl.len()).collect().item()
    failed = dict.fromkeys(RULE_NAMES, 0) | dict(zip(per_rule["_failed_rules"], per_rule["len"], strict=True))
    rows = int(failed_rows + clean_rows)
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "counts": {
            "rows": rows,
            "rows_failed": int(failed_rows),
            "failed": {k: int(v) for k, v in failed.items()},
        },
        "outputs": {"clean": [str(clean_path)], "quarantine": [str(quarantine_path)], "cleanup": str(folder)},
        "failure_combinations": len(names),
        **win.info,
    }


# --------------------------------------------------------------------------------------------------
# child side: duckdb
# --------------------------------------------------------------------------------------------------
def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def child_duckdb_profile(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    exact = spec["variant"] == "exact"
    con = duckdb.connect()
    qs = "[" + ", ".join(repr(q) for q in QUANTILES) + "]"
    exprs = ["count(*) AS rows"]
    for c in COLUMNS:
        distinct = f"count(DISTINCT {c})" if exact else f"approx_count_distinct({c})"
        exprs += [f'count({c}) AS "{c}|count"', f'{distinct} AS "{c}|distinct"']
    for c in NUMERIC:
        quant = f"quantile_cont({c}, {qs})" if exact else f"approx_quantile({c}, {qs})"
        exprs += [
            f'avg({c}) AS "{c}|mean"',
            f'stddev_samp({c}) AS "{c}|std"',
            f'min({c}) AS "{c}|min"',
            f'max({c}) AS "{c}|max"',
            f'{quant} AS "{c}|quantiles"',
        ]
    sql = f"SELECT {', '.join(exprs)} FROM read_parquet({_sql_str(spec['path'])})"
    with be.Window() as win:
        cur = con.execute(sql)
        values = cur.fetchone()
        names = [d[0] for d in cur.description]
    row = dict(zip(names, values, strict=True))
    rows = int(row["rows"])
    cols = {}
    for c in COLUMNS:
        count = int(row[f"{c}|count"])
        entry: dict[str, Any] = {"count": count, "nulls": rows - count, "distinct": int(row[f"{c}|distinct"])}
        if c in NUMERIC:
            entry.update({k: row[f"{c}|{k}"] for k in ("mean", "std", "min", "max")})
            entry["quantiles"] = [float(v) for v in row[f"{c}|quantiles"]]
        cols[c] = entry
    settings = dict(
        zip(
            ("threads", "memory_limit", "preserve_insertion_order"),
            con.execute(
                "SELECT current_setting('threads'), current_setting('memory_limit'), "
                "current_setting('preserve_insertion_order')"
            ).fetchone(),
            strict=True,
        )
    )
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "stats": {"rows": rows, "columns": cols},
        "duckdb_settings": {k: str(v) for k, v in settings.items()},
        **win.info,
    }


def _duckdb_flags() -> dict[str, str]:
    flags = {f"not_null({c})": f"t.{c} IS NULL" for c in COLUMNS}
    for c, (lo, hi) in RANGES.items():
        flags[f"between({c})"] = f"(t.{c} IS NOT NULL AND t.{c} NOT BETWEEN {lo!r} AND {hi!r})"
    flags["unique(id)"] = "(d._first IS NOT NULL AND d._first < t.file_row_number)"
    assert list(flags) == RULE_NAMES
    return flags


def child_duckdb_quality(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    folder = Path(spec["output_path"])
    folder.mkdir(parents=True, exist_ok=True)
    clean_path, quarantine_path = folder / "clean.parquet", folder / "quarantine.parquet"
    src = f"read_parquet({_sql_str(spec['path'])}, file_row_number = true)"
    flags = _duckdb_flags()
    reasons = ", ".join(f"CASE WHEN {cond} THEN {_sql_str(name)} END" for name, cond in flags.items())
    any_failed = " OR ".join(flags.values())
    cols = ", ".join(f"t.{c}" for c in COLUMNS)
    con = duckdb.connect()
    with be.Window() as win:
        con.execute(
            f"CREATE TEMP TABLE repeated AS SELECT id, min(file_row_number) AS _first FROM {src} "
            "GROUP BY id HAVING count(*) > 1"
        )
        checked = f"{src} t LEFT JOIN repeated d ON t.id = d.id"
        con.execute(
            f"COPY (SELECT {cols} FROM {checked} WHERE NOT ({any_failed}) ORDER BY t.file_row_number) "
            f"TO {_sql_str(str(clean_path))} (FORMAT parquet, COMPRESSION snappy)"
        )
        con.execute(
            f"COPY (SELECT {cols}, 0::BIGINT AS _source_file_index, t.file_row_number AS _source_row, "
            f"list_filter([{reasons}], lambda x: x IS NOT NULL) AS _failed_rules FROM {checked} "
            f"WHERE {any_failed} ORDER BY t.file_row_number) TO {_sql_str(str(quarantine_path))} "
            "(FORMAT parquet, COMPRESSION snappy)"
        )
        q = _sql_str(str(quarantine_path))
        per_rule = con.execute(
            f"SELECT r, count(*) FROM (SELECT unnest(_failed_rules) AS r FROM read_parquet({q})) GROUP BY r"
        ).fetchall()
        failed_rows = con.execute(f"SELECT count(*) FROM read_parquet({q})").fetchone()[0]
        clean_rows = con.execute(
            f"SELECT count(*) FROM read_parquet({_sql_str(str(clean_path))})"
        ).fetchone()[0]
    failed = dict.fromkeys(RULE_NAMES, 0) | {name: int(n) for name, n in per_rule}
    rows = int(failed_rows + clean_rows)
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "counts": {"rows": rows, "rows_failed": int(failed_rows), "failed": failed},
        "outputs": {"clean": [str(clean_path)], "quarantine": [str(quarantine_path)], "cleanup": str(folder)},
        **win.info,
    }


# --------------------------------------------------------------------------------------------------
# features (issue #16): feature_engineering against the same work in polars
# --------------------------------------------------------------------------------------------------
FEATURE_CATEGORICALS = ["country", "status", "channel"]  # text columns with 5-40 distinct values
FEATURE_DATE_PARTS = ["year", "month", "day", "dayofweek", "hour"]
#: scaled columns whose values the agreement check compares row by row (the others: fitted centre and scale)
FEATURE_VALUE_COLUMNS = ["user_id", "amount", "score"]
FEATURE_RTOL = 1e-12
#: the read-back value columns of each (rows, tool), kept in the driver for the agreement check (not in the JSON)
_FEATURE_FRAMES: dict[tuple[int, str], Any] = {}


def feature_kwargs() -> dict[str, Any]:
    """Our ``feature_engineering`` settings: standard scaling of the 10 numeric columns (no imputation: nulls
    stay null), one-hot of the 3 categoricals (every value: none is ``<other>``), date parts of ``created_at``;
    ``id`` and ``is_active`` pass through."""
    return {
        "scale": dict.fromkeys(NUMERIC, "standard"),
        "encode": dict.fromkeys(FEATURE_CATEGORICALS, "onehot"),
        "date_parts": {"created_at": list(FEATURE_DATE_PARTS)},
    }


def child_polars_features(spec: dict[str, Any]) -> dict[str, Any]:
    """The same work in polars: a fit pass (means, population stds, value counts: one ``collect_all``), then
    one lazy ``select`` over ``scan_parquet`` sunk to snappy Parquet (streaming engine)."""
    import polars as pl

    folder = Path(spec["output_path"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "features.parquet"
    with be.Window() as win:
        lf = pl.scan_parquet(spec["path"])
        moments = lf.select(
            pl.len().alias("rows"),
            *(pl.col(c).cast(pl.Float64).mean().alias(f"{c}|mean") for c in NUMERIC),
            *(pl.col(c).cast(pl.Float64).std(ddof=0).alias(f"{c}|std") for c in NUMERIC),
        )
        counts = [lf.group_by(c).len().drop_nulls(c) for c in FEATURE_CATEGORICALS]
        fitted = pl.collect_all([moments, *counts], engine="streaming")
        row = fitted[0].row(0, named=True)
        scale = {}
        for c in NUMERIC:
            center, std = row[f"{c}|mean"], row[f"{c}|std"]
            scale[c] = [0.0 if center is None else center, 1.0 if not std else std]
        vocab = {  # count descending, then the value's text (ours' order)
            c: [
                v
                for v, _ in sorted(
                    zip(f[c].to_list(), f["len"].to_list(), strict=True), key=lambda t: (-t[1], t[0])
                )
            ]
            for c, f in zip(FEATURE_CATEGORICALS, fitted[1:], strict=True)
        }
        dt = pl.col("created_at").dt
        parts = {
            "year": dt.year(),
            "month": dt.month(),
            "day": dt.day(),
            "dayofweek": dt.weekday() - 1,
            "hour": dt.hour(),
        }
        exprs: list[Any] = []
        for c in COLUMNS:
            if c in NUMERIC:
                exprs.append(((pl.col(c).cast(pl.Float64) - scale[c][0]) / scale[c][1]).alias(c))
            elif c in FEATURE_CATEGORICALS:
                exprs += [
                    (pl.col(c) == v).fill_null(False).cast(pl.UInt8).alias(f"{c}={v}") for v in vocab[c]
                ]
                other = pl.col(c).is_not_null() & ~pl.col(c).is_in(vocab[c])
                exprs.append(other.cast(pl.UInt8).alias(f"{c}=<other>"))
            elif c == "created_at":
                exprs += [parts[p].cast(pl.Int64).alias(f"{c}_{p}") for p in FEATURE_DATE_PARTS]
            else:
                exprs.append(pl.col(c))
        lf.select(exprs).sink_parquet(path, compression="snappy", engine="streaming")
    rows = int(row["rows"])
    return {
        "rows": rows,
        "seconds": win.seconds,
        "rows_per_s": rows / win.seconds,
        "fit": {"scale": scale, "vocabulary": vocab},
        "outputs": {"features": [str(path)], "cleanup": str(folder)},
        **win.info,
    }


FEATURE_CHILDREN = {("ours", "features"): child_ours, ("polars", "features"): child_polars_features}


def features_read_back(files: list[str], key: tuple[int, str]) -> dict[str, Any]:
    """Rows, schema and per-column digests of a features output (polars, in the driver: not measured): for every
    integer column (one-hot, date parts) its null count, sum and row-weighted sum (a changed value, row order
    or column order shows); the :data:`FEATURE_VALUE_COLUMNS` themselves are kept for the agreement check."""
    import polars as pl

    lf = pl.scan_parquet(files)
    schema = {k: str(v) for k, v in lf.collect_schema().items()}
    ints = [c for c, t in schema.items() if t in ("UInt8", "Int64") and c not in NUMERIC]
    w = pl.int_range(pl.len(), dtype=pl.Int64) + 1
    digest = lf.select(
        pl.len().alias("rows"),
        *(pl.col(c).null_count().alias(f"{c}|nulls") for c in ints),
        *(pl.col(c).cast(pl.Int64).sum().alias(f"{c}|sum") for c in ints),
        *((pl.col(c).cast(pl.Int64) * w).sum().alias(f"{c}|wsum") for c in ints),
    ).collect(engine="streaming")
    _FEATURE_FRAMES[key] = lf.select(FEATURE_VALUE_COLUMNS).collect(engine="streaming")
    return {"schema": schema, "digests": {k: int(v) for k, v in digest.row(0, named=True).items()}}


def _feature_values_rel(a: Any, b: Any) -> tuple[float, list[str]]:
    """The largest ``|a - b| / max(|a|, |b|, 1)`` over the value columns (scaled values are O(1): a plain
    relative difference near 0 measures only the fitted centre's last bit) and the columns whose nulls differ."""
    import numpy as np

    worst, problems = 0.0, []
    for c in FEATURE_VALUE_COLUMNS:
        x, y = a[c].to_numpy(), b[c].to_numpy()  # nulls as NaN
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            problems.append(f"{c}: nulls at different rows")
            continue
        ok = ~np.isnan(x)
        den = np.maximum(np.maximum(np.abs(x[ok]), np.abs(y[ok])), 1.0)
        worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / den, initial=0.0)))
    return worst, problems


def features_agreement(comps: dict[str, Any]) -> dict[str, Any]:
    """polars' features output against ours: rows, column names, order and types, fitted centres and scales
    and :data:`FEATURE_VALUE_COLUMNS` within :data:`FEATURE_RTOL`, one-hot vocabularies and every integer
    column's digests equal."""
    runs = comps.get("features", {})
    if not (runs.get("ours") and runs.get("polars")):
        return {}
    ours, peer = runs["ours"][0], runs["polars"][0]
    a, b = ours["features_read_back"], peer["features_read_back"]
    problems = []
    if a["schema"] != b["schema"]:
        diff = [
            (k, a["schema"].get(k), b["schema"].get(k))
            for k in {*a["schema"], *b["schema"]}
            if a["schema"].get(k) != b["schema"].get(k)
        ]
        problems.append(
            f"schema differs: {sorted(diff)[:6]} (order equal: {list(a['schema']) == list(b['schema'])})"
        )
    for k, v in a["digests"].items():
        if b["digests"].get(k) != v:
            problems.append(f"{k}: {b['digests'].get(k)} != {v}")
    if ours["fit"]["vocabulary"] != peer["fit"]["vocabulary"]:
        problems.append("one-hot vocabularies differ")
    fit_rel = max(
        _rel(x, y)
        for c in NUMERIC
        for x, y in zip(ours["fit"]["scale"][c], peer["fit"]["scale"][c], strict=True)
    )
    if fit_rel > FEATURE_RTOL:
        problems.append(f"fitted centre/scale rel diff {fit_rel:.2e}")
    rows = ours["rows"]
    values_rel, null_problems = _feature_values_rel(
        _FEATURE_FRAMES[(rows, "ours")], _FEATURE_FRAMES[(rows, "polars")]
    )
    problems += null_problems
    if values_rel > FEATURE_RTOL:
        problems.append(f"values rel diff {values_rel:.2e}")
    onehot = [c for c in a["schema"] if "=" in c]
    return {
        "features": {
            "reference": "features/ours",
            "features/polars": {
                "agree": not problems,
                "problems": problems,
                "columns": len(a["schema"]),
                "onehot_columns": len(onehot),
                "fit_max_rel_diff": fit_rel,
                "values_max_rel_diff": values_rel,
                "value_columns": FEATURE_VALUE_COLUMNS,
            },
        }
    }


CHILDREN = {
    ("ours", "profile"): child_ours,
    ("ours", "quality"): child_ours,
    ("polars", "profile"): child_polars_profile,
    ("polars", "quality"): child_polars_quality,
    ("duckdb", "profile"): child_duckdb_profile,
    ("duckdb", "quality"): child_duckdb_quality,
    ("ours", "anomaly"): child_ours,
    ("sklearn", "anomaly"): child_sklearn_anomaly,
    ("ours", "noop"): child_ours,
    ("scan", "noop"): child_scan,
    **FEATURE_CHILDREN,
}


def child_main(spec_text: str) -> None:
    spec = json.loads(spec_text)
    res = CHILDREN[(spec["tool"], spec["work"])](spec)
    res.update(be._rusage())
    sys.stdout.write(RESULT_MARK + json.dumps(res, default=str) + "\n")


# --------------------------------------------------------------------------------------------------
# driver side: agreement
# --------------------------------------------------------------------------------------------------
def compare_profiles(ref: dict[str, Any], other: dict[str, Any], exact_distinct: bool, exact_q: bool) -> dict:
    """``other`` against the exact reference ``ref``: disagreements, and the approximations' largest errors."""
    problems: list[str] = []
    q_rel = d_rel = q_std = 0.0
    q_unequal = 0
    if ref["rows"] != other["rows"]:
        problems.append(f"rows {other['rows']} != {ref['rows']}")
    for c in COLUMNS:
        a, b = ref["columns"][c], other["columns"].get(c)
        if b is None:
            problems.append(f"{c}: missing")
            continue
        for k in ("count", "nulls"):
            if a[k] != b[k]:
                problems.append(f"{c}.{k} {b[k]} != {a[k]}")
        rel = _rel(a["distinct"], b["distinct"])
        d_rel = max(d_rel, rel)
        if exact_distinct and rel:
            problems.append(f"{c}.distinct {b['distinct']} != {a['distinct']}")
        if c not in NUMERIC:
            continue
        for k in ("min", "max"):
            if _rel(a[k], b[k]):
                problems.append(f"{c}.{k} {b[k]!r} != {a[k]!r}")
        for k in ("mean", "std"):
            if _rel(a[k], b[k]) > MEAN_RTOL:
                problems.append(f"{c}.{k} {b[k]!r} vs {a[k]!r} (rel {_rel(a[k], b[k]):.2e})")
        for q, x, y in zip(QUANTILES, a["quantiles"], b["quantiles"], strict=True):
            rel = _rel(x, y)
            q_rel = max(q_rel, rel)
            if a["std"]:  # the error in standard deviations (relative errors explode near zero)
                q_std = max(q_std, abs(float(x) - float(y)) / float(a["std"]))
            q_unequal += x != y
            if exact_q and rel > QUANTILE_RTOL:
                problems.append(f"{c}.q{q} {y!r} vs {x!r} (rel {rel:.2e})")
    return {
        "agree": not problems,
        "problems": problems,
        "quantile_max_rel_diff": q_rel,
        "quantile_max_diff_in_std": q_std,
        "quantiles_not_bitwise_equal": int(q_unequal),
        "distinct_max_rel_diff": d_rel,
    }


def output_digest(files: list[str]) -> dict[str, Any]:
    """Rows, schema and row-hash digests of a Parquet output (polars, in the driver: not measured)."""
    import polars as pl

    if not files:
        return {"rows": 0, "schema": None, "hash_sum": 0, "ordered_hash": 0}
    lf = pl.scan_parquet(files)
    schema = {k: str(v) for k, v in lf.collect_schema().items()}
    h = pl.struct(pl.all()).hash(seed=0)
    idx = pl.int_range(pl.len(), dtype=pl.UInt64) + 1
    row = lf.select(
        pl.len().alias("rows"), h.sum().alias("hash_sum"), (h * idx).sum().alias("ordered_hash")
    ).collect(engine="streaming")
    d = row.row(0, named=True)
    if "_source_row" in schema:
        mono = lf.select(pl.col("_source_row").diff().min()).collect(engine="streaming").item()
        d["source_row_increasing"] = mono is None or mono > 0
    return {"schema": schema, **{k: v if isinstance(v, bool) else int(v) for k, v in d.items()}}


def compare_quality(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    problems = []
    a, b = ref["counts"], other["counts"]
    for k in ("rows", "rows_failed"):
        if a[k] != b[k]:
            problems.append(f"{k} {b[k]} != {a[k]}")
    for name in RULE_NAMES:
        if a["failed"].get(name) != b["failed"].get(name):
            problems.append(f"failed[{name}] {b['failed'].get(name)} != {a['failed'].get(name)}")
    for which in ("clean", "quarantine"):
        x, y = ref["digests"][which], other["digests"][which]
        for k in ("rows", "schema", "hash_sum", "ordered_hash", "source_row_increasing"):
            if x.get(k) != y.get(k):
                problems.append(f"{which}.{k}: {y.get(k)!r} != {x.get(k)!r}")
    return {"agree": not problems, "problems": problems}


# --------------------------------------------------------------------------------------------------
# driver side: the measurement plan
# --------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir, self.jobs = args, workdir, 0
        self.ours_config = ours_config(args)
        # runs[size][comparison][tool] = [measurement, ...]
        self.runs: dict[int, dict[str, dict[str, list[dict[str, Any]]]]] = {}

    def measure(self, comparison: str, tool: str, variant: str, data: dict[str, Any]) -> dict[str, Any]:
        self.jobs += 1
        work = COMPARISONS[comparison]["work"]
        spec = {
            "tool": tool,
            "work": work,
            "variant": variant,
            "path": data["path"],
            "rows": data["rows"],
            "output_path": str(self.workdir / "jobs" / f"job{self.jobs:03d}"),
            "records_path": str(self.workdir / "records"),
            "ours_config": self.ours_config,
        }
        quiet = be.settle(self.args.settle)
        load = os.getloadavg()
        before = sources_digest()  # the package code this measurement imports (others edit it meanwhile)
        res = be.run_child(
            spec, interval=self.args.interval, pss=True, script=Path(__file__), mark=RESULT_MARK
        )
        after = sources_digest()
        res.update(
            settle=quiet,
            loadavg_before=load,
            pss_mb=res["monitor"]["peak_tree_pss_mb"],
            sources_sha256=before,
            sources_changed_during_run=before != after,
        )
        if res["rows"] != data["rows"]:
            raise RuntimeError(f"{comparison}/{tool} saw {res['rows']} rows, expected {data['rows']}")
        runs = self.runs.setdefault(data["rows"], {}).setdefault(comparison, {}).setdefault(tool, [])
        if "outputs" in res:
            outputs = res.pop("outputs")
            if not runs and work == "features":  # the first run of each tool: re-read the output
                res["features_read_back"] = features_read_back(outputs["features"], (data["rows"], tool))
            elif not runs:  # the first run of each tool: re-read its outputs for the agreement check
                res["digests"] = {k: output_digest(v) for k, v in outputs.items() if k != "cleanup"}
            if not self.args.keep:
                shutil.rmtree(outputs["cleanup"], ignore_errors=True)
        phases = res.get("job", {}).get("phases")
        extra = (
            f"  [stats pass {phases['stats_pass_s']:.1f} s, main {phases['main_pass_s']:.1f} s, "
            f"merge+commit {phases['final_merge_commit_s']:.1f} s; {res['job']['chunks']} chunks of "
            f"{res['job']['batch_size']:,} on {res['job']['main_pass']['workers']} worker(s)]"
            if phases
            else ""
        )
        out(
            f"  {comparison:<16} {tool + (':' + variant if variant else ''):<14} {data['rows']:>11,} rows "
            f"{res['seconds']:8.2f} s {res['rows_per_s'] / 1e6:6.2f} M rows/s  PSS {res['pss_mb']:7.0f} MB"
            f"  other load {res['foreign_cpu_share']:4.0%}{extra}"
        )
        runs.append(res)
        return res

    def size(self, data: dict[str, Any], comparisons: list[str]) -> None:
        with open(data["path"], "rb") as fh:  # warm the page cache: every tool reads from memory
            while fh.read(64 * MB):
                pass
        for i in range(self.args.repeats):
            for comparison in comparisons:
                tools = COMPARISONS[comparison]["tools"]
                k = i % len(tools)
                for tool, variant in tools[len(tools) - k :] + tools[: len(tools) - k]:  # ABC, CAB, BCA
                    self.measure(comparison, tool, variant, data)


def agreement(bench: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for rows, comps in bench.runs.items():
        by_size: dict[str, Any] = {}
        # the exact reference: polars exact, else duckdb exact
        exact = comps.get("profile_exact", {})
        ref_tool = next((t for t in ("polars", "duckdb") if exact.get(t)), None)
        if ref_tool:
            ref = exact[ref_tool][0]["stats"]
            checks = {"reference": f"profile_exact/{ref_tool}"}
            for comparison in ("profile_exact", "profile_default"):
                for tool, runs in comps.get(comparison, {}).items():
                    if comparison == "profile_exact" and tool == ref_tool:
                        continue
                    variant = dict(COMPARISONS[comparison]["tools"])[tool]
                    exact_distinct = variant != "approx"  # ours' distinct counts are always exact
                    exact_q = variant == "exact" or (tool == "polars")  # polars' quantiles are always exact
                    checks[f"{comparison}/{tool}"] = compare_profiles(
                        ref, runs[0]["stats"], exact_distinct, exact_q
                    )
                    if tool == "ours":
                        checks[f"{comparison}/{tool}"]["ours_quantiles_exact"] = {
                            c: runs[0]["stats"]["columns"][c]["quantiles_exact"] for c in NUMERIC
                        }
            by_size["profile"] = checks
        quality = comps.get("quality", {})
        if quality.get("ours"):
            ref = quality["ours"][0]
            checks = {"reference": "quality/ours"}
            for tool, runs in quality.items():
                if tool != "ours":
                    checks[f"quality/{tool}"] = compare_quality(ref, runs[0])
            checks["counts"] = ref["counts"]
            checks["digests_ours"] = ref["digests"]
            by_size["quality"] = checks
        anomaly = comps.get("anomaly", {})
        if anomaly.get("ours") and anomaly.get("sklearn"):
            a, b = anomaly["ours"][0], anomaly["sklearn"][0]
            problems = [
                f"{k} {b['counts'][k]!r} != {a['counts'][k]!r}"
                for k in a["counts"]
                if a["counts"][k] != b["counts"][k]
            ]
            x, y = a["digests"]["clean"], b["digests"]["clean"]
            problems += [
                f"output.{k}: {y.get(k)!r} != {x.get(k)!r}"
                for k in ("rows", "schema", "hash_sum", "ordered_hash")
                if x.get(k) != y.get(k)
            ]
            by_size["anomaly"] = {
                "reference": "anomaly/ours",
                "anomaly/sklearn": {"agree": not problems, "problems": problems},
                "counts": a["counts"],
            }
        noop = comps.get("noop", {})
        if noop.get("ours") and noop.get("scan"):
            c = noop["ours"][0]["counts"]
            problems = [] if c["rows_out"] == 0 and c["rows"] == rows else [f"ours counts {c}"]
            by_size["noop"] = {"noop/ours": {"agree": not problems, "problems": problems}}
        by_size.update(features_agreement(comps))
        result[str(rows)] = by_size
    return result


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(bench: Bench) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for rows, comps in bench.runs.items():
        for comparison, tools in comps.items():
            entry: dict[str, Any] = {"rows": rows, "comparison": comparison, "tools": {}}
            for tool, runs in tools.items():
                entry["tools"][tool] = {
                    "variant": dict(COMPARISONS[comparison]["tools"])[tool],
                    "seconds_median": _median([r["seconds"] for r in runs]),
                    "rows_per_s_median": _median([r["rows_per_s"] for r in runs]),
                    "pss_mb_median": _median([r["pss_mb"] for r in runs]),
                    "pss_mb_max": max(r["pss_mb"] for r in runs),
                    "seconds_all": [round(r["seconds"], 3) for r in runs],
                    "foreign_cpu_share_median": _median([r["foreign_cpu_share"] for r in runs]),
                }
                if tool == "ours":
                    entry["tools"][tool]["phases_median"] = {
                        k: _median([r["job"]["phases"][k] for r in runs]) for k in runs[0]["job"]["phases"]
                    }
                    entry["tools"][tool]["chunks"] = [r["job"]["chunks"] for r in runs]
                    entry["tools"][tool]["batch_size"] = [r["job"]["batch_size"] for r in runs]
                    entry["tools"][tool]["workers_used"] = [r["job"]["main_pass"]["workers"] for r in runs]
            peers = {t: v for t, v in entry["tools"].items() if t != "ours"}
            if "ours" in entry["tools"] and peers:
                fastest = max(peers, key=lambda t: peers[t]["rows_per_s_median"])
                entry["fastest_peer"] = fastest
                entry["ratio"] = (
                    entry["tools"]["ours"]["rows_per_s_median"] / peers[fastest]["rows_per_s_median"]
                )
                n = min(len(r) for r in tools.values())
                entry["ratio_per_repeat"] = [
                    tools["ours"][i]["rows_per_s"] / max(tools[t][i]["rows_per_s"] for t in peers)
                    for i in range(n)
                ]
                entry["pss_ratio_ours_vs_fastest_peer"] = (
                    entry["tools"]["ours"]["pss_mb_median"] / peers[fastest]["pss_mb_median"]
                )
            table[f"{comparison}@{rows}"] = entry
    sizes = sorted(bench.runs)
    memory = {}
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        for comparison in COMPARISONS:
            a, b = table.get(f"{comparison}@{small}"), table.get(f"{comparison}@{big}")
            if a and b and "ours" in a["tools"] and "ours" in b["tools"]:
                memory[comparison] = {
                    "rows_small": small,
                    "rows_big": big,
                    "ours_pss_mb_small": a["tools"]["ours"]["pss_mb_median"],
                    "ours_pss_mb_big": b["tools"]["ours"]["pss_mb_median"],
                    "ratio": b["tools"]["ours"]["pss_mb_median"] / a["tools"]["ours"]["pss_mb_median"],
                    **{
                        f"{t}_ratio": b["tools"][t]["pss_mb_median"] / a["tools"][t]["pss_mb_median"]
                        for t in ("polars", "duckdb")
                        if t in a["tools"] and t in b["tools"]
                    },
                }
    # the package versions our measurements imported ("*": the sources changed while that measurement ran)
    ours_sources = sorted(
        {
            r["sources_sha256"] + ("*" if r["sources_changed_during_run"] else "")
            for comps in bench.runs.values()
            for tools in comps.values()
            for r in tools.get("ours", [])
        }
    )
    return {
        "table": table,
        "memory_ratio": memory,
        "marginal": marginal_rates(bench),
        "ours_sources_sha256": ours_sources,
    }


def marginal_rates(bench: Bench) -> dict[str, Any]:
    """Per comparison with two sizes or more: each tool's marginal rate between the smallest and the largest
    size, (rows_big - rows_small) / (median s big - median s small), and its start-up, the time its linear fit
    gives 0 rows (what a job costs before its first row: imports excluded, planning, forking, the commit)."""
    sizes = sorted(bench.runs)
    if len(sizes) < 2:
        return {}
    small, big = sizes[0], sizes[-1]
    result: dict[str, Any] = {}
    for comparison in COMPARISONS:
        a, b = bench.runs[small].get(comparison, {}), bench.runs[big].get(comparison, {})
        tools = {}
        for tool in set(a) & set(b):
            ta, tb = _median([r["seconds"] for r in a[tool]]), _median([r["seconds"] for r in b[tool]])
            rate = (big - small) / (tb - ta) if tb > ta else float("inf")
            tools[tool] = {"marginal_rows_per_s": rate, "startup_s": ta - small / rate}
        peers = {t: v for t, v in tools.items() if t != "ours"}
        if "ours" in tools and peers:
            fastest = max(peers, key=lambda t: peers[t]["marginal_rows_per_s"])
            result[comparison] = {
                "rows_small": small,
                "rows_big": big,
                "tools": tools,
                "fastest_peer": fastest,
                "ratio": tools["ours"]["marginal_rows_per_s"] / peers[fastest]["marginal_rows_per_s"],
            }
    return result


def print_table(summary: dict[str, Any], agree: dict[str, Any]) -> None:
    out()
    out(
        "Peers (medians of interleaved repeats; ratio = ours rows/s / fastest peer rows/s; PSS = peak summed PSS)"
    )
    head = (
        f"{'work':<16} {'rows':>11} {'ours s':>8} {'polars s':>9} {'duckdb s':>9} {'ratio':>6} {'fastest':>7}  "
        f"{'PSS ours':>9} {'PSS polars':>10} {'PSS duckdb':>10}"
    )
    others = [e for e in summary["table"].values() if not set(e["tools"]) <= {"ours", "polars", "duckdb"}]
    if len(others) < len(summary["table"]):
        out(head)
        out(f"{'':<16} {'':>11} {'':>8} {'':>9} {'':>9} {'':>6} {'':>7}  {'MB':>9} {'MB':>10} {'MB':>10}")
        out("-" * len(head))
    for entry in summary["table"].values():
        if entry in others:
            continue
        t = entry["tools"]

        def cell(tool: str, key: str, fmt: str, width: int, t: dict[str, Any] = t) -> str:
            return format(t[tool][key], fmt).rjust(width) if tool in t else "-".rjust(width)

        out(
            f"{entry['comparison']:<16} {entry['rows']:>11,} {cell('ours', 'seconds_median', '.2f', 8)} "
            f"{cell('polars', 'seconds_median', '.2f', 9)} {cell('duckdb', 'seconds_median', '.2f', 9)} "
            f"{format(entry.get('ratio', float('nan')), '.2f'):>6} {entry.get('fastest_peer', '-'):>7}  "
            f"{cell('ours', 'pss_mb_median', '.0f', 9)} {cell('polars', 'pss_mb_median', '.0f', 10)} "
            f"{cell('duckdb', 'pss_mb_median', '.0f', 10)}"
        )
    if others:
        out()
        out(
            f"{'work':<16} {'rows':>11} {'ours s':>8} {'peer':>8} {'peer s':>8} {'ratio':>6}  {'PSS ours':>9} {'PSS peer':>9}"
        )
        for entry in others:
            peer = entry.get("fastest_peer", "-")
            t = entry["tools"]
            out(
                f"{entry['comparison']:<16} {entry['rows']:>11,} {t['ours']['seconds_median']:8.2f} {peer:>8} "
                f"{t[peer]['seconds_median'] if peer in t else float('nan'):8.2f} "
                f"{entry.get('ratio', float('nan')):6.2f}  {t['ours']['pss_mb_median']:9.0f} "
                f"{t[peer]['pss_mb_median'] if peer in t else float('nan'):9.0f}"
            )
    for comparison, m in summary.get("marginal", {}).items():
        tools = ", ".join(
            f"{t} {v['marginal_rows_per_s'] / 1e6:.2f} M rows/s (start-up {v['startup_s']:.2f} s)"
            for t, v in sorted(m["tools"].items())
        )
        out(
            f"marginal {comparison:<16} {m['rows_small']:,} -> {m['rows_big']:,} rows: {tools}; "
            f"ratio ours / {m['fastest_peer']} = {m['ratio']:.2f}"
        )
    out("profile_exact: ours exact_quantile_limit=rows vs polars/duckdb exact quantiles + exact distinct;")
    out(
        "profile_default: ours defaults vs duckdb approx_quantile/approx_count_distinct, polars approx_n_unique."
    )
    if summary["memory_ratio"]:
        out()
        for comparison, m in summary["memory_ratio"].items():
            peers = ", ".join(
                f"{k[:-6]} {v:.2f}" for k, v in m.items() if k.endswith("_ratio") and k != "ratio"
            )
            out(
                f"memory {comparison:<16} ours PSS({m['rows_big']:,}) / PSS({m['rows_small']:,}) = "
                f"{m['ours_pss_mb_big']:.0f} / {m['ours_pss_mb_small']:.0f} MB = {m['ratio']:.2f}  (peers: {peers})"
            )
    else:
        out("memory ratio ours PSS(largest) / PSS(smallest): needs two sizes in one run")
    out()
    out(
        "Where our time goes (medians, seconds): setup | stats pass (chunks, merge) | main pass | merge+commit"
    )
    for entry in summary["table"].values():
        ours = entry["tools"].get("ours")
        if not ours:
            continue
        ph = ours["phases_median"]
        out(
            f"  {entry['comparison']:<16} {entry['rows']:>11,}  {ph['setup_s']:.2f} | {ph['stats_pass_s']:.2f} "
            f"({ph['stats_pass_chunks_s']:.2f}, {ph['stats_pass_merge_s']:.2f}) | {ph['main_pass_s']:.2f} | "
            f"{ph['final_merge_commit_s']:.2f}   [per run: chunks {ours['chunks']}, batch size "
            f"{ours['batch_size']}, workers used {ours['workers_used']}]"
        )
    ours_sources = summary["ours_sources_sha256"]
    if len(ours_sources) > 1:
        out()
        out(
            f"WARNING: our measurements imported {len(ours_sources)} different versions of the package sources "
            f"({', '.join(ours_sources)}; * = changed while it ran): the package was edited during this run"
        )
    out()
    bad = [
        (size, key, c["problems"])
        for size, works in agree.items()
        for checks in works.values()
        for key, c in checks.items()
        if isinstance(c, dict) and "agree" in c and not c["agree"]
    ]
    if not bad:
        out("Agreement: every tool agrees with the reference (see 'agreement' in the JSON for the details)")
    for size, key, problems in bad:
        out(
            f"DISAGREEMENT at {int(size):,} rows, {key}: {len(problems)} problem(s): {'; '.join(problems[:6])}"
        )
    for size, works in agree.items():
        for key, c in works.get("profile", {}).items():
            if isinstance(c, dict) and "quantile_max_rel_diff" in c:
                out(
                    f"  {int(size):>11,} {key:<24} quantiles max rel diff {c['quantile_max_rel_diff']:.2e} "
                    f"= {c['quantile_max_diff_in_std']:.1e} std ({c['quantiles_not_bitwise_equal']} of "
                    f"{len(NUMERIC) * len(QUANTILES)} not bitwise equal), "
                    f"distinct max rel diff {c['distinct_max_rel_diff']:.2e}"
                )


# --------------------------------------------------------------------------------------------------
# driver side: environment and main
# --------------------------------------------------------------------------------------------------
def sources_digest() -> str:
    """A hash of every ``.py`` file of the package as it is on disk now (others may be editing it)."""
    digest = hashlib.sha256()
    pkg = ROOT / "airflow_batch_provider"
    for path in sorted(pkg.rglob("*.py")):
        try:
            digest.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes())
        except OSError:
            digest.update(str(path.relative_to(pkg)).encode() + b"\0<unreadable>")
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for dist in ("pyarrow", "polars", "duckdb", "pandas", "numpy", "psutil"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    import psutil

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "memory_total_mb": round(psutil.virtual_memory().total / MB),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
        "git_commit": be._git("rev-parse", "HEAD"),
        "git_changes_in_package": be._git(
            "status", "--porcelain", "--", "airflow_batch_provider"
        ).splitlines(),
        "package_sources_sha256_at_start": sources_digest(),
    }


def ours_config(args: argparse.Namespace) -> dict[str, Any]:
    """``BatchConfig`` fields for our jobs: none by default (the defaults a user gets)."""
    config: dict[str, Any] = {}
    if args.batch_size:
        config["batch_size"] = args.batch_size
    if args.workers:
        config["max_concurrent_batches"] = args.workers
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2000000,20000000", help="comma-separated row counts (default 2M,20M)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per size (default 3)")
    p.add_argument(
        "--only", default="profile,quality", help=f"works among {', '.join(WORKS)} (default profile,quality)"
    )
    p.add_argument(
        "--settle", type=float, default=3.0, help="max seconds to wait for a quiet machine per run"
    )
    p.add_argument("--interval", type=float, default=0.05, help="process-tree polling interval (s)")
    p.add_argument("--out", default=str(HERE / "results" / "peers.json"), help="JSON results file")
    p.add_argument("--workdir", default=None, help="folder in which the temp working folder is created")
    p.add_argument(
        "--batch-size", type=int, default=None, help="ours only, diagnostics: BatchConfig(batch_size=N)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="ours only, diagnostics: BatchConfig(max_concurrent_batches=N)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp working folder (data and outputs)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return 0
    works = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(works) - set(WORKS))
    if unknown:
        raise SystemExit(f"--only: unknown work(s) {unknown}; choose from {', '.join(WORKS)}")
    comparisons = [c for c, spec in COMPARISONS.items() if spec["work"] in works]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    env = environment()
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=args.workdir))
    out(
        f"bench_peers: {env['nproc']} CPU(s), load {env['loadavg_start']}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"; workdir {workdir}"
    )
    bench = Bench(args, workdir)
    datasets = {}
    try:
        for rows in sizes:
            path = workdir / f"data_{rows}.parquet"
            d = be.write_dataset(path, rows)
            datasets[rows] = d
            out(
                f"data: {d['rows']:,} rows, {d['row_groups']} row groups, {d['bytes'] / MB:.0f} MB "
                f"({d['seconds_to_generate']:.0f} s to generate)"
            )
            bench.size(d, comparisons)
            if not args.keep:
                path.unlink()
        agree = agreement(bench)
        summary = summarize(bench)
        print_table(summary, agree)
    finally:
        if args.keep:
            out(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    doc = {
        "benchmark": "peers (issues #15, #16): our standard processors and a no-op job vs polars, duckdb, "
        "scikit-learn and a plain Parquet scan",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "total_seconds": round(time.time() - started, 1),
        "environment": env,
        "parameters": {
            "sizes": sizes,
            "repeats": args.repeats,
            "comparisons": {c: COMPARISONS[c] for c in comparisons},
            "quantiles": QUANTILES,
            "numeric_columns": NUMERIC,
            "ranges": RANGES,
            "quality_rules": QUALITY_RULES,
            "interval_s": args.interval,
            "ours_batch_config_overrides": ours_config(args),
            "settle_s": args.settle,
            "mean_rtol": MEAN_RTOL,
            "quantile_rtol": QUANTILE_RTOL,
        },
        "datasets": {str(k): {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in datasets.items()},
        "summary": summary,
        "agreement": agree,
        "runs": {str(k): v for k, v in bench.runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    out(
        f"total {doc['total_seconds']:.0f} s; raw results: {args.out}; load average at end {env['loadavg_end']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
