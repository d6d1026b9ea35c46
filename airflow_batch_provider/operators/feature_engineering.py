"""``FeatureEngineeringOperator``: fit and apply feature transformations in checkpointed chunks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.operators.batch import BatchJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class FeatureEngineeringOperator(BatchJobOperator):
    """Scale, encode, impute, log-transform, bin and split dates (the ``feature_engineering`` processor).

    A first pass fits exact global statistics, the second writes the transformed rows to the job folder;
    the fitted spec is ``report["spec"]`` in ``{output}/_report.json``. Give ``spec=`` (that file's path,
    e.g. ``fit_task.output["report_uri"]``, or the dict) to transform new data with a saved spec.

    :param scale: ``{column: "standard" | "minmax" | "robust"}`` (templated).
    :param encode: ``{column: "onehot" | "ordinal" | {"method": ..., "top_k": k}}`` (templated).
    :param impute: ``{column: "mean" | "median" | "most_frequent" | {"strategy": "constant", "value": v}}``
        (templated).
    :param log_columns: columns to transform with ``sign(x) * log1p(|x|)`` (templated; the processor's ``log``;
        renamed here because ``log`` is the operator's logger).
    :param bins: ``{column: n_bins | [edges]}`` (templated).
    :param date_parts: ``{column: ["year", "month", "dayofweek", "hour", ...]}`` (templated).
    :param keep_original: keep input columns; results go to ``{col}_transformed`` / ``{col}_code``.
    :param spec: a fitted spec or the path/URI of a saved report/spec JSON: transform only (templated).
    :param vocabulary_limit: most distinct values counted exactly per encoded column.

    Every ``BatchJobOperator`` parameter (``source``, ``config``, ``output_path`` ...) applies.
    """

    processor_class = "feature_engineering"
    template_fields: Sequence[str] = (
        *BatchJobOperator.template_fields,
        "scale",
        "encode",
        "impute",
        "log_columns",
        "bins",
        "date_parts",
        "spec",
    )

    def __init__(
        self,
        *,
        scale: Mapping[str, str] | None = None,
        encode: Mapping[str, Any] | None = None,
        impute: Mapping[str, Any] | None = None,
        log_columns: Sequence[str] | None = None,
        bins: Mapping[str, Any] | None = None,
        date_parts: Mapping[str, Sequence[str]] | None = None,
        keep_original: bool = False,
        spec: Mapping[str, Any] | str | None = None,
        vocabulary_limit: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.encode = encode
        self.impute = impute
        self.log_columns = log_columns
        self.bins = bins
        self.date_parts = date_parts
        self.keep_original = keep_original
        self.spec = spec
        self.vocabulary_limit = vocabulary_limit

    def process_kwargs(self, context: Context) -> dict[str, Any]:
        params = super().process_kwargs(context)
        return {
            **params,
            "scale": self.scale,
            "encode": self.encode,
            "impute": self.impute,
            # the processor's own name (``log=``, a processor keyword) counts when log_columns is not given
            "log": list(self.log_columns) if self.log_columns is not None else params.get("log"),
            "bins": self.bins,
            "date_parts": self.date_parts,
            "keep_original": self.keep_original,
            "spec": str(self.spec)
            if self.spec is not None and not isinstance(self.spec, Mapping)
            else self.spec,
            "vocabulary_limit": self.vocabulary_limit,
        }
