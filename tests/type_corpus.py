"""A corpus of Parquet files, one per Arrow type family, written with pyarrow (the public corpus of files from
other engines is not available offline): every family with nulls, in data page v1 and v2, plus the legacy
layouts pyarrow can still write (2-level lists through ``use_compliant_nested_type=False``, INT96
timestamps). ``write_corpus(folder)`` returns ``{name: path}``.

Each table has an ``id`` int64 column (0..n-1, never null) and ``x`` float64 (with nulls), so processors that
need one scalar numeric column have one, and ``payload`` columns of the family under test.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

ROWS = 23  # not a multiple of the batch sizes the tests use: list columns split across chunks


def fixed_size_list_nulls() -> bool:
    """pyarrow < 17's Parquet writer refuses a null fixed-size list ("Lists with non-zero length null components
    are not supported"): on the declared floor (pyarrow 16) the corpus's fixed-size lists have no null entry."""
    import pyarrow as pa

    return int(pa.__version__.split(".")[0]) >= 17


def float16_kernels() -> bool:
    """pyarrow < 17 has no compute kernels for float16 (``is_nan``, ``if_else`` ...): on the declared floor
    (pyarrow 16) the corpus has no float16 column (the processors' float16 support needs pyarrow 17)."""
    return fixed_size_list_nulls()


def _with_nulls(values: list[Any], every: int = 5) -> list[Any]:
    return [None if i % every == 3 else v for i, v in enumerate(values)]


def tables() -> dict[str, Any]:  # noqa: PLR0915 - one entry per family reads best as one list
    import numpy as np
    import pyarrow as pa

    n = ROWS
    base = {
        "id": pa.array(range(n), pa.int64()),
        "x": pa.array(_with_nulls([float(i) * 0.5 - 3 for i in range(n)], 7), pa.float64()),
    }

    def table(**cols: Any) -> Any:
        return pa.table({**base, **cols})

    ints = [(i * 37) % 11 - 5 for i in range(n)]
    out: dict[str, Any] = {}
    out["ints"] = table(
        **{
            f"{t}": pa.array(
                _with_nulls([abs(v) if t.startswith("u") else v for v in ints]), getattr(pa, t)()
            )
            for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
        },
        big=pa.array(_with_nulls([2**62 + i for i in range(n)]), pa.int64()),
        ubig=pa.array(_with_nulls([2**64 - 1 - i for i in range(n)]), pa.uint64()),
    )
    half = {"f16": pa.array(_with_nulls([np.float16(i / 4) for i in range(n)]), pa.float16())}
    out["floats"] = table(
        **(half if float16_kernels() else {}),
        f32=pa.array(_with_nulls([i / 3 for i in range(n)]), pa.float32()),
        f64=pa.array(_with_nulls([float("nan") if i == 5 else i / 7 for i in range(n)]), pa.float64()),
    )
    out["bool_text_binary"] = table(
        flag=pa.array(_with_nulls([i % 2 == 0 for i in range(n)]), pa.bool_()),
        s=pa.array(_with_nulls([f"s{i % 4}" for i in range(n)]), pa.string()),
        ls=pa.array(_with_nulls([f"large {i % 3}" for i in range(n)]), pa.large_string()),
        b=pa.array(_with_nulls([bytes([i % 5]) * 3 for i in range(n)]), pa.binary()),
        lb=pa.array(_with_nulls([bytes([i % 6]) * 2 for i in range(n)]), pa.large_binary()),
        fsb=pa.array(_with_nulls([bytes([i % 7]) * 4 for i in range(n)]), pa.binary(4)),
    )
    out["decimals"] = table(
        d128=pa.array(
            _with_nulls([decimal.Decimal(f"{i}.{i % 10}5") for i in range(n)]), pa.decimal128(12, 2)
        ),
        d256=pa.array(_with_nulls([decimal.Decimal(10**45 + i) for i in range(n)]), pa.decimal256(50, 0)),
    )
    out["dictionary"] = table(
        dict_s=pa.array(_with_nulls([f"c{i % 3}" for i in range(n)])).dictionary_encode(),
        dict_i=pa.array(_with_nulls([i % 4 for i in range(n)]), pa.int32()).dictionary_encode(),
    )
    lists = [[j for j in range(i % 4)] for i in range(n)]  # empty lists included
    out["lists"] = table(
        li=pa.array(_with_nulls(lists), pa.list_(pa.int64())),
        lli=pa.array(_with_nulls([[f"t{j}" for j in v] for v in lists]), pa.large_list(pa.string())),
        fsl=pa.array(
            (_with_nulls if fixed_size_list_nulls() else list)([[i, i + 1.5] for i in range(n)]),
            pa.list_(pa.float64(), 2),
        ),
        lol=pa.array(
            _with_nulls([[[i, None], []] if i % 2 else [[i]] for i in range(n)]),
            pa.list_(pa.list_(pa.int32())),
        ),
        lnull=pa.array(_with_nulls([[None, i] for i in range(n)]), pa.list_(pa.int16())),
    )
    struct_t = pa.struct(
        [("city", pa.string()), ("zip", pa.int32()), ("geo", pa.struct([("lat", pa.float64())]))]
    )
    far = dt.datetime(9000, 1, 1)  # past 2262 (datetime itself stops at 9999; the year 52951 file is below)
    out["structs"] = table(
        address=pa.array(
            [
                None
                if i % 5 == 3
                else {"city": None if i % 4 == 1 else f"city{i % 3}", "zip": i * 10, "geo": {"lat": i / 2}}
                for i in range(n)
            ],
            struct_t,
        ),
        when=pa.array(
            [None if i % 6 == 2 else {"at": far + dt.timedelta(days=i), "tag": f"w{i}"} for i in range(n)],
            pa.struct([("at", pa.timestamp("us")), ("tag", pa.string())]),
        ),
    )
    out["maps"] = table(
        m=pa.array(
            _with_nulls([[(f"k{j}", j * i) for j in range(i % 3)] for i in range(n)]),
            pa.map_(pa.string(), pa.int64()),
        ),
        mnested=pa.array(
            _with_nulls([[(i, [i, i + 1])] for i in range(n)]), pa.map_(pa.int32(), pa.list_(pa.int64()))
        ),
    )
    units = {}
    for unit in ("s", "ms", "us", "ns"):
        for tz in (None, "UTC", "America/New_York"):
            name = f"ts_{unit}_{(tz or 'naive').replace('/', '_')}"
            step = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[unit]
            units[name] = pa.array(
                _with_nulls([(1_700_000_000 + i * 3600) * step for i in range(n)]), pa.timestamp(unit, tz=tz)
            )
    out["timestamps"] = table(**units)
    # year 52951 and before 1677: only units coarser than ns hold them
    far_s = int((dt.datetime(9999, 1, 1) - dt.datetime(1970, 1, 1)).total_seconds()) * 5 + 12345
    early_s = -int(300 * 365.25 * 86400)  # about 1670
    out["far_dates"] = table(
        far_s=pa.array(_with_nulls([far_s + i for i in range(n)]), pa.timestamp("s")),
        far_ms=pa.array(_with_nulls([far_s * 1000 + i for i in range(n)]), pa.timestamp("ms", tz="UTC")),
        early_us=pa.array(_with_nulls([early_s * 10**6 + i for i in range(n)]), pa.timestamp("us")),
        d32=pa.array(_with_nulls([2_932_896 + i for i in range(n)]), pa.date32()),  # after 9999-12-31
        d32_early=pa.array(_with_nulls([-200_000 - i for i in range(n)]), pa.date32()),
        d64=pa.array(_with_nulls([(18_000 + i) * 86_400_000 for i in range(n)]), pa.date64()),
        t32=pa.array(_with_nulls([i * 1000 for i in range(n)]), pa.time32("ms")),
        t64=pa.array(_with_nulls([i * 10**9 + 7 for i in range(n)]), pa.time64("ns")),
        dur=pa.array(_with_nulls([i * 10**6 for i in range(n)]), pa.duration("us")),
        dur_s=pa.array(_with_nulls([i * 86400 * 365 * 1000 for i in range(n)]), pa.duration("s")),
        year52951=pa.array(
            [None if i % 5 == 3 else {"at": 1_608_731_000_000_000 + i} for i in range(n)],  # us: year 52951
            pa.struct([("at", pa.timestamp("us"))]),
        ),
    )
    out["int96"] = table(
        ts96=pa.array(
            _with_nulls([(1_600_000_000 + i * 61) * 10**9 + i for i in range(n)]), pa.timestamp("ns")
        ),
    )
    # Spark writes microseconds as INT96: values past 2262 wrap around in pyarrow's default nanoseconds
    out["int96_far"] = table(
        ts96=pa.array(
            _with_nulls(
                [dt.datetime(2500 + 1000 * (i % 3), 1, 1) + dt.timedelta(microseconds=i) for i in range(n)]
            ),
            pa.timestamp("us"),
        ),
        nested96=pa.array(
            [None if i % 5 == 3 else {"at": dt.datetime(1000 + 100 * i, 6, 1)} for i in range(n)],
            pa.struct([("at", pa.timestamp("us"))]),
        ),
    )
    out["empty_and_null"] = table(
        all_null=pa.array([None] * n, pa.int64()),
        null_type=pa.nulls(n),
        empty_lists=pa.array([[] for _ in range(n)], pa.list_(pa.string())),
    )
    return out


