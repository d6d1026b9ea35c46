"""The pages behind the operators' extra links: ``/batch-provider/jobs/{dag_id}/{run_id}/{task_id}/{map_index}/
{report|output|job}``.

Authorization is Airflow's own: the caller's token (``Authorization: Bearer`` or the UI's ``_token`` cookie) and
``requires_access_dag("GET", DagAccessEntity.RUN)``, the check the REST API makes before it shows a DAG's runs,
so the auth manager decides per DAG (the SimpleAuthManager through teams, FAB/Keycloak through their roles and
DAG permissions): 401 without a token, 403 when the user may not read that DAG's runs.

A request never names a path. The job folder is what the task recorded for those ids (XCom ``batch_job``,
pushed when the task starts, kept when it fails), else the default layout ``{base_path}/{dag_id}/{run_id}/
{task_id}/{map_index}``; it must lie under ``[batch_provider] base_path`` or ``allowed_output_roots``, and only the
fixed file names ``_report.html``, ``_report.json`` and the manifests below it are read.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse

PAGES = ("report", "output", "job")
JSON_LIMIT = 1_000_000  # bytes of a JSON report shown inline when there is no HTML page
#: the pages are static: no script, nothing fetched
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


async def require_dag_runs_access(request: Request) -> None:
    """Airflow's own checks, imported when a request comes (not when the plugin module loads): ``get_user``
    (Bearer header, else the UI's ``_token`` cookie; 401/403) and ``requires_access_dag("GET",
    DagAccessEntity.RUN)`` on the route's ``dag_id`` (403)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
        if scheme.lower() == "bearer" and token.strip()
        else None
    )
    user = await get_user(request, oauth_token=None, bearer_credentials=bearer)
    requires_access_dag("GET", DagAccessEntity.RUN)(request, user)


def _recorded_folder(dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
    """The job folder the task pushed as XCom ``batch_job`` (None when there is none or it is not readable)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_batch_provider.operators.batch import JOB_FOLDER_XCOM

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run_id,
            key=JOB_FOLDER_XCOM,
            task_ids=task_id,
            dag_ids=dag_id,
            map_indexes=map_index,
            limit=1,
        )
        row = session.scalars(query).first()
        value = XComModel.deserialize_value(row) if row is not None else None
    if isinstance(value, str):  # stored as JSON text by some paths
        try:
            value = json.loads(value)
        except ValueError:
            return None
    folder = value.get("output_uri") if isinstance(value, dict) else None
    return folder if isinstance(folder, str) and folder.strip() else None


def job_folder(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    """The task instance's job folder as a storage ``Location``; 404 when it is outside the allowed roots."""
    from airflow_batch_provider.operators.batch import _segment
    from airflow_batch_provider.operators.conf import base_path

    base = base_path().rstrip("/")
    default = "/".join([base, *(_segment(v) for v in (dag_id, run_id, task_id, map_index))])
    return confined_folder(_recorded_folder(dag_id, run_id, task_id, map_index) or default)


def confined_folder(folder: str) -> Any:
    """``folder`` as a storage ``Location`` when it lies under ``[batch_provider] base_path`` (strictly) or an
    ``allowed_output_roots`` entry; 404 otherwise."""
    from airflow_batch_provider.engine.paths import within_any
    from airflow_batch_provider.operators.conf import conn_id, storage_target
    from airflow_batch_provider.operators.roots import output_roots
    from airflow_batch_provider.storage import Location

    roots = output_roots()
    if not (within_any(folder, roots[:1], strict=True) or within_any(folder, roots[1:])):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "the job folder is outside [batch_provider] base_path and allowed_output_roots: not served",
        )
    return Location.of(storage_target(folder, conn_id()))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _shell(title: str, body: str, links: str = "") -> str:
    css = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2937;background:#f9fafb}"
        "header{background:#1e3a8a;color:#fff;padding:1rem 1.5rem}header h1{margin:0;font-size:1.3rem}"
        "header a{color:#bfdbfe;margin-right:1rem}main{padding:1rem 1.5rem}table{border-collapse:collapse;"
        "background:#fff}td,th{border:1px solid #e5e7eb;padding:.25rem .6rem;text-align:left;vertical-align:top}"
        "th{background:#f3f4f6}code,pre{background:#f3f4f6;padding:.1rem .3rem;border-radius:3px;"
        "word-break:break-all;white-space:pre-wrap}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{css}</style></head><body><header><h1>{_esc(title)}</h1><p>{links}</p></header>"
        f"<main>{body}</main></body></html>"
    )


def _nav(page: str) -> str:
    labels = {"report": "Report", "output": "Output", "job": "Batch job"}
    return "".join(f'<a href="{p}">{labels[p]}</a>' for p in PAGES if p != page)


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _page(title: str, body: str, page: str, code: int = 200) -> HTMLResponse:
    return HTMLResponse(_shell(title, body, _nav(page)), status_code=code, headers=HEADERS)


