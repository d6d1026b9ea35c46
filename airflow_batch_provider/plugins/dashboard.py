"""Airflow UI plugin: the batch monitoring dashboard at ``/batch-provider`` (entry point ``airflow.plugins``),
and the pages of the operators' extra links under ``/batch-provider/jobs/`` (:mod:`.jobs`, per-DAG authorization).

Airflow adds no authentication to plugin FastAPI apps, so the JSON endpoints validate the caller's Airflow
API token themselves (``Authorization: Bearer <jwt>`` or the UI's ``_token`` cookie, checked by the
configured auth manager) and require access to the Jobs view. ``/api/jobs`` (running and finished jobs) and
``/api/jobs/{job_id}`` (one job's page data) also filter per DAG: a user sees the jobs of the DAGs the auth
manager lets them read (``get_authorized_dag_ids``; a job run outside Airflow has no DAG and is shown to
every Jobs viewer). The HTML pages (:mod:`.pages`) are static shells with no data; their scripts fetch the
JSON with the browser's credentials.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from airflow_batch_provider.plugins.pages import DASHBOARD_HTML, JOB_HTML, PAGE_HEADERS

URL_PREFIX = "/batch-provider"
TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


async def require_viewer(request: Request) -> Any:
    """The Airflow user behind the request's JWT; 401 without a token, 403 when invalid or not allowed."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
    user = await resolve_user_from_token(token)
    if not get_auth_manager().is_authorized_view(access_view=AccessView.JOBS, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to view jobs")
    return user


Viewer = Annotated[Any, Depends(require_viewer)]


def _base_path() -> Any:
    """``{[batch_provider] base_path}`` opened through ``[batch_provider] conn_id``, as the jobs write it."""
    from airflow_batch_provider.operators.conf import base_path, conn_id, storage_target

    return storage_target(base_path(), conn_id())


def readable_dags(user: Any) -> Callable[[Any], bool]:
    """A predicate on a job's ``dag_id``: the DAGs the auth manager lets ``user`` read, or no DAG at all."""
    from airflow.api_fastapi.app import get_auth_manager

    allowed = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    return lambda dag_id: dag_id is None or dag_id in allowed


def readable_part(data: dict[str, Any], allowed: Callable[[Any], bool]) -> dict[str, Any]:
    """The dashboard data of the DAGs ``allowed`` lets the caller read: running and stale jobs, their active
    alerts and the recent alerts (the failure statistics are counts over all jobs)."""
    active = [j for j in data["active_jobs"] if allowed(j.get("dag_id"))]
    stale = [j for j in data["stale_jobs"] if allowed(j.get("dag_id"))]
    return {
        **data,
        "active_jobs": active,
        "stale_jobs": stale,
        "active_alerts": [a for beat in active for a in beat.get("active_alerts") or ()],
        "recent_alerts": [a for a in data["recent_alerts"] if allowed(a.get("dag_id"))],
    }


def _q(value: Any) -> str:
    return quote(str(value), safe="")


def job_links(job: Mapping[str, Any]) -> dict[str, str]:
    """The job's page, its Airflow task instance (the 3.3 UI's ``/dags/{dag}/runs/{run}/tasks/{task}``, plus
    ``/mapped/{index}`` when mapped) and its extra-link pages (report, output, job folder, quarantine)."""
    links = {"page": "job?id=" + _q(job.get("job_id"))}
    if job.get("try_number") is not None:
        links["page"] += f"&try={int(job['try_number'])}"
    dag, run, task = job.get("dag_id"), job.get("run_id"), job.get("task_id")
    if not (dag and run and task):
        return links
    mapped = job.get("map_index")
    index = int(mapped) if isinstance(mapped, (int, str)) else -1
    ids = "/".join(_q(v) for v in (dag, run, task, index))
    links["task_instance"] = f"/dags/{_q(dag)}/runs/{_q(run)}/tasks/{_q(task)}" + (
        f"/mapped/{index}" if index >= 0 else ""
    )
    for page in ("report", "output", "job"):
        links[page] = f"{URL_PREFIX}/jobs/{ids}/{page}"
    if job.get("rows_quarantined") or job.get("rows_skipped"):
        links["quarantine"] = f"{URL_PREFIX}/jobs/{ids}/output#quarantine"
    return links


def _chunk_folder(job: Mapping[str, Any]) -> Any:
    """The job folder for its chunk map, only under the output roots (None otherwise or when unknown)."""
    from airflow_batch_provider.plugins.jobs import confined_folder

    uri = job.get("output_uri")
    if not isinstance(uri, str) or not uri:
        return None
    try:
        return confined_folder(uri)
    except HTTPException:
        return None


FAILURE_KEYS = ("ts", "time", "class", "error_type", "error", "chunk", "chunk_label", "attempt", "strategy",
                "recovered", "try_number")  # fmt: skip


def job_page_data(root: Any, job_id: str, try_number: int | None, allowed: Callable[[Any], bool]) -> dict:
    """What the job page shows: the job, its series, chunk map, failures, alerts and links; 404/403."""
    from airflow_batch_provider.monitoring import history

    found = history.find_job(root, job_id, try_number)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} in the records under {root.uri}")
    job, series = found
    if not allowed(job.get("dag_id")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"not allowed to read DAG {job.get('dag_id')!r}")
    failures = [{k: f.get(k) for k in FAILURE_KEYS} for f in history.job_failures(root, job)]
    progress = job.get("progress") or {}
    chunks = history.chunk_map(
        _chunk_folder(job),
        failures,
        chunks_total=int(job.get("chunks_total") or progress.get("chunks_total") or 0),
        chunks_running=int(progress.get("chunks_running") or 0),
        running=job.get("state") == "running",
    )
    return {
        "job": job,
        "series": series,
        "chunk_map": chunks,
        "failures": failures,
        "failure_classes": dict(Counter(str(f.get("class")) for f in failures)),
        "alerts": history.job_alerts(root, job),
        "links": job_links(job),
    }


