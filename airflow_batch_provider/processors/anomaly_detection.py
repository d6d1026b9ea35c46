"""Anomaly detection: fit on the engine's deterministic sample, then score every chunk.

Two phases. ``fit`` receives the engine's sample of ``sample_size`` rows, chosen by position with a fixed seed
and independent of chunking (with ``sample_size`` >= the row count it is the whole dataset in source order, so
the scores equal scikit-learn fitted on the whole table). ``process`` scores each chunk row by row, so the
output does not depend on batch size, concurrency or resumes.

Algorithms (``algorithm``):

- ``"isolation_forest"``: :class:`sklearn.ensemble.IsolationForest` (``random_state`` fixed, default 0).
- ``"local_outlier_factor"``: :class:`sklearn.neighbors.LocalOutlierFactor` with ``novelty=True``.
- ``"robust_zscore"``: per feature the modified z-score ``0.6745 * (x - median) / MAD`` (Iglewicz and
  Hoaglin) with median and MAD from the fit sample; the row score is the largest ``|z|`` over the features.
  A feature with ``MAD == 0`` uses ``1.253314 * mean absolute deviation`` instead; when that is 0 too (a
  constant feature) any value other than the median scores ``inf``.
- any scikit-learn-compatible outlier detector by import path, ``"package.module:Class"`` (fixed in DAG
  code, never templated). It needs ``fit`` and ``score_samples`` (or ``decision_function``).

``anomaly_score`` is "higher = more anomalous": ``-score_samples(X)`` for scikit-learn detectors (for
isolation forest the paper's score in (0, 1]; for LOF the local outlier factor), the largest ``|z|`` for
``robust_zscore``. ``is_anomaly`` is ``anomaly_score > threshold``, where the threshold is:

- ``threshold=`` when given (on the ``anomaly_score`` scale);
- else with ``contamination=`` the detector's own ``-offset_`` (scikit-learn's percentile of the fit sample's
  scores, so ``is_anomaly`` equals scikit-learn's ``predict(X) == -1``), or for detectors without ``offset_``
  and for ``robust_zscore`` ``-percentile(-scores of the fit sample, 100 * contamination)``;
- else the algorithm's default: ``-offset_`` of ``contamination="auto"`` (0.5 for isolation forest, 1.5 for
  LOF), 3.5 for ``robust_zscore``. Custom detectors without ``offset_`` need ``contamination`` or ``threshold``.

Giving both ``contamination`` and ``threshold`` is a ``ConfigError``.

Missing values: NaN and +/-inf in a feature are replaced by that feature's median in the fit sample (0.0 when
the feature is all null in the sample); the medians are stored in the state and reported, with per-feature
counts of imputed values.

Memory: the fit needs about ``rows * features * 8 bytes * 4`` (the matrix, scikit-learn's validated copy,
the stored state, model structures). When that exceeds ``memory_limit_mb`` the job is refused before the
model is fitted (and before the sample is read, when ``sample_size * features`` alone is too large).

State (``get_state``), JSON only, never pickle: the parameters, the features, the medians, the threshold and
the imputed fit sample as base64 little-endian float64 (robust z-score stores its medians and scales
instead). ``set_state`` refits the detector on that exact matrix with the same ``random_state``, which
rebuilds it bit for bit (scikit-learn's fits are deterministic given the data and the seed).

Report (``finalize``):

======================  ===========================================================================
key                     meaning
======================  ===========================================================================
``format_version``      ``1``
``algorithm``           the algorithm name or import path
``rows``                rows scored; ``anomalies`` rows with ``is_anomaly``; ``anomaly_ratio``
``threshold``           the threshold on ``anomaly_score``; ``threshold_source``: ``"threshold"``,
                        ``"contamination"`` or ``"default"``; ``contamination`` as given
``features``            the feature columns used, in order
``fit_rows``            rows of the fit sample
``medians``             feature -> median used for imputation (null when all null in the sample)
``imputed_values``      feature -> number of scored values that were NaN/inf and imputed
``model_params``        the detector's parameters (``get_params()``), or the robust z-score's
                        ``center`` and ``scale`` per feature
``score``               a description of ``anomaly_score``
======================  ===========================================================================

No Airflow imports.
"""

from __future__ import annotations

import base64
import inspect
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult, check_columns
from airflow_batch_provider.processors.frames import arrow_to_pandas, arrow_to_pandas_column, kind_of_frame
from airflow_batch_provider.processors.registry import import_object

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
BUILTIN = ("isolation_forest", "local_outlier_factor", "robust_zscore")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
MEMORY_OVERHEAD = 4.0
ZSCORE_CONSTANT = 0.6745
MEANAD_CONSTANT = 1.253314
DEFAULT_ZSCORE_THRESHOLD = 3.5
SCORE_DOC = "higher = more anomalous: -score_samples(X) for scikit-learn detectors, max |modified z| for robust_zscore"


