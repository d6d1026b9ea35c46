"""Turn numpy/pandas scalars and containers into plain JSON values (NaN and infinities become None)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any


def to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return to_jsonable(item())
    tolist = getattr(value, "tolist", None)  # numpy array, pandas Series
    if callable(tolist):
        return to_jsonable(tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