#: INT96 files: ``pq.read_table`` wraps their values past 2262 around; this reads them as they are
INT96_FAR = ("int96_far-v1", "int96_far-v2")


def read_exact(path: Path) -> Any:
    """``pq.read_table(path)``, INT96 timestamps past 2262 in microseconds (pyarrow's nanoseconds wrap)."""
    import pyarrow.parquet as pq

    if path.stem in INT96_FAR:
        return pq.read_table(path, coerce_int96_timestamp_unit="us")
    return pq.read_table(path)


#: files written with a legacy layout, and the writer options that make it
LEGACY = {
    "lists_2level": ("lists", {"use_compliant_nested_type": False}),
    "maps_2level": ("maps", {"use_compliant_nested_type": False}),
    "int96": ("int96", {"use_deprecated_int96_timestamps": True}),
}


def write_corpus(folder: Path, row_group_size: int = 10) -> dict[str, Path]:
    """Every table in data page v1 and v2 (``<name>-v1.parquet`` ...), and the legacy layouts."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    built = tables()
    for name, table in built.items():
        for page in ("1.0", "2.0"):
            path = folder / f"{name}-v{page[0]}.parquet"
            extra = {"use_deprecated_int96_timestamps": True} if name.startswith("int96") else {}
            pq.write_table(table, path, data_page_version=page, row_group_size=row_group_size, **extra)
            made[path.stem] = path
    for name, (table_name, options) in LEGACY.items():
        if name == "int96":
            continue
        path = folder / f"{name}.parquet"
        pq.write_table(built[table_name], path, row_group_size=row_group_size, **options)
        made[path.stem] = path
    return made