def _encode_matrix(x: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(x, dtype="<f8").tobytes()
    return {"shape": list(x.shape), "data": base64.b64encode(data).decode()}


def _decode_matrix(state: Mapping[str, Any]) -> np.ndarray:
    flat = np.frombuffer(base64.b64decode(state["data"]), dtype="<f8").astype(np.float64)
    return flat.reshape(state["shape"])


def _one_thread() -> Any:
    """Run scikit-learn single-threaded: chunk workers are forked processes, and GNU OpenMP deadlocks in a
    child forked after the parent ran a multi-threaded OpenMP region (e.g. LOF's brute-force neighbours).
    Parallelism comes from concurrent chunks instead."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _import_class(path: str) -> Any:
    try:
        obj = import_object(path)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"algorithm: cannot import {path!r} ({err}); use one of {BUILTIN} or an importable "
            "'package.module:Class' outlier detector"
        ) from err
    if not inspect.isclass(obj) or not hasattr(obj, "fit"):
        raise ConfigError(f"algorithm: {path!r} is not an estimator class with fit()")
    if not (hasattr(obj, "score_samples") or hasattr(obj, "decision_function")):
        raise ConfigError(f"algorithm: {path!r} has neither score_samples nor decision_function")
    return obj


class AnomalyDetectionProcessor(BaseProcessor):
    """Score every row for anomalies with a detector fitted on a deterministic sample.

    :param algorithm: ``"isolation_forest"`` (default), ``"local_outlier_factor"``, ``"robust_zscore"`` or an
        import path ``"package.module:Class"`` of a scikit-learn-compatible outlier detector.
    :param features: numeric columns to use (default: every numeric, non-boolean column).
    :param sample_size: rows of the fit sample (default 100,000; at least the row count = the whole table).
    :param contamination: expected share of anomalies in (0, 0.5]; sets the threshold from the fit sample.
    :param threshold: an explicit threshold on ``anomaly_score`` (not together with ``contamination``).
    :param random_state: the detector's seed (default 0).
    :param algorithm_params: extra constructor parameters of the detector (e.g. ``{"n_estimators": 200}``).
    :param memory_limit_mb: the memory budget checked before fitting (the operator passes ``BatchConfig``'s).
    """

    name = "anomaly_detection"
    #: 2: isolation forest features clipped to float32's range (decimal256 / huge floats; fail or inf before);
    #: 3: chunks as Arrow tables (the other columns pass through unconverted)
    version = "3"
    chunk_invariant = True
    #: chunks arrive as Arrow tables: only the feature columns become numpy, the rest pass through as they are
    input_format = "arrow"

    def __init__(
        self,
        algorithm: str = "isolation_forest",
        features: Sequence[str] | None = None,
        sample_size: int = 100_000,
        contamination: float | None = None,
        threshold: float | None = None,
        random_state: int = 0,
        algorithm_params: Mapping[str, Any] | None = None,
        memory_limit_mb: int = 2048,
    ) -> None:
        self.algorithm = algorithm
        self.features = features
        self.sample_size = sample_size
        self.contamination = contamination
        self.threshold = threshold
        self.random_state = random_state
        self.algorithm_params = algorithm_params
        self.memory_limit_mb = memory_limit_mb

    # parameters ----------------------------------------------------------------------------------------------
    @property
    def fit_sample_size(self) -> int:  # type: ignore[override]
        """Read by the engine before it samples: parameters are validated (and memory checked) first."""
        self._validate()
        return int(self.sample_size)

    def fit_columns(self, schema: Any) -> list[str] | None:
        """The fit sample holds only the feature columns (the engine projects the source); with
        ``features=None`` the numeric, non-boolean ones, as :meth:`_select_features` picks them."""
        if self.features is not None:
            if isinstance(self.features, str) or not isinstance(self.features, Sequence):
                return None
            return [str(f) for f in self.features]
        empty = arrow_to_pandas(schema.empty_table())
        return [
            str(c)
            for c in empty.columns
            if pd.api.types.is_numeric_dtype(empty[c].dtype)
            and not pd.api.types.is_bool_dtype(empty[c].dtype)
        ] or None

    def validate(self, schema: Any) -> None:
        """The parameters, and the ``features`` exist in the source and are numeric."""
        self._validate()
        if self.features is not None:
            check_columns(self.name, "features", self.features, schema)
        self._select_features(arrow_to_pandas(schema.empty_table()))  # numeric columns, at least one

    def _validate(self) -> None:
        if not isinstance(self.algorithm, str) or not self.algorithm:
            raise ConfigError(f"algorithm must be one of {BUILTIN} or an import path, got {self.algorithm!r}")
        if self.algorithm not in BUILTIN:
            if "." not in self.algorithm and ":" not in self.algorithm:
                raise ConfigError(
                    f"algorithm: unknown {self.algorithm!r}; use one of {BUILTIN} or an import path "
                    "'package.module:Class'"
                )
            _import_class(self.algorithm)
        for key in ("sample_size", "random_state", "memory_limit_mb"):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if key != "random_state" else 0)
            ):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if self.sample_size < 2:
            raise ConfigError(f"sample_size must be at least 2, got {self.sample_size!r}")
        self._validate_threshold()
        if self.algorithm_params is not None and not isinstance(self.algorithm_params, Mapping):
            raise ConfigError(
                f"algorithm_params must be a dict of constructor parameters, got {self.algorithm_params!r}"
            )
        if self.features is not None and (
            isinstance(self.features, str) or not isinstance(self.features, Sequence) or not self.features
        ):
            raise ConfigError(
                f"features must be a non-empty list of column names (or None for all numeric), "
                f"got {self.features!r}"
            )
        # before the engine reads the sample; without features this is a lower bound (one feature)
        self._check_memory(self.sample_size, len(self.features or [None]), "sample_size")

    def _validate_threshold(self) -> None:
        c, t = self.contamination, self.threshold
        if c is not None and t is not None:
            raise ConfigError(
                "give either contamination (share of anomalies, sets the threshold from the fit "
                "sample) or threshold (on anomaly_score), not both"
            )
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 0.5):
            raise ConfigError(f"contamination must be a number in (0, 0.5], got {c!r}")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t)):
            raise ConfigError(f"threshold must be a finite number on the anomaly_score scale, got {t!r}")

    def _check_memory(self, rows: int, features: int, what: str) -> None:
        need_mb = rows * max(1, features) * 8 * MEMORY_OVERHEAD / 2**20
        if need_mb > self.memory_limit_mb:
            fits = int(self.memory_limit_mb * 2**20 / (max(1, features) * 8 * MEMORY_OVERHEAD))
            raise ConfigError(
                f"anomaly_detection: fitting on {rows:,} {what} rows x {features} feature(s) needs about "
                f"{need_mb:,.0f} MB, over memory_limit_mb={self.memory_limit_mb}; lower sample_size to at most "
                f"{fits:,}, use fewer features, or raise memory_limit_mb"
            )

    def identity(self) -> dict[str, Any]:
        """The memory budget does not change results, so it stays out of the job fingerprint (resumes still match)."""
        ident = super().identity()
        ident["params"] = {k: v for k, v in ident["params"].items() if k != "memory_limit_mb"}
        return ident

    # fit -----------------------------------------------------------------------------------------------------
    def _select_features(self, sample: pd.DataFrame) -> list[str]:
        names = {str(c): c for c in sample.columns}
        if self.features is None:
            chosen = [
                str(c)
                for c in sample.columns
                if pd.api.types.is_numeric_dtype(sample[c].dtype)
                and not pd.api.types.is_bool_dtype(sample[c].dtype)
            ]
            if not chosen:
                raise ConfigError(
                    f"anomaly_detection: features: the source has no numeric column; columns: {list(names)}"
                )
            return chosen
        check_columns(self.name, "features", self.features, list(names))
        bad = {
            str(f): str(sample[names[str(f)]].dtype)
            for f in self.features
            if not pd.api.types.is_numeric_dtype(sample[names[str(f)]].dtype)
            or pd.api.types.is_bool_dtype(sample[names[str(f)]].dtype)
        }
        if bad:
            listed = ", ".join(f"{c!r} ({t})" for c, t in bad.items())
            raise ConfigError(
                f"anomaly_detection: features: column(s) {listed} are not numeric; give numeric columns only "
                "(lists, structs and maps are passed through with the rows, never scored)"
            )
        return [str(f) for f in self.features]

    def _matrix(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        """The features (of a pandas DataFrame or an Arrow table) as float64 with NaN/inf replaced by the
        medians; and the per-feature imputed counts."""
        if kind_of_frame(frame) == "arrow":
            x = np.empty((frame.num_rows, len(self.features_)), dtype=np.float64)
            for j, f in enumerate(self.features_):
                x[:, j] = _arrow_feature(frame.column(f))
        else:
            names = {str(c): c for c in frame.columns}
            x = np.empty((len(frame), len(self.features_)), dtype=np.float64)
            for j, f in enumerate(self.features_):
                x[:, j] = frame[names[f]].to_numpy(dtype=np.float64, na_value=np.nan)
        missing = ~np.isfinite(x)
        if missing.any():
            x[missing] = np.take(self.medians_, np.nonzero(missing)[1])
        if self.algorithm == "isolation_forest":  # its trees split in float32: beyond +-3.4e38 a value is its
            np.clip(
                x, -_FLOAT32_MAX, _FLOAT32_MAX, out=x
            )  # edge (older scikit-learn refused it as "too large")
        return x, missing.sum(axis=0)

    def fit(self, sample: pd.DataFrame) -> None:
        self._validate()
        self.features_ = self._select_features(sample)
        self._check_memory(len(sample), len(self.features_), "sample")
        raw = np.empty((len(sample), len(self.features_)), dtype=np.float64)
        for j, f in enumerate(self.features_):
            raw[:, j] = sample[{str(c): c for c in sample.columns}[f]].to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        raw[~np.isfinite(raw)] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN feature: median NaN, imputed with 0.0
            medians = np.nanmedian(raw, axis=0) if len(raw) else np.full(len(self.features_), np.nan)
        self.all_null_ = [f for f, m in zip(self.features_, medians, strict=False) if np.isnan(m)]
        self.medians_ = np.where(np.isnan(medians), 0.0, medians)
        x, _ = self._matrix(sample)
        self._fit_matrix(x)
        log.info(
            "anomaly_detection: fitted %s on %d rows x %d features; threshold %s",
            self.algorithm,
            len(x),
            len(self.features_),
            self.threshold_,
        )

    def _fit_matrix(self, x: np.ndarray, threshold: float | None = None) -> None:
        self.fit_rows_ = len(x)
        self.sample_ = x
        if not len(x):
            self.model_, self.threshold_ = None, threshold
            return
        if self.algorithm == "robust_zscore":
            self._fit_robust(x)
        else:
            with _one_thread():
                self.model_ = self._new_estimator().fit(x)
        self.threshold_ = threshold if threshold is not None else self._threshold_from_fit(x)

    def _new_estimator(self) -> Any:
        params = dict(self.algorithm_params or {})
        if self.algorithm == "isolation_forest":
            from sklearn.ensemble import IsolationForest as cls
        elif self.algorithm == "local_outlier_factor":
            from sklearn.neighbors import LocalOutlierFactor as cls

            params["novelty"] = True
        else:
            cls = _import_class(self.algorithm)
        accepted = inspect.signature(cls.__init__).parameters
        if "random_state" in accepted:
            params.setdefault("random_state", self.random_state)
        if "contamination" in accepted and self.contamination is not None:
            params["contamination"] = self.contamination
        try:
            return cls(**params)
        except TypeError as err:
            raise ConfigError(f"algorithm_params: {cls.__name__} rejects {sorted(params)}: {err}") from err

    def _fit_robust(self, x: np.ndarray) -> None:
        center = np.median(x, axis=0)
        dev = np.abs(x - center)
        mad = np.median(dev, axis=0)
        scale = np.where(mad > 0, mad / ZSCORE_CONSTANT, MEANAD_CONSTANT * dev.mean(axis=0))
        self.model_ = {"center": center, "scale": scale}

    def _threshold_from_fit(self, x: np.ndarray) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        offset = getattr(self.model_, "offset_", None)
        if offset is not None and hasattr(self.model_, "score_samples"):
            return float(-offset)
        if self.contamination is not None:
            return float(-np.percentile(-self._scores(x), 100.0 * self.contamination))
        if self.algorithm == "robust_zscore":
            return DEFAULT_ZSCORE_THRESHOLD
        raise ConfigError(f"algorithm {self.algorithm!r} has no offset_; give contamination or threshold")

    def _threshold_source(self) -> str:
        if self.threshold is not None:
            return "threshold"
        return "contamination" if self.contamination is not None else "default"

    # scoring -------------------------------------------------------------------------------------------------
    def _scores(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.model_, dict):
            center, scale = self.model_["center"], self.model_["scale"]
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.abs(x - center) / scale
            z[(x == center) & (scale == 0)] = 0.0
            return z.max(axis=1) if z.shape[1] else np.zeros(len(x))
        score = getattr(self.model_, "score_samples", None) or self.model_.decision_function  # type: ignore[union-attr]
        with _one_thread():
            return -np.asarray(score(x), dtype=np.float64)

    def process(self, chunk: pd.DataFrame, ctx: ChunkContext) -> ChunkResult:
        if not hasattr(self, "features_"):
            raise RuntimeError(
                "anomaly_detection: process() before fit(); the engine fits on its sample first"
            )
        x, imputed = self._matrix(chunk)
        scores = self._scores(x) if len(x) else np.empty(0)
        flags = scores > self.threshold_  # type: ignore[operator]  # set by fit / set_state
        if kind_of_frame(chunk) == "arrow":  # the engine's chunks: the feature columns alone were converted
            rows = _with_column(_with_column(chunk, "anomaly_score", scores), "is_anomaly", flags)
        else:
            rows = chunk.assign(anomaly_score=scores, is_anomaly=flags)
        state = {"rows": len(x), "anomalies": int(flags.sum()), "imputed": [int(v) for v in imputed]}
        return ChunkResult(rows=rows, state=state)

    # state ---------------------------------------------------------------------------------------------------
    def get_state(self) -> Any:
        if not hasattr(self, "features_"):
            return None
        state: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "identity": self.get_params(),
            "features": self.features_,
            "medians": [float(m) for m in self.medians_],
            "all_null": self.all_null_,
            "threshold": self.threshold_,
            "fit_rows": self.fit_rows_,
        }
        if isinstance(self.model_, dict):
            state["robust"] = {k: [float(v) for v in arr] for k, arr in self.model_.items()}
        else:
            state["sample"] = _encode_matrix(self.sample_)
        return state

    def set_state(self, state: Any) -> None:
        if not state:
            return
        self._validate()
        self.features_ = list(state["features"])
        self.medians_ = np.asarray(state["medians"], dtype=np.float64)
        self.all_null_ = list(state["all_null"])
        self.fit_rows_ = int(state["fit_rows"])
        threshold = state["threshold"]
        if "robust" in state:
            self.model_ = {k: np.asarray(v, dtype=np.float64) for k, v in state["robust"].items()}
            self.sample_, self.threshold_ = None, threshold  # type: ignore[assignment]
            return
        x = _decode_matrix(state["sample"])
        self._fit_matrix(x, threshold=threshold)

    # report --------------------------------------------------------------------------------------------------
    def merge(self, states: list[Any]) -> Any:
        out: dict[str, Any] = {
            "rows": 0,
            "anomalies": 0,
            "imputed": [0] * len(getattr(self, "features_", [])),
        }
        for s in states:
            if not s:
                continue
            out["rows"] += s["rows"]
            out["anomalies"] += s["anomalies"]
            out["imputed"] = [a + b for a, b in zip(out["imputed"], s["imputed"], strict=False)]
        return out

    def finalize(self, state: Any) -> dict[str, Any]:
        state = state or {"rows": 0, "anomalies": 0, "imputed": []}
        features = list(getattr(self, "features_", []))
        rows = int(state["rows"])
        return {
            "format_version": FORMAT_VERSION,
            "algorithm": self.algorithm,
            "rows": rows,
            "anomalies": int(state["anomalies"]),
            "anomaly_ratio": state["anomalies"] / rows if rows else None,
            "threshold": getattr(self, "threshold_", None),
            "threshold_source": self._threshold_source(),
            "contamination": self.contamination,
            "features": features,
            "fit_rows": getattr(self, "fit_rows_", 0),
            "medians": {
                f: (None if f in self.all_null_ else float(m))
                for f, m in zip(features, self.medians_, strict=False)
            }
            if features
            else {},
            "imputed_values": dict(zip(features, state["imputed"], strict=False)),
            "model_params": self._model_params(),
            "score": SCORE_DOC,
        }

    def _model_params(self) -> dict[str, Any]:
        model = getattr(self, "model_", None)
        if isinstance(model, dict):
            return {
                k: dict(zip(self.features_, (float(v) for v in arr), strict=False))
                for k, arr in model.items()
            }
        if model is not None and hasattr(model, "get_params"):
            return {
                k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                for k, v in model.get_params().items()
            }
        return {}


def _arrow_feature(col: Any) -> np.ndarray:
    """One feature column as float64, nulls as NaN: integers and floats cast by Arrow; other numeric types
    (decimals, ...) through pandas, as the fit sample converted them."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_integer(t) or (pa.types.is_floating(t) and not pa.types.is_float16(t)):
        # unsafe: integers past 2**53 round to the nearest float64, as numpy and pandas convert them
        return np.asarray(col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)
    return arrow_to_pandas_column(col).to_numpy(dtype=np.float64, na_value=np.nan)


def _with_column(table: Any, name: str, values: np.ndarray) -> Any:
    """``table`` with ``name`` set to ``values`` (replaced in place when the source has such a column, as
    pandas' ``assign`` does; else appended)."""
    import pyarrow as pa

    array = pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)
