"""Extra links of every batch operator: "Report", "Output", "Batch job".

Each points at a page of the provider's plugin (``/batch-provider/jobs/{dag_id}/{run_id}/{task_id}/{map_index}/
{page}``, ids percent-encoded), which checks the viewer's Airflow token and that they may read the DAG's runs,
then finds the job folder from those ids (``plugins/jobs.py``): a link never carries a path. Airflow 3 computes
operator links in the worker when the task ends (success or failure) and stores them as XCom, so the URL is
built from the task instance key and ``[api] base_url``'s path alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

URL_PREFIX = "/batch-provider"  # the plugin's mount point (plugins/dashboard.py)
PAGES = ("report", "output", "job")


def _base_path() -> str:
    """The path part of ``[api] base_url`` (Airflow served under a prefix), without a trailing slash."""
    try:
        from airflow.sdk import conf

        base = conf.get("api", "base_url", fallback="") or ""
    except Exception:  # noqa: BLE001 - a link must never fail the task
        base = ""
    return urlsplit(base).path.rstrip("/")


def _quote(value: Any) -> str:
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text  # a browser would resolve them


def job_url(dag_id: str, run_id: str, task_id: str, map_index: int, page: str) -> str:
    """The plugin URL of one page of a task instance's batch job."""
    if page not in PAGES:
        raise ValueError(f"page must be one of {PAGES}, not {page!r}")
    ids = "/".join(_quote(v) for v in (dag_id, run_id, task_id, int(map_index)))
    return f"{_base_path()}{URL_PREFIX}/jobs/{ids}/{page}"


class _BatchJobLink(BaseOperatorLink):
    page: ClassVar[str] = "job"
    label: ClassVar[str] = "Batch job"

    @property
    def name(self) -> str:
        return self.label

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        map_index = getattr(ti_key, "map_index", -1)
        return job_url(
            ti_key.dag_id, ti_key.run_id, ti_key.task_id, -1 if map_index is None else map_index, self.page
        )


class BatchReportLink(_BatchJobLink):
    """The job's HTML report (profiling and quality jobs; other processors show their JSON report)."""

    page = "report"
    label = "Report"


class BatchOutputLink(_BatchJobLink):
    """The job's committed output: location, parts, quarantine, how to read it."""

    page = "output"
    label = "Output"


class BatchJobLink(_BatchJobLink):
    """The job's state: checkpoint, generation, counters."""

    page = "job"
    label = "Batch job"


LINKS = (BatchReportLink(), BatchOutputLink(), BatchJobLink())
