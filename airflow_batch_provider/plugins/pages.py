"""The dashboard's two HTML pages: static shells whose scripts fetch the plugin's JSON (``api/...``, relative to
``/batch-provider/``) with the browser's credentials and render it; every value is escaped before it reaches
the DOM. Self-contained: no CDN, no build step (charts are inline SVG), so the pages work without internet.

* ``/batch-provider/dashboard``: running and finished jobs of the last N days, filterable by DAG and state,
  each linked to its job page and its Airflow task instance; system summary and alerts.
* ``/batch-provider/job?id=<job id>&try=<try>``: one job: phase and progress, progress / rows/s / memory /
  CPU / batch size over time, the chunk map, failures and alerts on a timeline, links to output, report and
  quarantine. The job page refreshes every second while its job runs (and until it starts), the
  dashboard every 5 s.
"""

from __future__ import annotations

#: a page may run its own inline script and fetch from its own origin, nothing else
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#1f2937}
h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin-bottom:1rem}td,th{border:1px solid #d1d5db;padding:.25rem .55rem;text-align:left}
th{background:#f3f4f6}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;vertical-align:middle;background:#e5e7eb;width:9rem;height:.8rem;margin-right:.4rem}
.bar div{background:#2563eb;height:100%}
.s-running{color:#1d4ed8}.s-success{color:#15803d}.s-failed{color:#b91c1c}.s-stopped{color:#b45309}.s-stale{color:#6b7280}
.critical{color:#b91c1c}.warning{color:#b45309}#error{color:#b91c1c}
label{margin-right:1rem}a{color:#1d4ed8}
"""

_COMMON_JS = r"""
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const num = (v, d = 0) => (typeof v === "number" && isFinite(v) ? v.toLocaleString(undefined,
  {maximumFractionDigits: d}) : "-");
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "-");
const secs = (s) => (typeof s !== "number" ? "-" : s < 60 ? s.toFixed(1) + " s" : s < 3600 ?
  Math.floor(s / 60) + " min " + Math.round(s % 60) + " s" : (s / 3600).toFixed(1) + " h");
const link = (href, text) => (href ? '<a href="' + esc(href) + '">' + esc(text) + "</a>" : esc(text));
async function getJson(url) {
  const token = localStorage.getItem("token");
  const res = await fetch(url, {credentials: "same-origin", headers: token ? {Authorization: "Bearer " + token} : {}});
  if (!res.ok) {
    let detail = ""; try { detail = (await res.json()).detail; } catch (e) {}
    throw new Error("HTTP " + res.status + (detail ? ": " + detail : "") +
      (res.status === 401 ? " (log in to Airflow first)" : ""));
  }
  return res.json();
}
const phaseOf = (p) => ((p && (p.phases_total || 1) > 1) ? p.phase + " " + p.phase_index + "/" + p.phases_total : "");
const progressCell = (j) => { const p = j.progress || {};
  const pct = j.state === "success" ? 100 : Math.min(Number(p.progress_percentage) || 0, 100);
  const phase = j.ended_at ? "" : phaseOf(p);
  return '<span class="bar"><div style="width:' + pct + '%"></div></span><span data-pct="' + esc(pct) + '">' +
    esc(num(pct, 1)) + "%</span>" + (phase ? ' <span data-phase="' + esc(p.phase) + '">' + esc(phase) + "</span>" : ""); };
"""

DASHBOARD_HTML = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batch jobs</title><style>"""
    + _STYLE
    + """</style></head><body>
<h1>Batch jobs</h1><p id="error"></p><p id="system"></p>
<form id="filters" onsubmit="return false">
<label>DAG <select id="dag"><option value="">all</option></select></label>
<label>state <select id="state"><option value="">all</option></select></label>
<label>last <input id="days" type="number" min="1" max="3660" value="7" style="width:4rem"> days</label>
</form>
<h2>Jobs</h2><table id="jobs"></table>
<h2>Active alerts</h2><table id="active"></table>
<h2>Recent alerts</h2><table id="recent"></table>
<h2>Failures (24 h)</h2><p id="failures"></p>
<script>"""
    + _COMMON_JS
    + r"""
const rows = (id, head, items, cells, attrs) => { document.getElementById(id).innerHTML =
  "<tr>" + head.map((h) => "<th>" + h + "</th>").join("") + "</tr>" +
  items.map((i) => "<tr" + (attrs ? attrs(i) : "") + ">" + cells(i).map((c) => "<td>" + c + "</td>").join("") +
  "</tr>").join(""); };
const params = new URLSearchParams(location.search);
for (const k of ["dag", "state"]) if (params.get(k)) {  // the URL's filters, before the lists are known
  const option = document.createElement("option");
  option.value = option.textContent = params.get(k);
  document.getElementById(k).append(option);
  document.getElementById(k).value = params.get(k);
}
if (params.get("days")) document.getElementById("days").value = params.get("days");
const jobRow = (j) => { const l = j.links || {};
  return [link(l.page, j.job_id) + (j.try_number != null ? " (try " + esc(j.try_number) + ")" : ""),
    link(l.task_instance, l.task_instance ? "task instance" : "-"),
    '<span class="s-' + esc(j.state) + '">' + esc(j.state) + "</span>", progressCell(j),
    '<span class="num">' + num(j.rows_in) + "</span>", '<span class="num">' + num(j.rows_out) + "</span>",
    num(j.chunks_done) + " / " + num(j.chunks_total), esc(when(j.started_at)), esc(secs(j.duration_s)),
    esc(j.error_type || "")]; };
const alertRow = (a) => ['<span class="' + esc(a.level) + '">' + esc(a.level) + "</span>", esc(a.title),
  esc(a.job_id), esc(a.message), esc(when(a.time))];
let timer = null;
async function refresh() {
  clearTimeout(timer);
  const dag = document.getElementById("dag").value, state = document.getElementById("state").value;
  const days = document.getElementById("days").value || "7";
  const query = new URLSearchParams({days});
  if (dag) query.set("dag_id", dag);
  if (state) query.set("state", state);
  try {
    const [list, d] = await Promise.all([getJson("api/jobs?" + query), getJson("api/dashboard")]);
    document.getElementById("error").textContent = "";
    for (const [id, values] of [["dag", list.dag_ids], ["state", list.states]]) {
      const select = document.getElementById(id), current = select.value;
      select.innerHTML = '<option value="">all</option>' + [...new Set([...values, current])].filter(Boolean).map((v) =>
        '<option value="' + esc(v) + '">' + esc(v) + "</option>").join("");
      select.value = current;
    }
    rows("jobs", ["job", "Airflow", "state", "progress", "rows in", "rows out", "chunks", "started", "duration",
      "error"], list.jobs, jobRow, (j) => ' data-job="' + esc(j.job_id) + '" data-state="' + esc(j.state) +
      '" data-rows="' + esc(j.rows_in) + '"');
    const s = d.system;
    document.getElementById("system").textContent = s.cpu_count + " CPUs, load " + s.load_average.join(" ") +
      ", memory " + s.memory_percent + "% used (" + s.memory_available_mb + " MB free) | " + d.records_root;
    rows("active", ["level", "title", "job", "message", "time"], d.active_alerts, alertRow);
    rows("recent", ["level", "title", "job", "message", "time"], d.recent_alerts, alertRow);
    const f = d.failure_statistics;
    document.getElementById("failures").textContent = !f ? "-" : f.total + " failures" + (f.total ? " (" +
      Object.entries(f.by_class).map(([k, v]) => k + " " + v).join(", ") + "), " + f.recovered + " recovered" : "");
  } catch (err) { document.getElementById("error").textContent = err.message; }
  timer = setTimeout(refresh, 5000);
}
for (const id of ["dag", "state", "days"]) document.getElementById(id).addEventListener("change", () => {
  const q = new URLSearchParams();
  for (const k of ["dag", "state", "days"]) if (document.getElementById(k).value) q.set(k, document.getElementById(k).value);
  history.replaceState(null, "", "?" + q); refresh(); });
refresh();
</script></body></html>
"""
)

JOB_HTML = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batch job</title><style>"""
    + _STYLE
    + """
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts figure{margin:0}figcaption{font-weight:600}
svg text{font-size:10px;fill:#4b5563}
#chunks{display:flex;flex-wrap:wrap;gap:2px;max-width:60rem}
.cell{width:12px;height:12px;border-radius:2px}.legend span{margin-right:.8rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:.25rem;border-radius:2px}
.c-done{background:#16a34a}.c-resumed{background:#0891b2}.c-running{background:#2563eb}.c-retried{background:#ca8a04}
.c-failed{background:#dc2626}.c-quarantined{background:#9333ea}.c-pending{background:#e5e7eb}
</style></head><body>
<p><a href="dashboard">&larr; Batch jobs</a></p>
<h1 id="title">Batch job</h1><p id="error"></p>
<table id="summary"></table><p id="links"></p>
<h2>Over time</h2><div class="charts" id="charts"></div>
<h2>Chunks</h2><p class="legend" id="legend"></p><div id="chunks"></div><p id="truncated"></p>
<h2>Failures and alerts</h2><p id="classes"></p><div id="timeline"></div><table id="events"></table>
<script>"""
    + _COMMON_JS
    + r"""
const params = new URLSearchParams(location.search);
const jobId = params.get("id") || "", tryNumber = params.get("try");
const url = "api/jobs/" + jobId.split("/").map(encodeURIComponent).join("/") + (tryNumber ? "?try=" + encodeURIComponent(tryNumber) : "");
const W = 420, H = 150, L = 52, R = 10, T = 10, B = 24;
const short = (v) => new Intl.NumberFormat(undefined, {notation: "compact", maximumFractionDigits: 1}).format(v);
function chart(id, title, points, series, unit, yMax) {
  const pts = points.filter((p) => series.some((s) => typeof p[s.key] === "number"));
  if (!pts.length) return '<figure data-chart="' + id + '"><figcaption>' + esc(title) + "</figcaption><p>no data yet</p></figure>";
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  let max = yMax ?? Math.max(1, ...pts.flatMap((p) => series.map((s) => Number(p[s.key]) || 0)));
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0), y = (v) => H - B - (H - T - B) * v / max;
  let svg = '<svg width="' + W + '" height="' + H + '" role="img" aria-label="' + esc(title) + '">' +
    '<line x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - R) + '" y2="' + (H - B) + '" stroke="#9ca3af"/>' +
    '<line x1="' + L + '" y1="' + T + '" x2="' + L + '" y2="' + (H - B) + '" stroke="#9ca3af"/>' +
    '<text x="' + (L - 4) + '" y="' + (T + 8) + '" text-anchor="end">' + esc(short(max)) + "</text>" +
    '<text x="' + (L - 4) + '" y="' + (H - B) + '" text-anchor="end">0</text>' +
    '<text x="' + L + '" y="' + (H - 6) + '">' + esc(new Date(t0 * 1000).toLocaleTimeString()) + "</text>" +
    '<text x="' + (W - R) + '" y="' + (H - 6) + '" text-anchor="end">' + esc(secs(t1 - t0)) + "</text>";
  if (id === "progress") { let last = null;
    for (const p of pts) if (p.phase && p.phase !== last) { last = p.phase;
      svg += '<line x1="' + x(p.t) + '" y1="' + T + '" x2="' + x(p.t) + '" y2="' + (H - B) + '" stroke="#d1d5db" stroke-dasharray="3"/>' +
        '<text x="' + (x(p.t) + 3) + '" y="' + (T + 18) + '">' + esc(p.phase) + "</text>"; } }
  for (const s of series) {
    const line = pts.filter((p) => typeof p[s.key] === "number").map((p) => x(p.t).toFixed(1) + "," + y(p[s.key]).toFixed(1));
    svg += '<polyline fill="none" stroke="' + s.color + '" stroke-width="1.6" points="' + line.join(" ") + '"/>';
  }
  const legend = series.map((s) => '<span style="color:' + s.color + '">' + esc(s.label) + "</span>").join(" ");
  return '<figure data-chart="' + id + '" data-points="' + pts.length + '"><figcaption>' + esc(title) +
    (unit ? " (" + esc(unit) + ")" : "") + " " + legend + "</figcaption>" + svg + "</svg></figure>";
}
function timeline(job, events) {
  const t0 = job.started_at, t1 = Math.max(job.ended_at || Date.now() / 1000, (t0 || 0) + 1);
  if (!t0) return "";
  const w = 840, x = (t) => 10 + (w - 20) * Math.min(Math.max((t - t0) / (t1 - t0), 0), 1);
  let svg = '<svg width="' + w + '" height="40" role="img" aria-label="timeline"><line x1="10" y1="20" x2="' + (w - 10) +
    '" y2="20" stroke="#9ca3af"/>';
  for (const e of events) svg += '<circle data-event="' + esc(e.kind) + '" cx="' + x(e.t).toFixed(1) + '" cy="20" r="5" fill="' +
    (e.kind === "alert" ? "#b45309" : e.recovered ? "#ca8a04" : "#dc2626") + '"><title>' + esc(when(e.t) + " " + e.what + ": " + e.text) + "</title></circle>";
  return svg + '<text x="10" y="38">' + esc(when(t0)) + '</text><text x="' + (w - 10) + '" y="38" text-anchor="end">' +
    esc(job.ended_at ? when(job.ended_at) : "now") + "</text></svg>";
}
let timer = null;
async function refresh() {
  clearTimeout(timer);
  let d;
  try { d = await getJson(url); } catch (err) {
    document.getElementById("error").textContent = err.message; timer = setTimeout(refresh, 1000); return; }
  document.getElementById("error").textContent = "";
  const j = d.job, p = j.progress || {}, l = d.links || {};
  document.title = "Batch job " + j.job_id;
  document.getElementById("title").textContent = "Batch job " + j.job_id;
  const pct = j.state === "success" ? 100 : Math.min(Number(p.progress_percentage) || 0, 100);
  const phase = j.ended_at ? "" : phaseOf(p);
  const summary = [
    ["state", '<b id="state" data-state="' + esc(j.state) + '" class="s-' + esc(j.state) + '">' + esc(j.state) + "</b>" +
      (j.error ? " " + esc(j.error_type) + ": " + esc(j.error) : "")],
    ["progress", '<span class="bar"><div style="width:' + pct + '%"></div></span><b id="pct" data-pct="' + esc(pct) + '">' +
      esc(num(pct, 1)) + '%</b> <span id="phase" data-phase="' + esc(phase ? p.phase : "") + '">' + esc(phase) + "</span>"],
    ["rows", '<span id="rows" data-rows="' + esc(j.rows_in ?? p.rows_processed) + '">' + num(j.rows_in ?? p.rows_processed) +
      "</span> in / " + num(p.rows_total) + (j.rows_out != null ? " total, " + num(j.rows_out) + " out" : "") +
      (j.rows_quarantined ? ", " + num(j.rows_quarantined) + " quarantined" : "") +
      (j.rows_skipped ? ", " + num(j.rows_skipped) + " skipped" : "")],
    ["chunks", num(j.chunks_done ?? p.chunks_done) + " / " + num(j.chunks_total ?? p.chunks_total) +
      (j.chunks_resumed ? " (" + num(j.chunks_resumed) + " resumed)" : "")],
    ["rows/s", num(p.rows_per_second)], ["started", esc(when(j.started_at))],
    ["ended", esc(when(j.ended_at))], ["duration", esc(secs(j.duration_s))],
    ["ids", esc([j.dag_id, j.run_id, j.task_id, j.map_index].filter((v) => v != null).join(" / ")) +
      (j.try_number != null ? " (try " + esc(j.try_number) + ")" : "")],
    ["output", "<code>" + esc(j.output_uri) + "</code>"]];
  document.getElementById("summary").innerHTML = summary.map(([k, v]) => "<tr><th>" + esc(k) + "</th><td>" + v + "</td></tr>").join("");
  document.getElementById("links").innerHTML = [["task_instance", "Airflow task instance"], ["report", "Report"],
    ["output", "Output"], ["quarantine", "Quarantine"], ["job", "Job folder"]].filter(([k]) => l[k])
    .map(([k, text]) => '<a data-link="' + esc(k) + '" href="' + esc(l[k]) + '">' + esc(text) + "</a>").join(" | ");
  const s = d.series || [];
  document.getElementById("charts").innerHTML =
    chart("progress", "Progress", s, [{key: "pct", label: "%", color: "#2563eb"}], "%", 100) +
    chart("rate", "Rows per second", s, [{key: "rps", label: "rows/s", color: "#16a34a"}], "") +
    chart("memory", "Memory", s, [{key: "pss_mb", label: "PSS", color: "#9333ea"}, {key: "rss_mb", label: "RSS", color: "#f97316"}], "MB") +
    chart("cpu", "CPU", s, [{key: "cpu", label: "CPU", color: "#dc2626"}], "%") +
    chart("batch", "Batch size", s, [{key: "batch_size", label: "rows", color: "#0891b2"}], "rows");
  const m = d.chunk_map;
  document.getElementById("legend").innerHTML = Object.entries(m.counts).map(([k, v]) =>
    '<span><i class="c-' + esc(k) + '"></i>' + esc(k) + ' <b data-count="' + esc(k) + '">' + esc(v) + "</b></span>").join("");
  document.getElementById("chunks").innerHTML = m.cells.map((c) => '<div class="cell c-' + esc(c.state) + '" data-state="' +
    esc(c.state) + '" title="' + esc(c.state + (c.file != null ? ": file " + c.file + " rows " + c.start + "-" + c.stop : "") +
    (c.class ? " (" + c.class + ")" : "")) + '"></div>').join("");
  document.getElementById("truncated").textContent = m.truncated ? m.truncated + " more chunks not shown" : "";
  document.getElementById("classes").innerHTML = Object.keys(d.failure_classes).length ? "Failure classes: " +
    Object.entries(d.failure_classes).map(([k, v]) => '<span data-class="' + esc(k) + '">' + esc(k) + " " + esc(v) + "</span>").join(", ") : "No failures.";
  const events = d.failures.map((f) => ({kind: "failure", t: f.ts, what: f.class, recovered: f.recovered,
      text: (f.chunk_label || "") + " " + (f.error_type || "") + ": " + (f.error || "") + " -> " + (f.strategy || "")}))
    .concat(d.alerts.map((a) => ({kind: "alert", t: a.time, what: a.level + " " + a.title, text: a.message})))
    .sort((a, b) => a.t - b.t);
  document.getElementById("timeline").innerHTML = timeline(j, events);
  document.getElementById("events").innerHTML = events.length ? "<tr><th>time</th><th>kind</th><th>what</th><th>detail</th></tr>" +
    events.map((e) => '<tr data-event="' + esc(e.kind) + '"><td>' + esc(when(e.t)) + "</td><td>" + esc(e.kind) + "</td><td>" +
    esc(e.what) + "</td><td>" + esc(e.text) + "</td></tr>").join("") : "";
  if (j.state === "running" || j.state === "stale") timer = setTimeout(refresh, 1000);
}
refresh();
</script></body></html>
"""
)
