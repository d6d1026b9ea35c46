"""``DataProfilingOperator``: profile a large source in checkpointed chunks (the ``data_profiling`` processor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.operators.batch import BatchJobOperator

# the processor (and pandas) load when the task runs, not when the DAG file is parsed
DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

if TYPE_CHECKING:
    from airflow.sdk import Context


class DataProfilingOperator(BatchJobOperator):
    """Profile every column of ``source``; the report is ``{output}/_report.json`` and a compact summary is
    returned under the ``profile`` XCom key (see ``docs/processors/data_profiling.md`` for the schema).

    :param columns: columns to profile (default all; templated).
    :param bins: histogram bins of numeric columns.
    :param top_k: top values reported for text/categorical/boolean columns.
    :param quantiles: quantile levels (report keys ``repr(float(q))``).
    :param duplicates: count duplicate rows.
    :param exact_quantile_limit: distinct values per column up to which quantiles are exact.
    :param quantile_bits: relative quantile error ``2**-quantile_bits`` above that limit.
    :param top_values_capacity: distinct values per column counted exactly for top values.

    Every ``BatchJobOperator`` parameter (``source``, ``config``, ``output_path`` ...) applies.
    """

    processor_class = "data_profiling"
    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "columns")

    def __init__(
        self,
        *,
        columns: Sequence[str] | None = None,
        bins: int = 20,
        top_k: int = 10,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        duplicates: bool = True,
        exact_quantile_limit: int = 10_000,
        quantile_bits: int = 10,
        top_values_capacity: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.bins = bins
        self.top_k = top_k
        self.quantiles = quantiles
        self.duplicates = duplicates
        self.exact_quantile_limit = exact_quantile_limit
        self.quantile_bits = quantile_bits
        self.top_values_capacity = top_values_capacity

    def process_kwargs(self, context: Context) -> dict[str, Any]:
        return {
            **super().process_kwargs(context),
            "columns": list(self.columns) if self.columns is not None else None,
            "bins": self.bins,
            "top_k": self.top_k,
            "quantiles": list(self.quantiles),
            "duplicates": self.duplicates,
            "exact_quantile_limit": self.exact_quantile_limit,
            "quantile_bits": self.quantile_bits,
            "top_values_capacity": self.top_values_capacity,
        }

    def finish_job(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """Add the ``profile`` XCom key (the report's compact summary); a single task and a sharded job's merge
        both run it (``BatchJobOperator.finish_job``)."""
        from airflow_batch_provider.processors.data_profiling import compact_summary

        summary = super().finish_job(context, summary)
        summary["profile"] = compact_summary(self.full_report(summary))
        return summary
