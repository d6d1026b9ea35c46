"""HTML reports of ``data_profiling`` and ``data_quality`` jobs (``_report.html`` next to ``_report.json``).

:func:`write_html_report` writes one for a job folder; the operators call it when a job ends (with the
comparison against the previous run of the same task). :mod:`.render` builds the page from a report's
aggregates. No Airflow imports.
"""

from __future__ import annotations

from airflow_batch_provider.reports.publish import REPORT_HTML, report_kind, write_html_report
from airflow_batch_provider.reports.render import render_profile, render_quality

__all__ = ["REPORT_HTML", "render_profile", "render_quality", "report_kind", "write_html_report"]