def report_page(folder: Any, ids: str) -> HTMLResponse:
    page = folder.child("_report.html")
    if page.exists():
        return HTMLResponse(page.read_bytes().decode("utf-8", "replace"), headers=HEADERS)
    report = folder.child("_report.json")
    if report.exists():
        data = report.read_bytes()
        text = data[:JSON_LIMIT].decode("utf-8", "replace")
        more = (
            f"<p>{len(data) - JSON_LIMIT:,} more bytes in _report.json</p>" if len(data) > JSON_LIMIT else ""
        )
        body = f"<p>This processor writes no HTML report; its JSON report:</p><pre>{_esc(text)}</pre>{more}"
        return _page(f"Report: {ids}", body, "report")
    return _page(
        f"Report: {ids}",
        "<p>No report yet: the job has not committed its output (still running, failed before the end, or not "
        f"started).</p><p>Job folder: <code>{_esc(folder.uri)}</code></p>",
        "report",
        status.HTTP_404_NOT_FOUND,
    )


def output_page(folder: Any, ids: str) -> HTMLResponse:
    manifest = folder.child("_manifest.json").read_json(None)
    if not isinstance(manifest, dict):
        body = f"<p>No committed output in <code>{_esc(folder.uri)}</code> yet.</p>"
        return _page(f"Output: {ids}", body, "output", status.HTTP_404_NOT_FOUND)
    parts = manifest.get("parts") or []
    quarantine = manifest.get("quarantine") or []
    summary = manifest.get("summary") or {}
    rows = [
        ("output", f"<code>{_esc(folder.uri)}</code>"),
        ("generation", _esc(manifest.get("generation"))),
        ("parts", f"{len(parts):,}"),
        ("rows in", _esc(summary.get("rows_in"))),
        ("rows out", _esc(summary.get("rows_out"))),
        ("chunks", _esc(summary.get("chunks"))),
        ("quarantine parts", f"{len(quarantine):,}"),
        ("rows quarantined", _esc(summary.get("rows_quarantined"))),
        ("rows skipped", _esc(summary.get("rows_skipped"))),
        ("success marker", "yes" if folder.child("_SUCCESS").exists() else "no"),
    ]
    if quarantine:
        rows.append(
            ("quarantine folder", f"<code>{_esc(folder.uri + '/' + quarantine[0].rsplit('/', 1)[0])}</code>")
        )
    listing = "".join(f"<li><code>{_esc(p)}</code></li>" for p in parts[:50])
    if len(parts) > 50:
        listing += f"<li>\u2026 {len(parts) - 50:,} more</li>"
    body = (
        _table(rows)
        + "<h2>Read it</h2><pre>from airflow_batch_provider.engine import read_output\n"
        + f"df = read_output({_esc(repr(folder.uri))})"
        + (f"\nbad = read_output({_esc(repr(folder.uri))}, quarantine=True)" if quarantine else "")
        + "</pre><p>Downstream jobs: <code>source=upstream.output[&quot;output_uri&quot;]</code>.</p>"
        + (f"<h2>Parts</h2><ul>{listing}</ul>" if parts else "")
    )
    return _page(f"Output: {ids}", body, "output")


def _latest_checkpoint(folder: Any) -> dict[str, Any] | None:
    generations = sorted(n for n in folder.listdir() if n.startswith("g") and n[1:].isdigit())
    for name in reversed(generations):
        state = folder.child(name, "_checkpoint.json").read_json(None)
        if isinstance(state, dict):
            return state
    return None


def job_page(folder: Any, ids: str) -> HTMLResponse:
    if not folder.exists():
        body = f"<p>The job has not started: <code>{_esc(folder.uri)}</code> does not exist.</p>"
        return _page(f"Batch job: {ids}", body, "job", status.HTTP_404_NOT_FOUND)
    state = _latest_checkpoint(folder) or {}
    manifest = folder.child("_manifest.json").read_json(None) or {}
    counters = state.get("counters") or {}
    rows = [
        ("job folder", f"<code>{_esc(folder.uri)}</code>"),
        ("job id", _esc(state.get("job_id", ""))),
        (
            "status",
            f'<b data-status="{_esc(state.get("status", ""))}">{_esc(state.get("status", "unknown"))}</b>',
        ),
        ("generation", _esc(state.get("generation", ""))),
        ("fencing epoch (try)", _esc(state.get("epoch", ""))),
        ("checkpoint segments", _esc(state.get("segments", ""))),
        ("committed", "yes" if manifest else "no"),
    ]
    rows += [(str(k), _esc(v)) for k, v in sorted(counters.items())]
    return _page(f"Batch job: {ids}", _table(rows), "job")


def create_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/jobs/{dag_id}/{run_id}/{task_id}/{map_index}/{page}",
        response_class=HTMLResponse,
        dependencies=[Depends(require_dag_runs_access)],
    )
    def job(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = Path(ge=-1),
        page: str = Path(pattern="^(report|output|job)$"),
    ) -> HTMLResponse:
        folder = job_folder(dag_id, run_id, task_id, map_index)
        ids = f"{dag_id} / {run_id} / {task_id}" + (f" [{map_index}]" if map_index >= 0 else "")
        return {"report": report_page, "output": output_page, "job": job_page}[page](folder, ids)

    return router
