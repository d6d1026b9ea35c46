"""Test session set-up. Airflow reads its environment at import time, so this runs before any test module
imports Airflow: a private AIRFLOW_HOME (SQLite), the example DAGs folder, and a private base path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="abp-airflow-home-"))

os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-" + "x" * 64)
os.environ.setdefault("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(_HOME / "batch"))


@pytest.fixture
def make_parquet(tmp_path):
    """Write a DataFrame as Parquet with small row groups; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def _make(df, name="data.parquet", row_group_size=300, folder=None):
        folder = Path(folder or tmp_path / "src")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
        return path

    return _make


def sample_frame(n: int, seed: int = 0, offset: int = 0):
    """Ints, floats with NaN, a categorical string, a timestamp; duplicates on purpose."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(offset, offset + n, dtype="int64"),
            "x": x,
            "cat": rng.choice(["a", "b", "c", "d e"], size=n),
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "dup": rng.integers(0, n // 3 + 1, n),
        }
    )


@pytest.fixture
def two_files(make_parquet, tmp_path):
    """A source folder of two Parquet files (1000 and 777 rows, row groups of 300)."""
    make_parquet(sample_frame(1000, seed=1), "part-a.parquet")
    make_parquet(sample_frame(777, seed=2, offset=1000), "part-b.parquet")
    return tmp_path / "src"
