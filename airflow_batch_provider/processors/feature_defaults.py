"""``feature_engineering`` with no settings: steps chosen per column from its type and the data.

When none of ``scale``, ``encode``, ``impute``, ``log``, ``bins``, ``date_parts`` and ``spec`` is given,
:class:`~airflow_batch_provider.processors.feature_engineering.FeatureEngineeringProcessor` plans every column
by its type (the same for every chunk: the source schema fixes it) and fits in its exact statistics pass:

==============================  ==============================================================================
column                          steps
==============================  ==============================================================================
integer / float                 impute the median (NaN and +/-inf are missing), then standard-scale
                                (``(x - mean) / std``, population std, over the imputed values)
text, categorical, boolean      impute the most frequent value, then one-hot encode when the column has at most
                                :data:`ONEHOT_MAX_DISTINCT` (50) distinct values, else ordinal codes (count
                                descending, then value text); a column with more than ``vocabulary_limit``
                                distinct values, or none, passes through unchanged (listed under ``skipped``)
timestamp                       date parts :data:`DATE_PARTS` (Int64; missing stays missing)
anything else                   passes through unchanged (listed under ``skipped``)
==============================  ==============================================================================

The fitted spec lists each choice under ``spec["defaults"]``: ``choices`` (column -> what was done and why),
``skipped`` (column -> why not), ``onehot_max_distinct`` and ``date_parts``. Medians, moments and vocabularies
are the processor's exact, chunking-independent statistics, so the spec and every output row are identical for
any chunking. No Airflow imports.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.column_stats import TopValues

#: most distinct values a categorical column may have to be one-hot encoded (ordinal codes above)
ONEHOT_MAX_DISTINCT = 50
DATE_PARTS = ("year", "month", "day", "dayofweek", "hour")
NUMERIC_STEPS = {"impute": {"strategy": "median", "value": None}, "scale": "standard"}
CATEGORICAL_STEPS = {
    "impute": {"strategy": "most_frequent", "value": None},
    "encode": {"method": "onehot", "top_k": None},
}
_SETTINGS = ("scale", "encode", "impute", "log", "bins", "date_parts", "spec")


def active(processor: Any) -> bool:
    """True when the processor was given no settings: the defaults plan its columns."""
    return all(getattr(processor, name, None) is None for name in _SETTINGS)


def kind_of(dtype: Any) -> str | None:
    """``numeric``, ``categorical``, ``datetime`` or None (no default step) for a pandas dtype."""
    types = pd.api.types
    if types.is_bool_dtype(dtype):
        return "categorical"
    if types.is_numeric_dtype(dtype):
        return "numeric"
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype) or types.is_string_dtype(dtype) or types.is_object_dtype(dtype):
        return "categorical"
    return None


def steps_for(kind: str) -> dict[str, Any]:
    if kind == "numeric":
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in NUMERIC_STEPS.items()}
    if kind == "categorical":
        return {k: dict(v) for k, v in CATEGORICAL_STEPS.items()}
    return {"date_parts": list(DATE_PARTS)}


def plan_for(chunk: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The default steps of each column of ``chunk`` with a default (by dtype: the same in every chunk)."""
    plan = {}
    for name, dtype in chunk.dtypes.items():
        kind = kind_of(dtype)
        if kind is not None:
            plan[str(name)] = steps_for(kind)
    return plan


def check_hashable(chunk: pd.DataFrame, plan: dict[str, dict[str, Any]]) -> None:
    """A ``ConfigError`` naming an object column whose values cannot be counted (lists, dicts)."""
    for col, steps in plan.items():
        if "encode" not in steps or not pd.api.types.is_object_dtype(chunk[col].dtype):
            continue
        try:
            set(chunk[col].dropna().tolist())  # what the vocabulary keys on
        except TypeError as err:
            raise ConfigError(
                f"feature_engineering: column {col!r} holds values that cannot be counted ({err}); the defaults "
                "encode text columns: give settings (scale=/encode=/impute=/...) that leave it out"
            ) from None


def passthrough_kinds(chunk: pd.DataFrame) -> dict[str, str]:
    """The columns without a default step, as ``{column: "passthrough <dtype>"}`` kinds of the statistics."""
    return {
        str(name): f"passthrough {dtype}" for name, dtype in chunk.dtypes.items() if kind_of(dtype) is None
    }


def fit_stats(processor: Any, state: Any) -> None:
    """The fitted spec of the defaults from the merged statistics (``processor.spec_``)."""
    state = state or {"rows": 0, "kinds": {}, "cols": {}}
    columns: dict[str, Any] = {}
    choices: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for col in sorted(state["kinds"]):
        kind = state["kinds"][col]
        stats = state["cols"].get(col, {})
        if kind.startswith("passthrough"):
            skipped[col] = f"dtype {kind.split(' ', 1)[-1]} has no default step: passed through"
        elif kind == "numeric":
            columns[col] = processor._fit_numeric(col, steps_for("numeric"), stats)
            choices[col] = "numeric: median imputation, then standard scaling"
        elif kind == "categorical":
            tv = (
                TopValues.from_state(stats["tv"])
                if stats.get("tv")
                else TopValues(processor.vocabulary_limit)
            )
            if not tv.exact:
                skipped[col] = (
                    f"more than vocabulary_limit={processor.vocabulary_limit} distinct values: passed through"
                )
                continue
            distinct = len(tv.counts)
            if not distinct:
                skipped[col] = "no non-null value: passed through"
                continue
            steps = steps_for("categorical")
            if distinct > ONEHOT_MAX_DISTINCT:
                steps["encode"]["method"] = "ordinal"
            columns[col] = processor._fit_categorical(col, steps, stats)
            how = "one-hot" if distinct <= ONEHOT_MAX_DISTINCT else "ordinal codes"
            sign = "<=" if distinct <= ONEHOT_MAX_DISTINCT else ">"
            choices[col] = (
                f"categorical ({distinct} distinct values {sign} {ONEHOT_MAX_DISTINCT}): most-frequent "
                f"imputation, then {how}"
            )
        else:
            columns[col] = {"kind": "datetime", "date_parts": list(DATE_PARTS)}
            choices[col] = f"timestamp: date parts {', '.join(DATE_PARTS)}"
    processor.spec_ = {
        "format_version": 1,
        "processor": processor.name,
        "keep_original": bool(processor.keep_original),
        "fitted_rows": int(state["rows"]),
        "columns": columns,
        "defaults": {
            "choices": choices,
            "skipped": dict(sorted(skipped.items())),
            "onehot_max_distinct": ONEHOT_MAX_DISTINCT,
            "date_parts": list(DATE_PARTS),
        },
    }
