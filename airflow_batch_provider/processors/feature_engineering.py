"""``feature_engineering``: fit global statistics in an exact first pass, then transform every chunk.

With no settings at all (no ``scale``, ``encode``, ``impute``, ``log``, ``bins``, ``date_parts``, ``spec``), every
column gets default steps by its type, each listed in ``spec["defaults"]``
(:mod:`~airflow_batch_provider.processors.feature_defaults`). Steps per column (each optional):

- ``impute={"amount": "mean" | "median" | "most_frequent" | {"strategy": "constant", "value": 0}}``;
  numeric columns treat NaN and +/-inf as missing; text/categorical columns accept ``most_frequent`` and
  ``constant``.
- ``log=["amount"]``: ``sign(x) * log1p(|x|)`` (equals ``log1p`` for x >= 0, defined for every real).
- ``scale={"amount": "standard" | "minmax" | "robust"}``: standard = (x - mean) / std (population std,
  ddof=0, as scikit-learn's ``StandardScaler``); minmax = (x - min) / (max - min); robust =
  (x - median) / (q75 - q25) with linear interpolation (scikit-learn's ``RobustScaler``). A zero scale
  (constant column) becomes 1, an empty column centre 0 / scale 1: never inf or NaN.
- ``bins={"amount": 10}`` (equal width over the global [min, max]) or ``{"amount": [0, 10, 100, 1000]}``
  (explicit edges): an ``{col}_bin`` Int64 column, bins ``[e_i, e_i+1)`` with the last closed, values
  outside clipped to the first/last bin.
- ``encode={"currency": "onehot" | "ordinal" | {"method": "onehot", "top_k": 10}}``: a global vocabulary
  of the ``top_k`` most frequent values (count descending, then value text); everything else is
  ``other``. One-hot adds uint8 columns ``{col}={value}`` and ``{col}=<other>`` (missing values: all 0);
  ordinal gives int64 codes ``0..k-1`` and ``k`` for other (missing stays missing: null).
- ``date_parts={"created_at": ["year", "month", "dayofweek", "hour"]}``: int64 ``{col}_{part}`` columns
  (null where missing); parts: year, quarter, month, day, dayofweek (Monday = 0), dayofyear, hour, minute,
  second, is_weekend; a zoned timestamp's parts in its local time.

Computed on Arrow (``input_format = "arrow"``): the engine hands both passes ``pyarrow.Table`` chunks, never
converted to pandas; statistics and transforms are pyarrow.compute and numpy on the Arrow columns (zero-copy
float64 views where a column has no nulls, nulls from the validity bitmaps) and the output rows are a
``pyarrow.Table``. Column kinds come from the schema's pandas dtypes (an empty frame), so every chunk takes the
same path and the messages for bad input are unchanged. The few column types whose values pandas compared
differently (encoded/imputed floats, bytes, decimals) are converted to pandas alone, column by column, and
give exactly what they did. Columns not transformed are passed through as they are (their exact Arrow type and
values: a float NaN stays NaN).

Numeric order: impute -> log -> scale (scaler statistics include the imputed values, as in a
scikit-learn pipeline); bins use the imputed, untransformed values. ``keep_original=False`` (default)
replaces a numeric/imputed column in place and drops encoded and date columns; ``keep_original=True``
keeps every input column unchanged and writes numeric results to ``{col}_transformed`` and ordinal codes to
``{col}_code``. Columns not named pass through unchanged.

Invariance: sums are exact (``column_stats.ExactMoments``), quantiles come from
``column_stats.Distribution`` (exact up to ``exact_quantile_limit`` distinct values, else bucketed with
relative error <= 2**-quantile_bits, deterministic either way) and vocabularies from exact counts, so the
fitted spec - and therefore every output row - is bit-identical for any chunking, concurrency or resume.
A column with more than ``vocabulary_limit`` distinct values cannot be encoded (a clear error).

Report (``format_version`` 1): ``rows``, ``output_columns``, ``spec`` (the fitted spec). The spec is JSON:
``{"format_version": 1, "keep_original", "fitted_rows", "columns": {col: {"kind", "impute", "log",
"scale", "bins", "encode", "date_parts"}}}``. Pass it back as ``spec=`` (the dict, or a path/URI of a
saved report or spec JSON, e.g. the training job's ``_report.json``) to transform new data without fitting.
No Airflow imports.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors import feature_defaults
from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult, check_columns
from airflow_batch_provider.processors.column_stats import (
    Distribution,
    ExactMoments,
    TopValues,
    bin_index,
    equal_width_edges,
)
from airflow_batch_provider.processors.frames import arrow_to_pandas, arrow_to_pandas_column
from airflow_batch_provider.processors.hashing import spill_folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCALERS = ("standard", "minmax", "robust")
ENCODERS = ("onehot", "ordinal")
IMPUTERS = ("mean", "median", "most_frequent", "constant")
DATE_PARTS = (
    "year",
    "quarter",
    "month",
    "day",
    "dayofweek",
    "dayofyear",
    "hour",
    "minute",
    "second",
    "is_weekend",
)
OTHER = "<other>"
_ACCESSORS = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _fail(param: str, message: str) -> ConfigError:
    return ConfigError(f"feature_engineering: {param}: {message}")


def _as_map(param: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(param, f"expected a mapping of column -> setting, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _impute_rule(col: str, rule: Any) -> dict[str, Any]:
    if isinstance(rule, str):
        rule = {"strategy": rule}
    if not isinstance(rule, Mapping) or rule.get("strategy") not in IMPUTERS:
        raise _fail(
            "impute",
            f"{col!r}: give one of {IMPUTERS} or {{'strategy': 'constant', 'value': v}}, got {rule!r}",
        )
    if rule["strategy"] == "constant" and "value" not in rule:
        raise _fail("impute", f"{col!r}: the constant strategy needs a 'value'")
    return {"strategy": rule["strategy"], "value": rule.get("value")}


def _encode_rule(col: str, rule: Any) -> dict[str, Any]:
    if isinstance(rule, str):
        rule = {"method": rule}
    if not isinstance(rule, Mapping) or rule.get("method") not in ENCODERS:
        raise _fail(
            "encode", f"{col!r}: give 'onehot', 'ordinal' or {{'method': ..., 'top_k': k}}, got {rule!r}"
        )
    top_k = rule.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise _fail("encode", f"{col!r}: top_k={top_k!r} must be a positive integer or None")
    return {"method": rule["method"], "top_k": top_k}


def _scale_rule(col: str, method: Any) -> str:
    if method not in SCALERS:
        raise _fail("scale", f"{col!r}: {method!r} is not one of {SCALERS}")
    return str(method)


def _parts_rule(col: str, parts: Any) -> list[str]:
    bad = [parts] if isinstance(parts, str) else [p for p in (parts or []) if p not in DATE_PARTS]
    if bad or not parts:
        raise _fail("date_parts", f"{col!r}: unknown part(s) {bad!r}; choose from {DATE_PARTS}")
    return list(parts)


def _bins_rule(col: str, rule: Any) -> Any:
    if isinstance(rule, int) and not isinstance(rule, bool) and rule >= 1:
        return rule
    if isinstance(rule, Sequence) and not isinstance(rule, str) and len(rule) >= 2:
        edges = [float(e) for e in rule]
        if all(a < b for a, b in zip(edges, edges[1:], strict=False)):
            return edges
    raise _fail(
        "bins", f"{col!r}: give a number of bins >= 1 or a strictly increasing list of edges, got {rule!r}"
    )


class FeatureEngineeringProcessor(BaseProcessor):
    """Scale, encode, impute, log-transform, bin and split dates, with exactly merged global statistics.

    :param scale: ``{column: "standard" | "minmax" | "robust"}``.
    :param encode: ``{column: "onehot" | "ordinal" | {"method": ..., "top_k": k}}``.
    :param impute: ``{column: "mean" | "median" | "most_frequent" | {"strategy": "constant", "value": v}}``.
    :param log: columns to transform with ``sign(x) * log1p(|x|)``.
    :param bins: ``{column: n_bins | [edges]}``.
    :param date_parts: ``{column: [parts]}``.
    :param keep_original: keep input columns and write results under new names (see the module docs).
    :param spec: a fitted spec (``report["spec"]``) or a path/URI of a saved report/spec JSON: transform only.
    :param vocabulary_limit: most distinct values counted exactly per encoded column.
    :param exact_quantile_limit: medians/quartiles exact up to this many distinct values per column.
    :param quantile_bits: above that limit, quantiles within relative error 2**-quantile_bits.
    """

    name = "feature_engineering"
    # 2: no settings means the defaults (feature_defaults), not a pass-through; 3: Arrow chunks and kernels
    # (partial states list values in another order, pass-through columns keep their exact values)
    version = "3"
    chunk_invariant = True
    input_format = "arrow"  # the engine hands pyarrow Tables to partial_stats and process, never pandas

    def __init__(
        self,
        scale: Mapping[str, str] | None = None,
        encode: Mapping[str, Any] | None = None,
        impute: Mapping[str, Any] | None = None,
        log: Sequence[str] | None = None,
        bins: Mapping[str, Any] | None = None,
        date_parts: Mapping[str, Sequence[str]] | None = None,
        keep_original: bool = False,
        spec: Mapping[str, Any] | str | None = None,
        vocabulary_limit: int = 100_000,
        exact_quantile_limit: int = 100_000,
        quantile_bits: int = 16,
    ) -> None:
        self.scale = scale
        self.encode = encode
        self.impute = impute
        self.log = log
        self.bins = bins
        self.date_parts = date_parts
        self.keep_original = keep_original
        self.spec = spec
        self.vocabulary_limit = vocabulary_limit
        self.exact_quantile_limit = exact_quantile_limit
        self.quantile_bits = quantile_bits

    @property
    def stats_pass(self) -> bool:  # type: ignore[override]
        """A statistics pass runs unless a fitted ``spec`` is given."""
        return self.spec is None

    # -- parameters --------------------------------------------------------------------------------
    def _plan(self) -> dict[str, dict[str, Any]]:
        """The validated per-column steps from the parameters."""
        if self.spec is not None:
            if any((self.scale, self.encode, self.impute, self.log, self.bins, self.date_parts)):
                raise _fail(
                    "spec", "give either spec= (transform only) or transformation parameters, not both"
                )
            return {}
        self._validate_limits()
        plan: dict[str, dict[str, Any]] = {}
        for key, rules in self._rules().items():
            for col, rule in rules.items():
                plan.setdefault(col, {})[key] = rule
        for col, steps in plan.items():
            if "encode" in steps and {"scale", "log", "bins"} & set(steps):
                raise _fail("encode", f"{col!r} is encoded and also scaled/logged/binned; pick one")
        return plan

    def _validate_limits(self) -> None:
        for param, value in (
            ("vocabulary_limit", self.vocabulary_limit),
            ("exact_quantile_limit", self.exact_quantile_limit),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(param, f"{value!r} must be a positive integer")
        if not isinstance(self.quantile_bits, int) or not 1 <= self.quantile_bits <= 52:
            raise _fail("quantile_bits", f"{self.quantile_bits!r} must be an integer in 1..52")
        if self.log is not None and (isinstance(self.log, str) or not isinstance(self.log, Sequence)):
            raise _fail("log", f"expected a list of column names, got {self.log!r}")

    def _rules(self) -> dict[str, dict[str, Any]]:
        return {
            "scale": {col: _scale_rule(col, m) for col, m in _as_map("scale", self.scale).items()},
            "encode": {col: _encode_rule(col, r) for col, r in _as_map("encode", self.encode).items()},
            "impute": {col: _impute_rule(col, r) for col, r in _as_map("impute", self.impute).items()},
            "log": {str(col): True for col in self.log or ()},
            "bins": {col: _bins_rule(col, r) for col, r in _as_map("bins", self.bins).items()},
            "date_parts": {
                col: _parts_rule(col, p) for col, p in _as_map("date_parts", self.date_parts).items()
            },
        }

    def validate(self, schema: Any) -> None:
        """The parameters; every column they name exists in the source, with a type its steps accept."""
        plan = self._plan()
        for param, rules in self._rules().items():
            check_columns(self.name, param, list(rules), schema)
        if self.spec is not None:  # a column of the fitted spec missing here would pass through untransformed
            check_columns(self.name, "spec", list(self.fitted_spec()["columns"]), schema)
        if plan:
            self._check_columns(plan, arrow_to_pandas(schema.empty_table()))
            _check_binary(plan, schema)

    @staticmethod
    def _check_columns(plan: dict[str, dict[str, Any]], chunk: pd.DataFrame) -> dict[str, str]:
        """Each planned column's kind (numeric, categorical, datetime), checked against the data."""
        names = {str(c): c for c in chunk.columns}
        kinds = {}
        for col, steps in plan.items():
            if col not in names:
                raise _fail(
                    next(iter(steps)), f"column {col!r} is not in the source; it has {list(names)[:50]!r}"
                )
            dtype = chunk[names[col]].dtype
            _check_scalar(col, steps, dtype)
            numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            if "date_parts" in steps:
                if not pd.api.types.is_datetime64_any_dtype(dtype):
                    raise _fail("date_parts", f"column {col!r} has dtype {dtype}, not a timestamp")
                kinds[col] = "datetime"
            elif "encode" in steps or not numeric:
                kinds[col] = "categorical"
            else:
                kinds[col] = "numeric"
            if kinds[col] != "numeric" and {"scale", "log", "bins"} & set(steps):
                raise _fail(
                    next(s for s in ("scale", "log", "bins") if s in steps),
                    f"column {col!r} has dtype {dtype}; scaling, log and bins need a numeric column",
                )
            rule = steps.get("impute")
            if rule and kinds[col] == "categorical" and rule["strategy"] in ("mean", "median"):
                raise _fail("impute", f"column {col!r} is not numeric; use most_frequent or constant")
        return kinds

    # -- statistics pass -----------------------------------------------------------------------------
    def stats_columns(self, schema: Any) -> list[str] | None:
        """The statistics pass reads only the planned columns (the engine projects the source)."""
        try:
            plan = self._plan()
        except ConfigError:
            return None  # read everything: partial_stats reports the problem
        return list(plan) or None

    def partial_stats(self, chunk: Any, ctx: ChunkContext) -> Any:
        """One chunk's statistics (a ``pyarrow.Table`` from the engine; a pandas DataFrame is converted)."""
        pandas_chunk = isinstance(chunk, pd.DataFrame)
        table = _as_table(chunk)
        empty = _empty_frame(table)  # the pandas dtypes the column kinds come from: the schema's alone
        defaults = feature_defaults.active(self)  # no settings: every column planned by its type
        plan = feature_defaults.plan_for(empty) if defaults else self._plan()
        kinds = self._check_columns(plan, empty)
        if defaults:
            if pandas_chunk:  # an Arrow column always holds countable values (text, bytes, numbers)
                feature_defaults.check_hashable(chunk, plan)
            kinds.update(feature_defaults.passthrough_kinds(empty))
        out: dict[str, Any] = {"rows": table.num_rows, "kinds": kinds, "cols": {}}
        folder = spill_folder(getattr(ctx, "work_uri", "") or getattr(ctx, "output_uri", None), "features")
        base = f"{folder}/f{ctx.file_index:05d}-r{ctx.start_row:012d}-{ctx.stop_row:012d}" if folder else None
        for j, (col, steps) in enumerate(plan.items()):
            column = table.column(col)
            if kinds[col] == "numeric":
                spill = f"{base}-c{j}" if base else None
                out["cols"][col] = self._numeric_stats(_float_values(column), steps, spill)
            elif kinds[col] == "categorical" and ("encode" in steps or steps.get("impute")):
                values, counts, missing = _value_counts(column)
                tv = TopValues.of_counts(values, counts, self.vocabulary_limit)
                out["cols"][col] = {"tv": tv.to_state(), "missing": missing}
        return out

    def _numeric_stats(
        self, x: np.ndarray, steps: dict[str, Any], spill: str | None = None
    ) -> dict[str, Any]:
        """``spill``: where large distributions go as raw side files (a chunk's median/quantile entries: about
        one per distinct value), instead of base64 inside the JSON state."""
        finite = x[np.isfinite(x)]
        out: dict[str, Any] = {
            "missing": int(len(x) - len(finite)),
            "raw": ExactMoments.of(finite).to_state(),
        }
        rule = steps.get("impute") or {}
        if rule.get("strategy") in ("median", "most_frequent") or (
            steps.get("scale") == "robust" and not steps.get("log")
        ):
            out["rawd"] = self._dist(finite).to_state(spill_to=f"{spill}-rawd" if spill else None)
        if steps.get("log") and steps.get("scale"):
            pre = signed_log1p(finite)
            out["pre"] = ExactMoments.of(pre).to_state()
            if steps["scale"] == "robust":
                out["pred"] = self._dist(pre).to_state(spill_to=f"{spill}-pred" if spill else None)
        return out

    def _dist(self, values: np.ndarray) -> Distribution:
        return Distribution.of(values, self.quantile_bits, self.exact_quantile_limit)

    def merge_stats(self, states: list[Any]) -> Any:
        states = [s for s in states if s]
        if not states:
            return None
        merged: dict[str, Any] = {
            "rows": sum(s["rows"] for s in states),
            "kinds": states[0]["kinds"],
            "cols": {},
        }
        for col in states[0]["cols"]:
            parts = [s["cols"][col] for s in states]
            merged["cols"][col] = _merge_col_stats(parts)
        return merged

    def fit_stats(self, state: Any) -> None:
        if feature_defaults.active(self):
            feature_defaults.fit_stats(self, state)
            return
        plan = self._plan()
        state = state or {"rows": 0, "kinds": {}, "cols": {}}
        columns = {}
        for col, steps in plan.items():
            kind = state["kinds"].get(col, "numeric")
            stats = state["cols"].get(col, {})
            if kind == "numeric":
                columns[col] = self._fit_numeric(col, steps, stats)
            elif kind == "categorical":
                columns[col] = self._fit_categorical(col, steps, stats)
            else:
                columns[col] = {"kind": "datetime", "date_parts": steps["date_parts"]}
        self.spec_ = {
            "format_version": FORMAT_VERSION,
            "processor": self.name,
            "keep_original": bool(self.keep_original),
            "fitted_rows": int(state["rows"]),
            "columns": columns,
        }
        log.info("feature_engineering: fitted %d column(s) on %d rows", len(columns), state["rows"])

    def _fit_numeric(self, col: str, steps: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
        raw = ExactMoments.from_state(stats.get("raw"))
        missing = int(stats.get("missing", 0))
        rule = steps.get("impute")
        fill = _impute_value(rule, raw, stats) if rule else None
        copies = missing if fill is not None else 0
        spec: dict[str, Any] = {
            "kind": "numeric",
            "log": bool(steps.get("log")),
            "impute": None if rule is None else {"strategy": rule["strategy"], "value": fill},
            "scale": None,
            "bins": None,
            "encode": None,
            "date_parts": None,
        }
        if "bins" in steps:
            spec["bins"] = {"edges": _bin_edges(steps["bins"], raw, fill)}
        if "scale" in steps:
            t_fill = (
                None if fill is None else float(signed_log1p(np.array([fill]))[0]) if spec["log"] else fill
            )
            spec["scale"] = _fit_scaler(steps["scale"], stats, bool(spec["log"]), t_fill, copies)
        return spec

    def _fit_categorical(self, col: str, steps: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
        tv = TopValues.from_state(stats["tv"]) if stats.get("tv") else TopValues(self.vocabulary_limit)
        if not tv.exact:
            raise _fail(
                "vocabulary_limit",
                f"column {col!r} has more than {self.vocabulary_limit} distinct values; "
                "raise vocabulary_limit or do not encode it",
            )
        rule = steps.get("impute")
        fill = None
        if rule:
            fill = (
                rule["value"] if rule["strategy"] == "constant" else (tv.top(1)[0][0] if tv.counts else None)
            )
            if fill is not None and stats.get("missing"):  # imputed values count like any other
                tv = TopValues.merge([tv, TopValues.of_counts([fill], [stats["missing"]], tv.capacity)])
        ranked = tv.top()
        spec: dict[str, Any] = {
            "kind": "categorical",
            "log": False,
            "scale": None,
            "bins": None,
            "date_parts": None,
            "impute": None if rule is None else {"strategy": rule["strategy"], "value": fill},
            "encode": None,
        }
        if "encode" in steps:
            top_k = steps["encode"]["top_k"]
            vocab = [v for v, _ in (ranked if top_k is None else ranked[:top_k])]
            if OTHER in [str(v) for v in vocab]:
                raise _fail("encode", f"column {col!r} has a value {OTHER!r}, which names the 'other' bucket")
            spec["encode"] = {"method": steps["encode"]["method"], "top_k": top_k, "vocabulary": vocab}
        return spec

    def get_state(self) -> Any:
        return getattr(self, "spec_", None)

    def set_state(self, state: Any) -> None:
        self.spec_ = state

    # -- transform -----------------------------------------------------------------------------------
    def fitted_spec(self) -> dict[str, Any]:
        """The spec in use: fitted by the statistics pass, or loaded from ``spec=``."""
        spec = getattr(self, "spec_", None)
        if spec is None:
            self._plan()
            if self.spec is None:
                raise _fail("spec", "not fitted: run the statistics pass first or pass spec=")
            spec = self.spec_ = load_spec(self.spec)
        return spec

    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        """The transformed rows: a ``pyarrow.Table`` for the engine's Arrow chunks (the kind given)."""
        spec = self.fitted_spec()
        out = transform(chunk, spec)
        names = out.column_names if hasattr(out, "column_names") else [str(c) for c in out.columns]
        return ChunkResult(rows=out, state={"rows": len(chunk), "columns": names})

    def merge(self, states: list[Any]) -> Any:
        states = [s for s in states if s]
        return {"rows": sum(s["rows"] for s in states), "columns": states[0]["columns"] if states else []}

    def finalize(self, state: Any) -> dict[str, Any]:
        state = state or {"rows": 0, "columns": []}
        return {
            "format_version": FORMAT_VERSION,
            "processor": self.name,
            "rows": state["rows"],
            "output_columns": state["columns"],
            "spec": self.fitted_spec(),
        }


# -- fitting helpers ---------------------------------------------------------------------------------
def _merge_col_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    first = parts[0]
    out: dict[str, Any] = {}
    if "missing" in first:
        out["missing"] = sum(p["missing"] for p in parts)
    for key in ("raw", "pre"):
        if key in first:
            out[key] = ExactMoments.merge([ExactMoments.from_state(p[key]) for p in parts]).to_state()
    for key in ("rawd", "pred"):
        if key in first:
            # a merge of spilled states spills next to them, under a name of its own (one column's entries in
            # memory at a time, not every column's until the fit)
            spill = next((f"{p[key]['file']}-m{uuid.uuid4().hex}" for p in parts if "file" in p[key]), None)
            merged = Distribution.merge([Distribution.from_state(p[key]) for p in parts])
            out[key] = merged.to_state(spill_to=spill)
    if "tv" in first:
        out["tv"] = TopValues.merge([TopValues.from_state(p["tv"]) for p in parts]).to_state()
    return out


def _impute_value(rule: dict[str, Any], raw: ExactMoments, stats: dict[str, Any]) -> float:
    """The fill value; an empty column imputes 0.0 (never NaN)."""
    strategy = rule["strategy"]
    if strategy == "constant":
        return float(rule["value"])
    if strategy == "mean":
        value = raw.mean()
    else:
        dist = Distribution.from_state(stats["rawd"]) if stats.get("rawd") else Distribution()
        value = dist.quantiles([0.5])[0] if strategy == "median" else dist.mode()
    return 0.0 if value is None else float(value)


def _bin_edges(rule: Any, raw: ExactMoments, fill: float | None) -> list[float] | None:
    if not isinstance(rule, int):
        return [float(e) for e in rule]
    bounds = [v for v in (raw.min, raw.max, fill) if v is not None]
    if not bounds:
        return None
    return equal_width_edges(min(bounds), max(bounds), rule)


def _fit_scaler(
    method: str, stats: dict[str, Any], logged: bool, fill: float | None, copies: int
) -> dict[str, Any]:
    """``center`` and ``scale`` (never 0, inf or NaN) over the values the scaler will see."""
    extra = copies if fill is not None else 0
    if method == "robust":
        key = "pred" if logged else "rawd"
        dist = Distribution.from_state(stats[key]) if stats.get(key) else Distribution()
        if extra:
            dist = dist.add_constant(fill, extra)  # type: ignore[arg-type]
        q25, med, q75 = dist.quantiles([0.25, 0.5, 0.75])
        center, scale = med, (None if q25 is None else q75 - q25)  # type: ignore[operator]
    else:
        em = ExactMoments.from_state(stats.get("pre" if logged else "raw"))
        em = ExactMoments.merge([em, ExactMoments.of_constant(fill, extra)]) if extra else em  # type: ignore[arg-type]
        if method == "standard":
            center, scale = em.mean(), em.std(ddof=0)
        else:
            center = em.min
            scale = None if em.min is None else em.max - em.min  # type: ignore[operator]
    center = 0.0 if center is None else float(center)
    scale = 1.0 if not scale else float(scale)
    return {"method": method, "center": center, "scale": scale}


def load_spec(spec: Mapping[str, Any] | str | Any) -> dict[str, Any]:
    """A spec from a dict (a spec or a report holding one) or a path/URI of such a JSON file."""
    if not isinstance(spec, Mapping):
        from airflow_batch_provider.storage import Location

        loc = Location.of(spec)
        doc = loc.read_json()
        if doc is None:
            raise _fail(
                "spec", f"no JSON spec at {loc.uri!r}; give a saved report/_report.json or a spec dict"
            )
        spec = doc
    if "spec" in spec and isinstance(spec["spec"], Mapping):
        spec = spec["spec"]
    if spec.get("format_version") != FORMAT_VERSION or not isinstance(spec.get("columns"), Mapping):
        raise _fail(
            "spec",
            f"not a feature_engineering spec (format_version {FORMAT_VERSION} with 'columns'): "
            f"keys {sorted(spec)[:10]!r}",
        )
    return dict(spec)


# -- chunk columns on Arrow -------------------------------------------------------------------------
def _as_table(chunk: Any) -> Any:
    """``chunk`` as a ``pyarrow.Table`` (a pandas DataFrame converted without its index)."""
    import pyarrow as pa

    if isinstance(chunk, pa.Table):
        return chunk
    if isinstance(chunk, pa.RecordBatch):
        return pa.Table.from_batches([chunk])
    return pa.Table.from_pandas(chunk, preserve_index=False)


def _empty_frame(table: Any) -> pd.DataFrame:
    """The pandas frame of no rows with ``table``'s dtypes: what column kinds and type checks look at (the
    schema's, pandas metadata included, so every chunk of a job takes the same path)."""
    return arrow_to_pandas(table.schema.empty_table())


def _float_values(col: Any) -> np.ndarray:
    """One numeric column as float64, nulls as NaN (read-only when zero-copy: a float64 column without nulls
    in one chunk): integers and floats cast by Arrow (integers past 2**53 round to nearest, as numpy and pandas
    convert them); other numeric types (decimals, float16) through pandas, as pandas converted them."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_float64(t) and col.null_count == 0 and col.num_chunks == 1:
        return col.chunk(0).to_numpy(zero_copy_only=False)  # a view of the Arrow buffer
    if pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t):
        return np.asarray(col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)
    return arrow_to_pandas_column(col).to_numpy(dtype="float64", na_value=np.nan)


def _fast_categorical(t: Any) -> bool:
    """True for the column types whose values and counts Arrow gives exactly as pandas did (text, booleans,
    integers and dictionaries of them); others (floats, whose NaN pandas counts as missing, bytes, decimals,
    string views, which some kernels lack) take pandas' own path, column by column."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
    )


def _decoded(col: Any) -> Any:
    import pyarrow as pa

    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _value_counts(col: Any) -> tuple[list[Any], list[int], int]:
    """``(values, counts, missing)`` of one column: the non-missing values' counts, as pandas'
    ``value_counts(dropna=True)`` and ``isna().sum()`` gave them."""
    import pyarrow.compute as pc

    if _fast_categorical(col.type):
        vc = pc.value_counts(_decoded(col))
        values, counts = vc.field("values"), vc.field("counts")
        keep = values.is_valid()
        return values.filter(keep).to_pylist(), counts.filter(keep).to_pylist(), int(col.null_count)
    series = arrow_to_pandas_column(col)
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    return counts.index.tolist(), counts.tolist(), int(series.isna().sum())


def _float_array(y: np.ndarray) -> Any:
    """float64 values as an Arrow array, NaN as null (what the pandas conversion of a result did)."""
    import pyarrow as pa

    nan = np.isnan(y)
    return pa.array(y, mask=nan) if nan.any() else pa.array(y)


def _int_array(values: np.ndarray, missing: np.ndarray | None) -> Any:
    import pyarrow as pa

    if missing is not None and missing.any():
        return pa.array(values.astype(np.int64, copy=False), type=pa.int64(), mask=missing)
    return pa.array(values.astype(np.int64, copy=False), type=pa.int64())


# -- transforming ------------------------------------------------------------------------------------
def transform(chunk: Any, spec: dict[str, Any]) -> Any:
    """Apply a fitted spec to one chunk; columns keep the input order, derived ones next to their source.

    ``chunk``: a ``pyarrow.Table`` (what the engine gives: the result is a ``pyarrow.Table``, computed with
    pyarrow.compute and numpy on the Arrow columns, unnamed columns passed through as they are) or a pandas
    DataFrame (converted to Arrow without its index; the result is a DataFrame on ``chunk``'s index, bins,
    codes and date parts ``Int64`` as before). Output types: float64 for numeric results (null where the value
    is missing), uint8 one-hot columns, int64 (with nulls) bins, ordinal codes and date parts."""
    import pyarrow as pa

    pandas_chunk = isinstance(chunk, pd.DataFrame)
    table = _as_table(chunk)
    columns = spec["columns"]
    keep = bool(spec.get("keep_original"))
    pieces: list[tuple[str, Any]] = []
    nullable_ints: list[str] = []
    for col, column in zip(table.column_names, table.columns, strict=True):
        if col not in columns:
            pieces.append((col, column))
            continue
        cspec = columns[col]
        if keep:
            pieces.append((col, column))
        derived, ints = _column_outputs(col, column, cspec, keep, table)
        pieces.extend(derived)
        nullable_ints += ints
    names = [n for n, _ in pieces]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise _fail(
            "keep_original", f"output column name(s) {dup[:10]!r} collide with input columns; rename them"
        )
    out = pa.Table.from_arrays([a for _, a in pieces], names=names)
    if not pandas_chunk:
        return out
    frame = arrow_to_pandas(out)
    for name in dict.fromkeys(nullable_ints):  # pandas' own transform gave these Int64, nulls or not
        if pa.types.is_int64(out.schema.field(name).type):
            frame[name] = frame[name].astype("Int64")
    frame.index = chunk.index
    return frame


def _column_outputs(
    col: str, column: Any, cspec: dict[str, Any], keep: bool, table: Any
) -> tuple[list[tuple[str, Any]], list[str]]:
    """One spec column's output columns, and which of them are integer codes (bins, ordinal codes, date parts)."""
    if cspec["kind"] == "numeric":
        derived = _numeric_outputs(col, column, cspec, keep)
        return derived, [n for n, _ in derived if n == f"{col}_bin"]
    if cspec["kind"] == "categorical":
        derived = _categorical_arrow(col, column, cspec, keep, table)
        ordinal = (cspec.get("encode") or {}).get("method") == "ordinal"
        return derived, [n for n, _ in derived] if ordinal else []
    derived = _date_arrow(col, column, cspec["date_parts"], table)
    return derived, [n for n, _ in derived]


def _numeric_outputs(col: str, column: Any, cspec: dict[str, Any], keep: bool) -> list[tuple[str, Any]]:
    x = _float_values(column)
    bad = ~np.isfinite(x)
    impute = cspec.get("impute")
    if bad.any():  # NaN and +/-inf are missing: imputed, else NaN (a null in the output)
        x = np.where(bad, np.nan if impute is None else impute["value"], x)
    out: list[tuple[str, Any]] = []
    transformed = impute is not None or cspec.get("log") or cspec.get("scale") is not None
    y = x
    if cspec.get("log"):
        y = signed_log1p(y)
    if cspec.get("scale") is not None:
        y = (y - cspec["scale"]["center"]) / cspec["scale"]["scale"]
    if transformed:
        out.append((f"{col}_transformed" if keep else col, _float_array(np.asarray(y, dtype=np.float64))))
    elif not keep:
        out.append((col, column))
    if cspec.get("bins") is not None:
        out.append((f"{col}_bin", _bins(x, cspec["bins"]["edges"])))
    return out


def _bins(x: np.ndarray, edges: list[float] | None) -> Any:
    import pyarrow as pa

    if edges is None:
        return pa.nulls(len(x), pa.int64())
    return _int_array(bin_index(x, np.asarray(edges, dtype=np.float64)), np.isnan(x))


def _python_type_fits(value: Any, t: Any) -> bool:
    """True when ``value`` (from the JSON spec) is a value of Arrow type ``t`` exactly as pandas compared it."""
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return isinstance(value, bool)
    if pa.types.is_integer(t):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _categorical_arrow(
    col: str, column: Any, cspec: dict[str, Any], keep: bool, table: Any
) -> list[tuple[str, Any]]:
    """Imputation and vocabulary codes with pyarrow.compute (text, boolean and integer columns with an
    encoding whose values are of the column's type); anything else the pandas way (:func:`_categorical_outputs`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enc = cspec.get("encode")
    fill = (cspec.get("impute") or {}).get("value")
    values = _decoded(column) if _fast_categorical(column.type) else None
    vocab = (enc or {}).get("vocabulary") or []
    try:
        if (
            enc is None
            or values is None
            or (fill is not None and not _python_type_fits(fill, values.type))
            or not all(_python_type_fits(v, values.type) for v in vocab)
        ):
            raise pa.ArrowNotImplementedError("not on Arrow")
        if fill is not None and values.null_count:
            values = pc.fill_null(values, pa.scalar(fill, values.type))
        value_set = pa.array(vocab, type=values.type)  # a spec fitted elsewhere may hold values out of range
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _from_pandas(_categorical_outputs(col, arrow_to_pandas_column(column), cspec, keep), table)
    k = len(vocab)
    missing = values.is_null().to_numpy(zero_copy_only=False)
    found = pc.index_in(values, value_set=value_set)
    idx = np.asarray(found.fill_null(k).to_numpy(zero_copy_only=False), dtype=np.int64)
    if enc["method"] == "ordinal":
        return [(f"{col}_code" if keep else col, _int_array(idx, missing))]
    onehot = np.zeros((k + 1, len(idx)), dtype=np.uint8)
    present = np.flatnonzero(~missing)
    onehot[idx[present], present] = 1  # one pass; missing values: all 0
    names = [f"{col}={v}" for v in vocab] + [f"{col}={OTHER}"]
    return [(n, pa.array(onehot[i])) for i, n in enumerate(names)]


def _from_pandas(pieces: list[tuple[str, Any]], table: Any) -> list[tuple[str, Any]]:
    """pandas result columns as the Arrow columns the engine wrote for them (``frames.to_arrow``: a column named
    like a source column gets its type back when only the layout changed)."""
    import pyarrow as pa

    from airflow_batch_provider.processors.frames import chunk_dictionaries, restore_types

    if not pieces:
        return []
    frame = pd.concat([s.rename(n).reset_index(drop=True) for n, s in pieces], axis=1)
    frame.columns = [n for n, _ in pieces]
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = restore_types(arrow, table.schema, chunk_dictionaries(table))
    return list(zip(arrow.column_names, arrow.columns, strict=True))


#: days from 1970 within which Arrow's date parts are exact (about the years -25400..29300; beyond, pandas')
_FAR_DAYS = 10_000_000
_PARTS = {
    "year": "year",
    "quarter": "quarter",
    "month": "month",
    "day": "day",
    "dayofweek": "day_of_week",  # Monday = 0, as pandas
    "dayofyear": "day_of_year",
    "hour": "hour",
    "minute": "minute",
    "second": "second",
}


def _date_arrow(col: str, column: Any, parts: list[str], table: Any) -> list[tuple[str, Any]]:
    """Date parts with pyarrow.compute (local time for a timestamp with a time zone, as pandas); a date as a
    timestamp of its midnight. A column Arrow cannot split (no time zone database) goes the pandas way."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        ts = column.cast(pa.timestamp("s")) if pa.types.is_date(column.type) else column
        if not pa.types.is_timestamp(ts.type):
            raise pa.ArrowNotImplementedError(f"not a timestamp: {ts.type}")
        if ts.type.unit != "ns":  # Arrow's calendar holds years -32767..32767 only (pandas' every year)
            limit = _FAR_DAYS * 86_400 * {"s": 1, "ms": 1_000, "us": 1_000_000}[ts.type.unit]
            bounds = pc.min_max(ts.cast(pa.int64()))
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if lo is not None and (lo < -limit or hi > limit):
                raise pa.ArrowNotImplementedError("a year outside -25000..29000")
        out = []
        for part in parts:
            if part == "is_weekend":
                value = pc.greater_equal(pc.day_of_week(ts), 5).cast(pa.int64())
            else:
                value = getattr(pc, _PARTS[part])(ts).cast(pa.int64())
            out.append((f"{col}_{part}", value))
        return out
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return _from_pandas(_date_outputs(col, arrow_to_pandas_column(column), parts), table)


def _categorical_outputs(
    col: str, series: pd.Series, cspec: dict[str, Any], keep: bool
) -> list[tuple[str, Any]]:
    values = series
    if cspec.get("impute") is not None and cspec["impute"]["value"] is not None:
        values = series.astype(object).where(series.notna(), cspec["impute"]["value"])
    enc = cspec.get("encode")
    if enc is None:
        return [(f"{col}_transformed" if keep else col, values)]
    vocab = enc["vocabulary"]
    missing = values.isna().to_numpy()
    idx = pd.Index(vocab, dtype=object).get_indexer(values.astype(object).to_numpy())
    idx = np.where(idx < 0, len(vocab), idx)
    if enc["method"] == "ordinal":
        codes = pd.array(idx, dtype="Int64")
        codes[missing] = pd.NA
        return [(f"{col}_code" if keep else col, pd.Series(codes, index=series.index))]
    idx = np.where(missing, -1, idx)
    onehot = (idx[:, None] == np.arange(len(vocab) + 1)[None, :]).astype(np.uint8)
    names = [f"{col}={v}" for v in vocab] + [f"{col}={OTHER}"]
    return [(n, pd.Series(onehot[:, i], index=series.index)) for i, n in enumerate(names)]


def _check_scalar(col: str, steps: dict[str, Any], dtype: Any) -> None:
    """A ``ConfigError`` naming a list/struct/map column (or another Arrow type pandas has no scalar for) that a
    step would transform: those columns can only be passed through."""
    import pyarrow as pa

    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is not None and (pa.types.is_nested(arrow) or pa.types.is_time(arrow)):
        raise _fail(
            next(iter(steps)),
            f"column {col!r} has type {arrow}, which no step transforms (lists, structs, maps and times are "
            "passed through); profile it with data_profiling, or leave it out",
        )
    temporal = pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
    if arrow is not None:
        temporal = pa.types.is_temporal(arrow)
    for step in ("encode", "impute"):
        if step in steps and temporal:
            raise _fail(
                step,
                f"column {col!r} has type {arrow or dtype}: {step} takes numbers, booleans, text and categories, "
                "not timestamps, dates or durations (their values need not fit Python's datetime); use "
                "date_parts for a timestamp or date, or cast the column first",
            )


def _check_binary(plan: dict[str, dict[str, Any]], schema: Any) -> None:
    """A ``ConfigError`` for ``encode`` / ``impute`` on a binary column: a vocabulary or fill value is stored as
    JSON, which holds text, not bytes (in pandas a binary column looks like text, so the Arrow type decides)."""
    import pyarrow as pa

    t = pa.types
    for col, steps in plan.items():
        if col not in schema.names:
            continue
        arrow = schema.field(col).type
        if t.is_dictionary(arrow):
            arrow = arrow.value_type
        binary = t.is_binary(arrow) or t.is_large_binary(arrow) or t.is_fixed_size_binary(arrow)
        for step in ("encode", "impute"):
            if step in steps and binary:
                raise _fail(
                    step,
                    f"column {col!r} has type {schema.field(col).type}: {step} takes numbers, booleans, text and "
                    "categories, not bytes; decode the column to text first",
                )


def _date_outputs(col: str, series: pd.Series, parts: list[str]) -> list[tuple[str, Any]]:
    import pyarrow as pa

    arrow = getattr(series.dtype, "pyarrow_dtype", None)
    if arrow is not None and pa.types.is_date(arrow):  # a date (any year): its parts as a timestamp's, hour 0
        series = series.astype(pd.ArrowDtype(pa.timestamp("s")))
    dt = series.dt
    out = []
    for part in parts:
        if part == "is_weekend":
            value = (dt.day_of_week >= 5).where(series.notna())
        else:
            value = getattr(dt, _ACCESSORS.get(part, part))
        out.append((f"{col}_{part}", value.astype("Int64")))
    return out
