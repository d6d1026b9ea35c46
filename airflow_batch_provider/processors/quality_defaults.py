"""The default data-quality assessment: rules derived from the data itself (``data_quality`` with no rules).

With ``rules=None`` (the default), :class:`~airflow_batch_provider.processors.data_quality.DataQualityProcessor`
profiles every column in its statistics pass (:func:`partial_profile`, merged exactly in source order by
:func:`merge_profiles`), derives rules from that profile (:func:`derive_rules`) and checks them in the main
pass like rules given in ``rules=``. The checks, all with severity ``"warning"`` and threshold 0:

==========================  ===============================================================================
rule (name)                 what it checks
==========================  ===============================================================================
``completeness(<col>)``     ``not_null`` on every column: completeness = 1 - failure ratio
``duplicate_rows``          ``unique`` over all columns: rows equal to an earlier row
``type_consistency(<col>)`` a text column whose non-null values read as numbers (or ISO 8601 dates) for at
                            least 95% of them (:data:`PARSE_RATIO`): a ``type`` rule with ``dtype``
                            ``integer`` (every number is integral), ``float``, ``date`` or ``datetime``
                            (some value has a time of day); the values that do not read fail
``outliers(<col>)``         an integer/float column: a ``between`` rule with Tukey's far-out fences,
                            ``min = Q1 - 3 x IQR`` and ``max = Q3 + 3 x IQR`` (IQR = Q3 - Q1, quartiles with
                            pandas' linear interpolation over the finite values); integer columns round the
                            fences outward to integers. Not generated when IQR is 0 (more than half of the
                            values are equal: every other value would be an outlier)
==========================  ===============================================================================

IQR fences are used rather than median +- 5 x MAD because the quartiles come out of one pass (the MAD needs
the median first, a second pass); they are the quartiles ``data_profiling`` reports, so
:func:`suggest_rules` of a ``data_profiling`` report (default ``quantile_bits`` and ``exact_quantile_limit``)
gives the same fences. Quartiles are exact up to :data:`QUANTILE_LIMIT` distinct values per column, else
within a relative error of ``2**-QUANTILE_BITS`` (``column_stats.Distribution``); either way they, and so
the generated rules, are identical for any chunking, concurrency or resume.

:func:`suggest_rules` turns a profile (this module's, or a ``data_profiling`` report) into the rule list, ready
to paste into ``rules=`` and edit; ``airflow-batch suggest-rules SOURCE`` prints it. No Airflow imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult
from airflow_batch_provider.processors.column_stats import Distribution

FORMAT_VERSION = 1
#: the share of a text column's non-null values that must read as numbers/dates for a type rule
PARSE_RATIO = 0.95
#: the fences' IQR multiple (Tukey's "far out")
IQR_FACTOR = 3.0
#: quartiles as ``data_profiling`` computes them by default (same fences from its report)
QUANTILE_BITS = 10
QUANTILE_LIMIT = 10_000
SEVERITY = "warning"
DUPLICATES = "duplicate_rows"
#: the key of the assessment's statistics in the data_quality statistics-pass state
STATS_KEY = "_assessment"
NUMERIC = ("integer", "float")
_QUARTILES = ("0.25", "0.5", "0.75")
METHOD = {
    "completeness": "not_null on every column",
    "duplicates": "unique over all columns (rows equal to an earlier row, nulls equal)",
    "type_consistency": (
        f"text columns where >= {PARSE_RATIO:.0%} of the non-null values read as integer/float "
        "(else ISO 8601 date/datetime): a type rule; the values that do not read fail"
    ),
    "outliers": (
        f"IQR fences on integer/float columns: below Q1 - {IQR_FACTOR:g} x IQR or above Q3 + {IQR_FACTOR:g} x IQR"
    ),
}


# -- the statistics ---------------------------------------------------------------------------------------
def _kinds(schema: Any) -> list[str]:
    """The ``data_profiling`` type of each field of an Arrow schema (``integer``, ``float``, ``text`` ...)."""
    from airflow_batch_provider.processors.data_profiling import column_type

    frame = schema.empty_table().to_pandas()
    return [column_type(frame.dtypes.iloc[i]) for i in range(len(schema))]


def _floats(col: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        # integers past 2**53 round to the nearest float (the fences are floats anyway; a safe cast refuses them)
        values = pc.cast(col, pa.float64(), safe=False)
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    return col.to_pandas().to_numpy(dtype="float64", na_value=np.nan)


def text_parses(values: pd.Series, counts: np.ndarray) -> dict[str, int]:
    """How many of the (distinct, non-null) ``values`` - each occurring ``counts`` times - read as an integer,
    as a number, and (among those that are not numbers) as an ISO 8601 date; ``datetime``: those dates with a
    time of day. The same reading as the ``type`` rule (``data_quality._readable``), value by value."""
    from airflow_batch_provider.processors.data_quality import _readable

    if not len(values):
        return {"integer": 0, "float": 0, "date": 0, "datetime": 0}
    values = values.reset_index(drop=True)
    number = _readable(values, "float", "ISO8601")
    integer = _readable(values, "integer", "ISO8601")
    rest = values[~number]
    dates = _dates(rest.astype("string"))
    timed = dates.notna() & (dates != dates.dt.normalize())
    rest_counts = counts[~number]
    return {
        "integer": int(counts[integer].sum()),
        "float": int(counts[number].sum()),
        "date": int(rest_counts[dates.notna().to_numpy(dtype=bool)].sum()),
        "datetime": int(rest_counts[timed.to_numpy(dtype=bool, na_value=False)].sum()),
    }


def _dates(text: pd.Series) -> pd.Series:
    """ISO 8601 parse of each value (NaT where it does not read); value by value when the values mix time
    zones (the vectorised parse refuses), so the result never depends on which values share a chunk."""
    try:
        return pd.Series(pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True), index=text.index)
    except (ValueError, TypeError, OverflowError):
        out = []
        for value in text:
            try:
                out.append(pd.to_datetime(value, errors="coerce", format="ISO8601", utc=True))
            except (ValueError, TypeError, OverflowError):
                out.append(pd.NaT)
        return pd.Series(pd.to_datetime(pd.Series(out, dtype=object), utc=True), index=text.index)


def partial_profile(table: Any) -> dict[str, Any]:
    """One chunk's statistics (an Arrow table): rows; per column its type, nulls (NaN counts as null, as in
    ``not_null``), the finite values' distribution (integer/float) or how many values read as numbers/dates
    (text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols: dict[str, Any] = {}
    for name, col, kind in zip(table.column_names, table.columns, _kinds(table.schema), strict=True):
        nulls = int(pc.sum(pc.is_null(col, nan_is_null=True).cast(pa.int64())).as_py() or 0)
        if kind == "text" and not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            kind = "other"  # e.g. decimals, which pandas holds as objects: not text stored by the user
        state: dict[str, Any] = {"t": kind, "nulls": nulls}
        if kind in NUMERIC:
            state["d"] = Distribution.of(_floats(col), QUANTILE_BITS, QUANTILE_LIMIT).to_state()
        elif kind == "text":
            counted = pc.value_counts(pc.drop_null(col))
            values = counted.field("values").to_pandas()
            counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
            state["p"] = text_parses(values.astype(object), counts)
        cols[str(name)] = state
    return {"rows": int(table.num_rows), "cols": cols}


def merge_profiles(states: list[Any]) -> Any:
    """The chunks' statistics merged (in source order): counts summed, distributions merged exactly."""
    states = [s for s in states if s]
    if not states:
        return None
    cols: dict[str, Any] = {}
    for name, first in states[0]["cols"].items():
        parts = [s["cols"][name] for s in states]
        merged: dict[str, Any] = {"t": first["t"], "nulls": sum(p["nulls"] for p in parts)}
        if "d" in first:
            dist = Distribution.merge([Distribution.from_state(p["d"]) for p in parts])
            merged["q"] = dist.quantiles([0.25, 0.5, 0.75]) if dist.n else None
            merged["exact"] = bool(dist.exact)
        if "p" in first:
            merged["p"] = {k: sum(p["p"][k] for p in parts) for k in first["p"]}
        cols[name] = merged
    return {"rows": sum(s["rows"] for s in states), "cols": cols}


def profile_report(merged: Mapping[str, Any] | None) -> dict[str, Any]:
    """The merged statistics as a profile shaped like a ``data_profiling`` report (``rows``; per column
    ``type``, ``count``, ``nulls``, ``null_ratio``, ``quantiles`` ``{"0.25", "0.5", "0.75"}``,
    ``quantiles_exact``), text columns adding ``parses`` ``{"integer", "float", "date", "datetime"}``."""
    merged = merged or {"rows": 0, "cols": {}}
    rows = int(merged["rows"])
    columns: dict[str, Any] = {}
    for name, col in merged["cols"].items():
        nulls = int(col["nulls"])
        entry: dict[str, Any] = {
            "type": col["t"],
            "count": rows - nulls,
            "nulls": nulls,
            "null_ratio": nulls / rows if rows else None,
        }
        if col["t"] in NUMERIC:
            q = col.get("q")
            entry["quantiles"] = dict(zip(_QUARTILES, q, strict=True)) if q else None
            entry["quantiles_exact"] = bool(col.get("exact", True))
        if "p" in col:
            entry["parses"] = dict(col["p"])
        columns[name] = entry
    return {"format_version": FORMAT_VERSION, "rows": rows, "columns": columns}


# -- the rules --------------------------------------------------------------------------------------------
def _reaches(part: int, whole: int) -> bool:
    """``part / whole >= PARSE_RATIO`` in integers (no rounding at the edge)."""
    return whole > 0 and part * 100 >= round(PARSE_RATIO * 100) * whole


def _text_parses(col: Mapping[str, Any]) -> dict[str, int] | None:
    """A text column's parse counts: this module's ``parses``, or - from a ``data_profiling`` report - the
    top values when they list every non-null value (else None: unknown)."""
    if col.get("parses") is not None:
        return dict(col["parses"])
    top = col.get("top_values")
    if not top or not col.get("top_values_exact", False) or sum(int(c) for _, c in top) != col.get("count"):
        return None
    values = pd.Series([v for v, _ in top], dtype=object)
    return text_parses(values, np.array([int(c) for _, c in top], dtype=np.int64))


def type_rule(name: str, col: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The type-consistency rule of a text column (or None) and, when none, why."""
    parses = _text_parses(col)
    if parses is None:
        return None, "text column: the profile does not say how its values read (its top values are not all)"
    n = int(col.get("count") or 0)
    if _reaches(parses["float"], n):
        dtype = "integer" if parses["integer"] == parses["float"] else "float"
    elif _reaches(parses["date"], n):
        dtype = "datetime" if parses["datetime"] else "date"
    else:
        return None, None  # plain text: nothing to check
    rule = {
        "type": "type",
        "column": name,
        "dtype": dtype,
        "name": f"type_consistency({name})",
        "severity": SEVERITY,
    }
    return rule, None


def outlier_rule(name: str, col: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The IQR-fence rule of a numeric column (or None) and, when none, why."""
    q = col.get("quantiles") or {}
    q1, q3 = q.get("0.25"), q.get("0.75")
    if q1 is None or q3 is None:
        return None, "no finite value" if not q else "the profile has no 0.25/0.75 quantiles"
    iqr = float(q3) - float(q1)
    if not iqr > 0 or not math.isfinite(iqr):
        return None, "IQR is 0 (more than half of the values are equal): no outlier bounds"
    lo, hi = float(q1) - IQR_FACTOR * iqr, float(q3) + IQR_FACTOR * iqr
    bounds: tuple[Any, Any] = (math.floor(lo), math.ceil(hi)) if col.get("type") == "integer" else (lo, hi)
    rule = {
        "type": "between",
        "column": name,
        "min": bounds[0],
        "max": bounds[1],
        "name": f"outliers({name})",
        "severity": SEVERITY,
    }
    return rule, None


def derive_rules(profile: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rules of the default assessment for ``profile`` (see the module docs) and, per column that got no
    type/outlier rule for a reason worth knowing, that reason. ``duplicate_rows`` first, then per column in
    name order: completeness, then its type or outlier rule."""
    columns = profile.get("columns")
    if not isinstance(columns, Mapping):
        from airflow_batch_provider.exceptions import ConfigError

        raise ConfigError(
            "suggest_rules: give a profile with 'columns' (a data_profiling report, or the 'profile' of a "
            f"data_quality assessment); got keys {sorted(profile)[:10]!r}"
        )
    rules: list[dict[str, Any]] = [{"type": "unique", "name": DUPLICATES, "severity": SEVERITY}]
    skipped: dict[str, str] = {}
    # by name: the same list however the profile travelled (the engine's JSON files sort their keys)
    for name in sorted(columns, key=str):
        col = columns[name]
        rules.append(
            {"type": "not_null", "column": name, "name": f"completeness({name})", "severity": SEVERITY}
        )
        kind = col.get("type")
        rule, why = (None, None)
        if kind == "text":
            rule, why = type_rule(name, col)
        elif kind in NUMERIC:
            rule, why = outlier_rule(name, col)
        if rule is not None:
            rules.append(rule)
        if why:
            skipped[name] = why
    return rules, skipped


def suggest_rules(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The default assessment's rules for a profile, as a list to paste into ``rules=`` and edit.

    ``profile``: a ``data_profiling`` report (its result's ``report``, or the ``_report.json`` of its job
    folder), or a ``data_quality`` report of a default assessment (its ``assessment`` holds the profile).
    From a ``data_profiling`` report a text column gets a type rule only when its top values list every value
    (raise ``top_k``); ``airflow-batch suggest-rules SOURCE`` profiles the source itself and has no such gap.
    """
    if isinstance(profile.get("assessment"), Mapping):  # a data_quality report of a default assessment
        return [dict(r) for r in profile["assessment"]["generated_rules"]]
    if isinstance(profile.get("profile"), Mapping) and "columns" not in profile:  # its assessment section
        profile = profile["profile"]
    return derive_rules(profile)[0]


# -- the assessment inside data_quality (called from DataQualityProcessor's hooks) --------------------------
def current_rules(processor: Any) -> list[dict[str, Any]]:
    """The rule dicts of a default assessment: the derived rules once the statistics pass has run; before
    that the only rule the statistics pass itself needs (``duplicate_rows``, whose keys it collects)."""
    fitted = getattr(processor, "assessment_", None)
    if fitted is not None:
        return [dict(r) for r in fitted["rules"]]
    return [{"type": "unique", "name": DUPLICATES, "severity": SEVERITY}]


def fit(processor: Any, state: Mapping[str, Any] | None) -> None:
    """Derive the rules from the merged statistics (a no-op when ``state`` holds none: a restored state)."""
    if not state or STATS_KEY not in state:
        return
    profile = profile_report(state[STATS_KEY])
    rules, skipped = derive_rules(profile)
    restore(
        processor, {"format_version": FORMAT_VERSION, "profile": profile, "rules": rules, "skipped": skipped}
    )


def restore(processor: Any, fitted: Mapping[str, Any] | None) -> None:
    """Set the assessment (derived rules and their profile) on the processor; the parsed rules are re-read."""
    if not fitted:
        return
    processor.assessment_ = dict(fitted)
    processor.__dict__.pop("_parsed", None)


def fitted(processor: Any) -> dict[str, Any] | None:
    return getattr(processor, "assessment_", None)


def assessment(processor: Any, report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``assessment`` section: the method, the generated rules, per-column completeness, the
    columns left without a type/outlier rule and why, the profile, and one finding per problem found."""
    fitted_state = getattr(processor, "assessment_", None) or {"profile": profile_report(None), "rules": []}
    profile = fitted_state["profile"]
    return {
        "format_version": FORMAT_VERSION,
        "method": dict(METHOD),
        "generated_rules": [dict(r) for r in fitted_state["rules"]],
        "completeness": {
            name: (1.0 - c["null_ratio"]) if c.get("null_ratio") is not None else None
            for name, c in profile["columns"].items()
        },
        "skipped": dict(fitted_state.get("skipped") or {}),
        "findings": findings(report, fitted_state["rules"], profile),
        "profile": profile,
    }


def findings(
    report: Mapping[str, Any], rules: list[Mapping[str, Any]], profile: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One entry per problem: each rule that found failing rows, and each text column holding numbers/dates."""
    by_name = {r["name"]: r for r in rules}
    rows = report.get("rows", 0)
    out: list[dict[str, Any]] = []
    for entry in report.get("rules", []):
        rule = by_name.get(entry["name"])
        if rule is None or not entry["failed"]:
            continue
        column = rule.get("column")
        check, message = _finding_text(rule, entry, rows)
        out.append(
            {
                "check": check,
                "rule": entry["name"],
                "column": column,
                "rows": entry["failed"],
                "message": message,
            }
        )
    for rule in rules:
        if rule["type"] == "type":
            column = rule["column"]
            col = profile["columns"].get(column, {})
            out.append(
                {
                    "check": "stored_as_text",
                    "rule": rule["name"],
                    "column": column,
                    "rows": int(col.get("count") or 0),
                    "message": f"column {column!r} is text but its values read as {rule['dtype']}: "
                    f"store it as {rule['dtype']}",
                }
            )
    return out


def _finding_text(rule: Mapping[str, Any], entry: Mapping[str, Any], rows: int) -> tuple[str, str]:
    failed, evaluated = entry["failed"], entry["evaluated"]
    column = rule.get("column")
    if rule["type"] == "not_null":
        return "completeness", f"{failed} of {rows} values of {column!r} are null"
    if rule["type"] == "unique":
        return "duplicates", f"{failed} of {rows} rows repeat an earlier row"
    if rule["type"] == "type":
        return (
            "type_consistency",
            f"{failed} of {evaluated} values of text column {column!r} do not read as {rule['dtype']}",
        )
    return (
        "outliers",
        f"{failed} of {evaluated} values of {column!r} are outside [{rule['min']}, {rule['max']}] "
        f"(Q1 - {IQR_FACTOR:g} x IQR, Q3 + {IQR_FACTOR:g} x IQR)",
    )


# -- the profile alone, as a job (airflow-batch suggest-rules) ---------------------------------------------
class QualityProfileProcessor(BaseProcessor):
    """The default assessment's statistics as a job of their own: the report is the profile
    :func:`suggest_rules` reads (what ``airflow-batch suggest-rules SOURCE`` runs). No row output."""

    name = "quality_profile"
    version = "1"
    chunk_invariant = True
    input_format = "arrow"

    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        return ChunkResult(state=partial_profile(chunk))

    def merge(self, states: list[Any]) -> Any:
        return merge_profiles(states)

    def finalize(self, state: Any) -> dict[str, Any]:
        return profile_report(state)
