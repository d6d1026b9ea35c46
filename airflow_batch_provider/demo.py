"""The demo dataset: synthetic card transactions as Parquet, and a DAG task that generates it once."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
READY = "_READY"


def transactions(rows: int, seed: int = 0, offset: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.5, 1.2, rows), 2)
    amount[rng.random(rows) < 0.01] = np.nan
    return pd.DataFrame(
        {
            "transaction_id": np.arange(offset, offset + rows, dtype="int64"),
            "customer_id": rng.integers(0, max(1, rows // 20), rows),
            "amount": amount,
            "currency": rng.choice(["EUR", "USD", "GBP", "CHF"], rows, p=[0.5, 0.3, 0.15, 0.05]),
            "merchant_category": rng.choice(
                ["grocery", "travel", "fuel", "online", "restaurants", "other"], rows
            ),
            "channel": rng.choice(["card_present", "online", "atm"], rows, p=[0.6, 0.35, 0.05]),
            "risk_score": rng.beta(2, 8, rows),
            "created_at": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 300 * 86400, rows), unit="s"),
        }
    )


def ensure_demo_dataset(
    folder: Any, rows: int = 1_000_000, files: int = 4, row_group_size: int = 100_000
) -> str:
    """Write ``rows`` rows as ``files`` Parquet files under ``folder`` unless already there; return its URI."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_batch_provider.storage import Location

    loc = Location.of(folder)
    if loc.child(READY).exists():
        log.info("demo dataset already at %s", loc.uri)
        return loc.uri
    per_file = -(-rows // files)
    for i in range(files):
        n = min(per_file, rows - i * per_file)
        if n <= 0:
            break
        table = pa.Table.from_pandas(transactions(n, seed=i, offset=i * per_file), preserve_index=False)
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, compression="snappy")
        loc.child(f"transactions-{i:03d}.parquet").write_bytes(buf.getvalue())
    loc.child(READY).write_bytes(str(rows).encode())
    log.info("wrote %d demo rows in %d files to %s", rows, files, loc.uri)
    return loc.uri


def demo_data_task(task_id: str = "demo_data") -> Any:
    """In a DAG with a ``rows`` param: a task that generates that many demo rows (once) under the provider's
    base path and returns the folder's URI, for ``source=demo_data_task()``."""
    from airflow.sdk import task

    @task(task_id=task_id)
    def demo_data(params: Any = None) -> str:
        from airflow_batch_provider.operators.batch import base_path

        rows = int(params["rows"])
        return ensure_demo_dataset(f"{base_path().rstrip('/')}/demo-data/transactions-{rows}", rows=rows)

    return demo_data()
