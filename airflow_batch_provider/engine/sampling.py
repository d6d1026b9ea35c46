"""A deterministic, chunking-independent sample of a planned source (for processors' ``fit``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_batch_provider.engine import sources
from airflow_batch_provider.processors.frames import arrow_to_pandas

WINDOW = 1_000_000


def deterministic_sample(
    fs: Any,
    files: list[sources.SourceFile],
    schema: pa.Schema,
    options: Any,
    size: int,
    seed: int = 0,
    columns: list[str] | None = None,
    max_bad_rows: int | None = None,
) -> pd.DataFrame:
    """``size`` rows chosen by position with a fixed seed, in source order (only ``columns``, if given).

    With ``size`` at least the row count, the sample is the whole dataset in source order. The choice
    depends only on the row count and the seed, never on batch size or concurrency.

    ``max_bad_rows``: chosen rows of a text file that cannot be read are left out of the sample (the job's
    chunks quarantine them, once), up to this many per read window; None: the first one fails.
    """
    total = sum(f.rows for f in files)
    if size >= total:
        positions = np.arange(total)
    else:
        positions = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    tables, offset = [], 0
    for f in files:
        lo, hi = np.searchsorted(positions, [offset, offset + f.rows])
        local = positions[lo:hi] - offset
        for w in range(0, f.rows, WINDOW):
            pick = local[(local >= w) & (local < w + WINDOW)]
            if len(pick):
                stop = min(f.rows, w + WINDOW)
                table, bad = sources.read_good_rows(
                    fs, f, w, stop, schema, options, columns, limit=max_bad_rows
                )
                keep = pick - w
                if bad:  # positions in the table once the bad rows are left out
                    keep = keep[~np.isin(keep, bad)]
                    keep = keep - np.searchsorted(np.asarray(bad), keep)
                tables.append(table.take(pa.array(keep)))
        offset += f.rows
    if not tables:
        if columns is not None and len(schema):
            schema = pa.schema([schema.field(c) for c in columns])
        return arrow_to_pandas(schema.empty_table())
    return arrow_to_pandas(pa.concat_tables(tables))
