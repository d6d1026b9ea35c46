"""``AnomalyDetectionOperator``: fit an outlier detector on a deterministic sample, score every row in chunks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_batch_provider.operators.batch import BatchJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def _number(name: str, value: Any, kind: type) -> Any:
    """A templated number arrives as text: ``"0.05"`` -> 0.05; ``""``/``"None"`` -> None."""
    from airflow_batch_provider.exceptions import ConfigError

    if value is None or isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("", "none", "null"):
        return None
    try:
        return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}") from None


class AnomalyDetectionOperator(BatchJobOperator):
    """Run :class:`~airflow_batch_provider.processors.anomaly_detection.AnomalyDetectionProcessor` as a job.

    Output rows are the source rows plus ``anomaly_score`` (higher = more anomalous) and ``is_anomaly``.
    Details, the threshold rules and the report keys: ``docs/processors/anomaly_detection.md``.

    :param algorithm: ``"isolation_forest"``, ``"local_outlier_factor"``, ``"robust_zscore"`` or an import
        path of a scikit-learn-compatible detector. Not templated (it names code).
    :param features: numeric columns (default all numeric). Templated.
    :param sample_size: rows of the fit sample (templated).
    :param contamination: share of anomalies; sets the threshold from the fit sample (templated).
    :param threshold: an explicit threshold on ``anomaly_score`` (templated; not with ``contamination``).
    :param random_state: the detector's seed.
    :param algorithm_params: extra constructor parameters of the detector. Not templated.
    :param kwargs: everything ``BatchJobOperator`` takes. ``BatchConfig.memory_limit_mb`` bounds the fit.
    """

    template_fields: Sequence[str] = (
        *BatchJobOperator.template_fields,
        "features",
        "sample_size",
        "contamination",
        "threshold",
    )
    ui_color = "#fee2e2"
    # a registered name, not the class: DAG parsing does not import pandas or scikit-learn
    processor_class: ClassVar[Any] = "anomaly_detection"

    def __init__(
        self,
        *,
        algorithm: str = "isolation_forest",
        features: Sequence[str] | None = None,
        sample_size: int | str = 100_000,
        contamination: float | str | None = None,
        threshold: float | str | None = None,
        random_state: int = 0,
        algorithm_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.algorithm = algorithm
        self.features = features
        self.sample_size = sample_size
        self.contamination = contamination
        self.threshold = threshold
        self.random_state = random_state
        self.algorithm_params = algorithm_params

    def process_kwargs(self, context: Context) -> dict[str, Any]:
        """The processor's parameters with templated numbers parsed; validated before any row is read."""
        from airflow_batch_provider.processors.anomaly_detection import AnomalyDetectionProcessor

        params = {
            **super().process_kwargs(context),
            "algorithm": self.algorithm,
            "features": list(self.features) if self.features else None,
            "sample_size": _number("sample_size", self.sample_size, int),
            "contamination": _number("contamination", self.contamination, float),
            "threshold": _number("threshold", self.threshold, float),
            "random_state": self.random_state,
            "algorithm_params": dict(self.algorithm_params) if self.algorithm_params else None,
            # an explicit processor parameter wins over the config's limit
            "memory_limit_mb": self.processor_kwargs.get("memory_limit_mb")
            or self.resolve_config().memory_limit_mb
            or 2048,
        }
        AnomalyDetectionProcessor(**params)._validate()
        return params

    def finish_job(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """Log the anomalies found; a single task and a sharded job's merge both run it."""
        summary = super().finish_job(context, summary)
        report = self.full_report(summary)
        self.log.info(
            "anomaly detection: %s anomalies in %s rows (threshold %s, %s features)",
            report.get("anomalies"),
            report.get("rows"),
            report.get("threshold"),
            len(report.get("features") or []),
        )
        return summary
