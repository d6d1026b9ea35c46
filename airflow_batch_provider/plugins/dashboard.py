"""Airflow UI plugin: the batch monitoring dashboard at ``/batch-provider`` (entry point ``airflow.plugins``),
and the pages of the operators' extra links under ``/batch-provider/jobs/`` (:mod:`.jobs`, per-DAG authorization).

Airflow adds no authentication to plugin FastAPI apps, so the JSON endpoints validate the caller's Airflow
API token themselves (``Authorization: Bearer <jwt>`` or the UI's ``_token`` cookie, checked by the
configured auth manager) and require access to the Jobs view. The HTML page is a static shell with no
data; its script fetches the JSON with the browser's credentials.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse

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


def _base_path() -> Any:
    """``{[batch_provider] base_path}`` opened through ``[batch_provider] conn_id``, as the jobs write it."""
    from airflow_batch_provider.operators.conf import base_path, conn_id, storage_target

    return storage_target(base_path(), conn_id())


def create_app() -> FastAPI:
    app = FastAPI(title="Batch provider monitoring", docs_url=None, redoc_url=None)

    @app.get("/api/dashboard", dependencies=[Depends(require_viewer)])
    def dashboard() -> dict[str, Any]:
        from airflow_batch_provider.monitoring.dashboard import get_monitoring_dashboard_data

        return get_monitoring_dashboard_data(_base_path())

    @app.get("/api/alerts", dependencies=[Depends(require_viewer)])
    def alerts() -> dict[str, Any]:
        from airflow_batch_provider.monitoring.dashboard import get_active_alerts

        return {"active_alerts": get_active_alerts(_base_path())}

    @app.get("/dashboard", response_class=HTMLResponse)
    def page() -> str:
        return DASHBOARD_HTML

    from airflow_batch_provider.plugins.jobs import create_router

    app.include_router(
        create_router()
    )  # the extra links' pages: /jobs/{dag_id}/{run_id}/{task_id}/{map_index}/...

    return app


DASHBOARD_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Batch jobs</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2937}
table{border-collapse:collapse;margin-bottom:1.5rem}td,th{border:1px solid #d1d5db;padding:.3rem .6rem;text-align:left}
.bar{background:#e5e7eb;width:12rem;height:.8rem}.bar div{background:#2563eb;height:100%}
.critical{color:#b91c1c}.warning{color:#b45309}#error{color:#b91c1c}
</style></head><body>
<h1>Batch jobs</h1><p id="error"></p><p id="system"></p>
<h2>Active jobs</h2><table id="jobs"></table>
<h2>Active alerts</h2><table id="active"></table>
<h2>Recent alerts</h2><table id="recent"></table>
<h2>Stale jobs (no heartbeat)</h2><table id="stale"></table>
<h2>Failures (24 h)</h2><p id="failures"></p>
<script>
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const rows = (id, head, items, cells) => { document.getElementById(id).innerHTML =
  "<tr>" + head.map((h) => "<th>" + h + "</th>").join("") + "</tr>" +
  items.map((i) => "<tr>" + cells(i).map((c) => "<td>" + c + "</td>").join("") + "</tr>").join(""); };
const num = (v) => (typeof v === "number" ? Math.round(v).toLocaleString() : "-");
const job = (j) => { const p = j.progress || {}, r = j.resources || {}, pct = Number(p.progress_percentage) || 0;
  const phase = (p.phases_total || 1) > 1 ? " " + esc(p.phase) + " " + esc(p.phase_index) + "/" + esc(p.phases_total) : "";
  return [esc(j.job_id), '<div class="bar"><div style="width:' + pct + '%"></div></div>' + esc(pct) + "%" + phase,
    num(p.rows_processed) + " / " + num(p.rows_total), num(p.rows_per_second), num(p.eta_seconds),
    esc(r.cpu_percent), num(r.pss_mb ?? r.rss_mb), esc(j.age_s) + " s"]; };
const alert = (a) => ['<span class="' + esc(a.level) + '">' + esc(a.level) + "</span>", esc(a.title),
  esc(a.job_id), esc(a.message), esc(new Date(a.time * 1000).toLocaleString())];
async function refresh() {
  const token = localStorage.getItem("token");
  const res = await fetch("api/dashboard", {credentials: "same-origin",
    headers: token ? {Authorization: "Bearer " + token} : {}});
  if (!res.ok) { document.getElementById("error").textContent = "HTTP " + res.status + ": log in to Airflow first"; return; }
  const d = await res.json(), s = d.system;
  document.getElementById("error").textContent = "";
  document.getElementById("system").textContent = s.cpu_count + " CPUs, load " + s.load_average.join(" ") +
    ", memory " + s.memory_percent + "% used (" + s.memory_available_mb + " MB free) | " + d.records_root;
  const jobHead = ["job", "progress", "rows", "rows/s", "ETA s", "CPU %", "memory MB", "heartbeat age"];
  rows("jobs", jobHead, d.active_jobs, job);
  rows("stale", jobHead, d.stale_jobs, job);
  rows("active", ["level", "title", "job", "message", "time"], d.active_alerts, alert);
  rows("recent", ["level", "title", "job", "message", "time"], d.recent_alerts, alert);
  const f = d.failure_statistics;
  document.getElementById("failures").textContent = !f ? "-" : f.total + " failures" + (f.total ? " (" +
    Object.entries(f.by_class).map(([k, v]) => k + " " + v).join(", ") + "), " + f.recovered + " recovered" : "");
}
refresh(); setInterval(refresh, 5000);
</script></body></html>
"""

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
