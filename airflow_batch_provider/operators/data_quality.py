"""``DataQualityOperator``: check declarative rules over a source in chunks; quarantine the failing rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class DataQualityFailure(BatchInputFailure):
    """The data broke rules under ``fail_on``: the task fails without retries (retrying cannot fix the data)."""


class DataQualityOperator(BatchJobOperator):
    """Run :class:`~airflow_batch_provider.processors.data_quality.DataQualityProcessor` as a checkpointed job.

    The job's output parts are the quarantine Parquet: every failing row with ``_source_file_index``,
    ``_source_row`` and ``_failed_rules``. The report (rule schema and keys: ``docs/processors/data_quality.md``)
    is in the returned summary's ``report`` and in ``{output_uri}/_report.json``.

    :param rules: the rule dicts. Not templated: custom expressions are code fixed in the DAG file. None (the
        default): the default assessment, rules derived from the data (completeness, duplicate rows, type
        consistency, outliers; ``docs/processors/data_quality.md``), listed in the report's ``assessment``.
    :param quarantine_values: False writes only row positions and failed rule names (sensitive data).
    :param fail_on: ``None`` (default: the task succeeds and reports), ``"error"`` / ``"warning"`` (fail when a
        rule of at least that severity failed), or a minimum overall score in [0, 1]. Templated; checked after
        the job, so the report and quarantine are written either way. Failing raises :class:`DataQualityFailure`.
    :param kwargs: everything ``BatchJobOperator`` takes (``source``, ``config``, ``output_path`` ...).
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "fail_on")
    ui_color = "#dcfce7"
    # an import path, not the class: DAG parsing does not import pandas
    processor_class: ClassVar[Any] = "data_quality"  # a registered name: DAG parsing imports no pandas

    def __init__(
        self,
        *,
        rules: Sequence[Mapping[str, Any]] | None = None,
        quarantine_values: bool = True,
        fail_on: str | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rules = rules
        self.quarantine_values = quarantine_values
        self.fail_on = fail_on

    def process_kwargs(self, context: Context) -> dict[str, Any]:
        """Validate rules and ``fail_on`` before any row is read (a ``ConfigError`` fails the task at once)."""
        from airflow_batch_provider.processors.data_quality import DataQualityProcessor, parse_fail_on

        parse_fail_on(self.fail_on)
        params = {
            **super().process_kwargs(context),
            "rules": self.rules,
            "quarantine_values": self.quarantine_values,
        }
        DataQualityProcessor(params["rules"], params["quarantine_values"])._validate()
        return params

    def job_kwargs(self) -> dict[str, Any]:
        """``_SUCCESS`` only when ``fail_on`` passes: a task failed on its data leaves report and quarantine, no
        success marker (checked on the final report, before the engine writes the marker)."""
        from airflow_batch_provider.processors.data_quality import fail_on_message

        fail_on = self.fail_on
        return {"success_marker": lambda report: not fail_on_message(report or {}, fail_on)}

    def finish_job(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """Log the outcome (a WARNING naming each failed rule, of any severity), then apply ``fail_on``; a single
        task and a sharded job's merge both run it (``BatchJobOperator.finish_job``)."""
        from airflow_batch_provider.processors.data_quality import fail_on_message

        summary = super().finish_job(context, summary)
        report = self.full_report(summary)
        failed = [e for e in report.get("rules", []) if not e.get("passed", True)]
        # a failed rule (of any severity, warning included) is a WARNING line naming it; a clean run is INFO
        self.log.log(
            logging.WARNING if failed else logging.INFO,
            "data quality: score %s, %d of %d rules failed%s, %d of %d rows quarantined",
            report.get("score"),
            report.get("rules_failed", 0),
            len(report.get("rules", [])),
            "".join(
                f"; {e.get('severity')} rule {e.get('name')}: {e.get('failed')}/{e.get('evaluated')} failed"
                for e in failed[:20]
            ),
            report.get("rows_failed", 0),
            report.get("rows", 0),
        )
        message = fail_on_message(report, self.fail_on)
        if message:
            raise DataQualityFailure(f"{message}; quarantine and report in {summary['output_uri']}")
        return summary
