"""Issue #15's engine side: the frame a processor asks for (input_format), polars in forked workers, and
planning (at least 4 chunks per worker; the load average never reduces concurrency below the usable CPUs)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job, sizing
from airflow_batch_provider.processors.base import ProcessingProfile
from airflow_batch_provider.processors.registry import register_processor, unregister_processor

GB = 2**30


def _machine(load: float) -> sizing.MachineInfo:
    return sizing.MachineInfo(
        cpus=2, load_1min=load, available_bytes=8 * GB, total_bytes=16 * GB, memory_percent=50.0
    )


def test_the_load_average_alone_never_reduces_concurrency():
    reasons: list[str] = []
    assert sizing._base_concurrency(ProcessingProfile("p"), _machine(7.5), reasons) == 2
    assert "not reduced" in reasons[-1]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_at_least_four_chunks_per_worker_when_the_source_is_large_enough(workers):
    total = 2_000_000
    size = sizing._balance(930_000, total, workers, [], sizing.CHUNKS_PER_WORKER)
    chunks = -(-total // size)
    assert chunks >= 4 * workers and chunks % workers == 0
    small = 4 * workers * sizing.MIN_BATCH_SIZE - 1  # below the threshold: no forced split
    assert -(-small // sizing._balance(small, small, workers, [], 4)) < 4 * workers or workers == 1


@pytest.fixture
def src(make_parquet, tmp_path):
    df = pd.DataFrame({"a": range(1000), "b": [f"t{i % 7}" for i in range(1000)]})
    make_parquet(df, "a.parquet", row_group_size=250)
    return tmp_path / "src"


@pytest.mark.parametrize("fmt,kind", [("pandas", pd.DataFrame), ("arrow", pa.Table), ("polars", None)])
def test_callables_get_the_frame_they_ask_for_and_may_return_any(fmt, kind, src, tmp_path):
    import polars as pl

    def fn(batch, ctx):
        # pl.DataFrame looked up here: in a worker polars is a fresh runtime (see engine/polars_fork.py)
        assert isinstance(batch, kind or pl.DataFrame), type(batch)
        if fmt == "polars":
            return batch.filter(pl.col("a") % 2 == 0)
        if fmt == "arrow":
            return batch.filter(pa.compute.equal(pa.compute.bit_wise_and(batch["a"], 1), 0))
        return batch[batch["a"] % 2 == 0]

    result = run_batch_job(
        src,
        fn,
        config={"batch_size": 300, "max_concurrent_batches": 2},
        output_path=tmp_path / "o",
        input_format=fmt,
    )
    assert read_output(result.output_uri)["a"].tolist() == list(range(0, 1000, 2))


def test_register_processor_sets_the_input_format(src, tmp_path):
    def count(batch, ctx):
        return {"rows": batch.num_rows}

    register_processor("count_arrow_rows", count, input_format="arrow", replace=True)
    try:
        result = run_batch_job(
            src, "count_arrow_rows", config={"batch_size": 300}, output_path=tmp_path / "o"
        )
    finally:
        unregister_processor("count_arrow_rows")
    assert result.report == {"rows": 1000}
    with pytest.raises(ValueError, match="input_format"):
        register_processor("bad", count, input_format="numpy")


def test_polars_works_in_workers_forked_after_the_parent_used_polars(src, tmp_path):
    """The parent runs polars' thread pool first (as a DAG file or a merge may); forked workers still run polars
    (without the fresh runtime they wait forever on the parent's pool threads, which do not exist in them)."""
    import polars as pl

    parent = pl.DataFrame({"k": list(range(100_000))}).group_by(pl.col("k") % 10).len()
    assert parent.height == 10

    def fn(batch, ctx):
        return {"groups": batch.group_by("b").len().height, "rows": batch.height}

    result = run_batch_job(
        src,
        fn,
        config={"batch_size": 300, "max_concurrent_batches": 2, "batch_timeout_seconds": 60},
        output_path=tmp_path / "o",
        input_format="polars",
    )
    assert result.report["rows"] == 1000 and result.report["groups"] == 7 * 4
