"""The built-in processors as a static table, and the keyword checks made before any chunk runs.

``BUILTIN`` maps each built-in name to its ``"module:Class"`` path and the parameter names its constructor
declares, so a DAG file can be checked while it is parsed without importing the processor (nor pandas, pyarrow
or scikit-learn, which this module never imports). A test keeps the table equal to the constructors'
signatures. ``check_keywords`` checks keyword arguments against a callable's or a class's real signature; the
registry calls it when the task starts, before the plan. No Airflow imports.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_provider.exceptions import ProcessorParameterError


@dataclass(frozen=True)
class BuiltinProcessor:
    path: str  # "module:Class"
    parameters: tuple[str, ...]  # the constructor's keyword parameters, in signature order


_PKG = "airflow_batch_provider.processors"
BUILTIN: dict[str, BuiltinProcessor] = {
    "passthrough": BuiltinProcessor(f"{_PKG}.builtin:PassthroughProcessor", ()),
    "count": BuiltinProcessor(f"{_PKG}.builtin:CountProcessor", ()),
    "data_quality": BuiltinProcessor(
        f"{_PKG}.data_quality:DataQualityProcessor", ("rules", "quarantine_values")
    ),
    "data_profiling": BuiltinProcessor(
        f"{_PKG}.data_profiling:DataProfilingProcessor",
        (
            "columns",
            "bins",
            "top_k",
            "quantiles",
            "duplicates",
            "exact_quantile_limit",
            "quantile_bits",
            "top_values_capacity",
        ),
    ),
    "feature_engineering": BuiltinProcessor(
        f"{_PKG}.feature_engineering:FeatureEngineeringProcessor",
        (
            "scale",
            "encode",
            "impute",
            "log",
            "bins",
            "date_parts",
            "keep_original",
            "spec",
            "vocabulary_limit",
            "exact_quantile_limit",
            "quantile_bits",
        ),
    ),
    "anomaly_detection": BuiltinProcessor(
        f"{_PKG}.anomaly_detection:AnomalyDetectionProcessor",
        (
            "algorithm",
            "features",
            "sample_size",
            "contamination",
            "threshold",
            "random_state",
            "algorithm_params",
            "memory_limit_mb",
        ),
    ),
}


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(str(name), sorted({str(c) for c in candidates}), n=n, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'retries'?"`` (or ``''`` when nothing is close)."""
    found = close_matches(name, candidates)
    return f"; did you mean {' or '.join(repr(m) for m in found)}?" if found else ""


def declared_parameters(name: str) -> tuple[str, ...] | None:
    """The parameters of the built-in processor ``name``, or None when it is not a built-in."""
    entry = BUILTIN.get(name)
    return None if entry is None else entry.parameters


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins and C callables have none: nothing to check
        return None


def keyword_parameters(obj: Any) -> tuple[frozenset[str], bool] | None:
    """The names ``obj`` accepts as keywords and whether it takes ``**kwargs``; for a function the first two
    positional parameters (batch, context) are not keywords. None when it has no signature."""
    sig = _signature(obj)
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if not inspect.isclass(obj):
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        params = [p for p in params if p not in positional[:2]]
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_keywords(obj: Any, params: Mapping[str, Any], label: str) -> None:
    """Raise :class:`ProcessorParameterError` when ``params`` do not fit ``obj``'s signature: a class is called
    as ``obj(**params)``, a function as ``obj(batch, context, **params)``. Unknown keywords are named with the
    closest parameter; callables taking ``**kwargs`` accept any keyword. Missing required parameters fail too."""
    sig = _signature(obj)
    if sig is None:
        return
    args: tuple[Any, ...] = () if inspect.isclass(obj) else (None, None)
    try:
        sig.bind(*args, **params)
        return
    except TypeError as err:
        problem = str(err)
    accepted, _ = keyword_parameters(obj) or (frozenset(), False)
    unknown = sorted(set(params) - accepted)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        hints = "".join(did_you_mean(k, accepted) for k in unknown[:1])
        problem = f"unknown keyword argument(s) {unknown}{hints}"
    shape = "" if inspect.isclass(obj) else " (a function is called as fn(batch, context, **parameters))"
    raise ProcessorParameterError(
        f"processor {label}: {problem}; it accepts {sorted(accepted) or 'no parameters'}{shape}. Processor "
        "parameters are the operator's other keyword arguments or processor_kwargs={...}"
    )