def create_app() -> FastAPI:
    app = FastAPI(title="Batch provider monitoring", docs_url=None, redoc_url=None)

    @app.get("/api/dashboard")
    def dashboard(user: Viewer) -> dict[str, Any]:
        from airflow_batch_provider.monitoring.dashboard import get_monitoring_dashboard_data

        return readable_part(get_monitoring_dashboard_data(_base_path()), readable_dags(user))

    @app.get("/api/alerts")
    def alerts(user: Viewer) -> dict[str, Any]:
        from airflow_batch_provider.monitoring.dashboard import read_heartbeats
        from airflow_batch_provider.monitoring.monitor import records_root

        active, _ = read_heartbeats(records_root(_base_path()))
        allowed = readable_dags(user)
        return {
            "active_alerts": [
                a for beat in active if allowed(beat.get("dag_id")) for a in beat.get("active_alerts") or ()
            ]
        }

    @app.get("/api/jobs")
    def jobs(
        user: Viewer,
        days: Annotated[float, Query(gt=0, le=3660, description="finished jobs of the last N days")] = 7,
        dag_id: Annotated[str | None, Query(description="only this DAG's jobs")] = None,
        state: Annotated[str | None, Query(pattern="^(running|stale|success|failed|stopped)$")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000, description="finished jobs read, latest first")] = 1000,
    ) -> dict[str, Any]:
        from airflow_batch_provider.monitoring import history
        from airflow_batch_provider.monitoring.monitor import records_root

        root = records_root(_base_path())
        allowed = readable_dags(user)
        everything = history.list_jobs(root, days=days, allowed=allowed, limit=limit)
        dags = sorted({str(j["dag_id"]) for j in everything if j.get("dag_id")})
        shown = [
            {**j, "links": job_links(j)}
            for j in everything
            if (dag_id is None or j.get("dag_id") == dag_id) and (state is None or j.get("state") == state)
        ]
        return {"jobs": shown, "dag_ids": dags, "states": list(history.STATES), "days": days, "limit": limit}

    @app.get("/api/jobs/{job_id:path}")
    def job(
        job_id: str,
        user: Viewer,
        try_number: Annotated[int | None, Query(alias="try", ge=0)] = None,
    ) -> dict[str, Any]:
        from airflow_batch_provider.monitoring.monitor import records_root

        return job_page_data(records_root(_base_path()), job_id, try_number, readable_dags(user))

    @app.get("/dashboard", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(DASHBOARD_HTML, headers=PAGE_HEADERS)

    @app.get("/job", response_class=HTMLResponse)
    def job_page() -> HTMLResponse:
        return HTMLResponse(JOB_HTML, headers=PAGE_HEADERS)

    from airflow_batch_provider.plugins.jobs import create_router

    app.include_router(
        create_router()
    )  # the extra links' pages: /jobs/{dag_id}/{run_id}/{task_id}/{map_index}/...

    return app


batch_monitoring_app = create_app()


class BatchProviderPlugin(AirflowPlugin):
    """The batch dashboard: JSON under ``/batch-provider/api``, a page at ``/batch-provider/dashboard``."""

    name = "batch_provider"
    fastapi_apps = [
        {"app": batch_monitoring_app, "url_prefix": URL_PREFIX, "name": "Batch provider monitoring"}
    ]
    external_views = [
        {
            "name": "Batch jobs",
            "href": f"{URL_PREFIX}/dashboard",
            "destination": "nav",
            "category": "browse",
            "url_route": "batch_jobs",
        }
    ]
