"""Self-contained HTML for ``data_profiling`` and ``data_quality`` reports: plain HTML, inline CSS and SVG.

Built from the report's aggregates only (``_report.json``): nothing is fetched (no CDN, no script, no font,
no image), and nothing from the data appears that the report does not hold. A quality report may add a few
failing example rows, which the caller reads from a quarantine that stores values (``quarantine_values=True``);
with a values-free quarantine there are none.

Every text from the report (column names, values, rule names, paths) is untrusted: it goes through
:func:`html.escape` (quotes too) and is cut to ``MAX_TEXT`` characters. The page is capped at ``MAX_BYTES``:
per-column detail cards are added while the page stays under ``DETAIL_BUDGET``; the summary table lists every
column (a row of a few hundred bytes), so a 1,000-column profile stays far below 2 MB, and beyond
``SUMMARY_BUDGET`` the remaining columns are counted, not listed (the JSON report has them all).

Elements carry ``data-*`` attributes with the exact counts (``data-column``, ``data-nulls``, ``data-distinct``,
``data-rule``, ``data-failed`` ...) so tools and tests read the page without parsing text. No Airflow imports.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_BYTES = 2_000_000
SUMMARY_BUDGET = 1_200_000
DETAIL_BUDGET = 1_880_000  # bytes of summary + detail cards; warnings and header stay below 100 KB
MAX_TEXT = 120
MAX_EXAMPLES = 5
#: warning thresholds of the profile
MOSTLY_NULL = 0.5
HIGH_CARDINALITY = 0.9
HIGH_CARDINALITY_MIN_COUNT = 50
SKEW = 0.3  # |mean - median| / std (Pearson's second skewness coefficient / 3)

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2937;
background:#f9fafb}header{background:#1e3a8a;color:#fff;padding:1rem 1.5rem}header h1{margin:0;font-size:1.3rem}
header p{margin:.25rem 0 0;opacity:.85;word-break:break-all}main{padding:1rem 1.5rem;max-width:1400px}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}h3{font-size:1rem;margin:0 0 .5rem;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:.75rem}.kpi{background:#fff;border:1px solid #e5e7eb;border-radius:6px;
padding:.5rem .9rem;min-width:9rem}.kpi b{display:block;font-size:1.25rem}.kpi span{color:#6b7280;font-size:.8rem}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #e5e7eb;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f4f6;font-weight:600}td.n{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}.name{word-break:break-all;max-width:22rem}
.warn{display:inline-block;background:#fef3c7;color:#92400e;border-radius:3px;padding:0 .35rem;margin:1px;
font-size:.78rem}.bad{background:#fee2e2;color:#991b1b}.good{background:#dcfce7;color:#166534}
.tag{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;font-weight:600}
.col{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:.75rem;margin:.75rem 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.75rem}
.mini td,.mini th{font-size:.8rem;padding:.1rem .35rem}.mini td{text-align:right;
font-variant-numeric:tabular-nums}.mini td:first-child{text-align:left;word-break:break-all}.kv td{text-align:left}
#columns td:nth-child(1),#columns td:nth-child(n+4):nth-child(-n+9){text-align:right;white-space:nowrap;
font-variant-numeric:tabular-nums}#columns td:nth-child(2){word-break:break-all;max-width:22rem}svg{display:block}.hist path{fill:#3b82f6}
figure{margin:0}
.ratio{position:relative;width:9rem;height:.75rem;background:#e5e7eb;display:inline-block;vertical-align:middle}
.ratio i{position:absolute;left:0;top:0;bottom:0;background:#ef4444}.ratio s{position:absolute;top:-2px;
bottom:-2px;width:2px;background:#111827}.muted{color:#6b7280}.up{color:#b91c1c}.down{color:#166534}
code{background:#f3f4f6;padding:0 .25rem;border-radius:3px;word-break:break-all}
"""


# -- text and numbers -------------------------------------------------------------------------------------
def esc(value: Any, limit: int = MAX_TEXT) -> str:
    """``value`` as escaped text (quotes too), cut to ``limit`` characters with an ellipsis."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return html.escape(text, quote=True)


def attr(value: Any) -> str:
    """An attribute value: escaped, cut at 400 characters (column names of any length stay findable)."""
    return esc(value, 400)


def num(value: Any, digits: int = 4) -> str:
    """A number for people: integers with thousands separators, floats with ``digits`` significant digits."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return esc(value)
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        mag = abs(value)
        if 1e-4 <= mag < 1e9:
            return f"{value:,.{digits}g}" if mag >= 1 else f"{value:.{digits}g}"
        return f"{value:.{digits - 1}e}"
    return esc(value)


def pct(value: Any) -> str:
    if value is None or not isinstance(value, (int, float)):
        return "\u2013"
    if value == 0:
        return "0%"
    if value < 0.001:
        return "<0.1%"
    return f"{value * 100:.1f}%"


def _kpi(label: str, value: str, key: str = "") -> str:
    data = f' data-kpi="{attr(key)}"' if key else ""
    return f'<div class="kpi"{data}><b>{value}</b><span>{esc(label)}</span></div>'


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle, 600)}</p></header><main>{body}</main></body></html>"
    )


# -- histograms -------------------------------------------------------------------------------------------
def _bars(counts: Sequence[int]) -> str:
    """One SVG path of bars in a ``10 * bins`` x 100 box (bins side by side, equal widths, whatever their
    edges), integer coordinates to keep pages small."""
    peak = max(counts) if counts else 0
    if not peak:
        return ""
    return "".join(
        f"M{10 * i} {100 - max(1, round(100 * c / peak))}h9V100h-9z" for i, c in enumerate(counts) if c
    )


def sparkline(hist: Mapping[str, Any] | None) -> str:
    if not hist or not hist.get("counts"):
        return ""
    n = len(hist["counts"])
    return (
        f'<svg class="hist" width="90" height="22" viewBox="0 0 {10 * n} 100" preserveAspectRatio="none" '
        f'role="img" aria-label="histogram"><path d="{_bars(hist["counts"])}"/></svg>'
    )


def histogram_svg(hist: Mapping[str, Any], scale: str | None) -> str:
    counts, edges = list(hist.get("counts") or []), list(hist.get("edges") or [])
    if not counts:
        return ""
    w, h = 300, 110
    label = {"log": "log bins", "quantile": "quantile bins", "linear": "equal-width bins"}.get(
        scale or "linear", ""
    )
    ticks = ""
    if edges:
        ticks = (
            f'<text x="0" y="14" font-size="10">{num(edges[0])}</text>'
            f'<text x="{w}" y="14" font-size="10" text-anchor="end">{num(edges[-1])}</text>'
        )
        if len(edges) > 2:
            mid = len(edges) // 2
            ticks += (
                f'<text x="{w * mid / (len(edges) - 1):.0f}" y="14" font-size="10" '
                f'text-anchor="middle">{num(edges[mid])}</text>'
            )
    n = len(counts)
    return (
        f'<figure class="hist" data-bins="{n}" data-scale="{attr(scale or "")}" aria-label="histogram, '
        f'{esc(label)}"><svg width="{w}" height="{h}" viewBox="0 0 {10 * n} 100" preserveAspectRatio="none">'
        f'<path d="{_bars(counts)}"/></svg><svg width="{w}" height="30">'
        f'<line x1="0" y1="1" x2="{w}" y2="1" stroke="#9ca3af"/>{ticks}'
        f'<text x="{w}" y="27" font-size="10" text-anchor="end" fill="#6b7280">{esc(label)}</text></svg></figure>'
    )


# -- profile ----------------------------------------------------------------------------------------------
def _median(col: Mapping[str, Any]) -> Any:
    qs = col.get("quantiles") or {}
    return qs.get("0.5")


def profile_warnings(col: Mapping[str, Any], rows: int) -> list[str]:
    """The warnings of one column report: constant, all/mostly null, skewed, high cardinality, mixed types."""
    out = []
    count, distinct = col.get("count") or 0, col.get("distinct") or 0
    ratio = col.get("null_ratio")
    if rows and count == 0:
        out.append("all null")
    elif ratio is not None and ratio >= MOSTLY_NULL:
        out.append(f"mostly null ({pct(ratio)})")
    if count and distinct == 1:
        out.append("constant")
    kind = col.get("type")
    if kind in ("integer", "float") and distinct > 1:
        mean, std, median = col.get("mean"), col.get("std"), _median(col)
        skewed = col.get("histogram_scale") in ("log", "quantile")
        if not skewed and all(isinstance(v, (int, float)) for v in (mean, std, median)) and std:
            skewed = abs(mean - median) / std >= SKEW
        if skewed:
            out.append("skewed")
    if (
        kind in ("text", "categorical", "other")
        and count >= HIGH_CARDINALITY_MIN_COUNT
        and distinct / count >= HIGH_CARDINALITY
    ):
        out.append("high cardinality")
    if kind == "other" or (kind == "text" and _mixed_top_values(col.get("top_values") or [])):
        out.append("mixed types")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mixed_top_values(top: Sequence[Any]) -> bool:
    """Text whose frequent values are partly numbers and partly not."""
    texts = [str(v[0]) for v in top if isinstance(v, (list, tuple)) and v and v[0] is not None]
    numbers = sum(1 for t in texts if t.strip() and _is_number(t))
    return 0 < numbers < len(texts)


def _profile_change(col: Mapping[str, Any], before: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """``(cell html, change notes)`` against the previous run's digest of the column."""
    if before is None:
        return '<span class="warn">new</span>', ["new column"]
    notes = []
    if before.get("type") != col.get("type"):
        notes.append(f"type {before.get('type')} \u2192 {col.get('type')}")
    for key, label in (("null_ratio", "nulls"),):
        a, b = before.get(key), col.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(b - a) >= 0.01:
            notes.append(f"{label} {pct(a)} \u2192 {pct(b)}")
    a, b = before.get("distinct"), col.get("distinct")
    if isinstance(a, int) and isinstance(b, int) and a != b and abs(b - a) >= max(1, 0.05 * max(a, 1)):
        notes.append(f"distinct {num(a)} \u2192 {num(b)}")
    a, b, s = before.get("mean"), col.get("mean"), col.get("std") or before.get("std")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b:
        if (s and abs(b - a) >= 0.1 * s) or (not s and a != b):
            notes.append(f"mean {num(a)} \u2192 {num(b)}")
    if not notes:
        return '<span class="muted">unchanged</span>', []
    return "".join(f'<span class="warn">{esc(n)}</span>' for n in notes), notes


def profile_digest(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a later run compares with: rows, duplicates, per column type/nulls/distinct/mean/std."""
    cols = report.get("columns") or {}
    keep = ("type", "null_ratio", "nulls", "distinct", "mean", "std")
    return {
        "kind": "data_profiling",
        "rows": report.get("rows"),
        "duplicate_rows": report.get("duplicate_rows"),
        "columns": {str(n): {k: c.get(k) for k in keep} for n, c in cols.items()},
    }


def _delta(now: Any, before: Any) -> str:
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)) or now == before:
        return ""
    sign = "+" if now > before else "\u2212"
    cls = "up" if now > before else "down"
    return f' <span class="{cls}">({sign}{num(abs(now - before))})</span>'


def _top_values_table(top: Sequence[Any], count: int) -> str:
    if not top:
        return ""
    rows = []
    for item in top:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            continue
        value, n = item[0], item[1]
        share = n / count if count else 0
        rows.append(
            f"<tr><td>{esc('null' if value is None else value, 60)}</td><td>{num(n)}</td><td>{pct(share)}</td></tr>"
        )
    return (
        '<table class="mini"><tr><th>top value</th><th>count</th><th>share</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _column_card(name: str, col: Mapping[str, Any], warnings: list[str], change: list[str]) -> str:
    stats = [("dtype", esc(col.get("dtype"), 40))]  # type, counts, nulls, distinct: in the summary table
    for key in ("min", "max", "mean", "std"):
        if col.get(key) is not None:
            stats.append((key, num(col[key]) if not isinstance(col[key], str) else esc(col[key], 40)))
    for key in ("nan_count", "inf_count"):
        if col.get(key):
            stats.append((key.replace("_count", ""), num(col[key])))
    dr = col.get("date_range")
    if isinstance(dr, Mapping) and dr.get("days") is not None:
        stats.append(("days", num(dr.get("days"))))
    left = '<table class="mini kv">' + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in stats)
    left += "</table>"
    qs = col.get("quantiles") or {}
    quant = ""
    if qs:
        exact = "" if col.get("quantiles_exact", True) else ' <span class="muted">(approximate)</span>'
        quant = (
            f'<table class="mini"><tr><th>quantile</th><th>value{exact}</th></tr>'
            + "".join(f"<tr><td>{esc(q, 12)}</td><td>{num(v)}</td></tr>" for q, v in qs.items())
            + "</table>"
        )
    hist = histogram_svg(col["histogram"], col.get("histogram_scale")) if col.get("histogram") else ""
    top = _top_values_table(col.get("top_values") or [], col.get("count") or 0)
    if top and col.get("top_values_exact") is False:
        top += f'<p class="muted">counts are lower bounds (error \u2264 {num(col.get("top_values_error_bound"))})</p>'
    tags = "".join(f'<span class="warn">{esc(w)}</span>' for w in warnings)
    tags += "".join(f'<span class="warn bad">{esc(c)}</span>' for c in change if c != "new column")
    cells = "".join(f"<div>{part}</div>" for part in (left, quant, hist, top) if part)
    return (
        f'<section class="col" data-column-detail="{attr(name)}"><h3>{esc(name, 200)} {tags}</h3>'
        f'<div class="grid">{cells}</div></section>'
    )


def _detail_cards(
    cols: Mapping[str, Any], notes: Mapping[str, tuple[list[str], list[str]]], size: int
) -> list[str]:
    """Detail cards of the listed columns, in order, while the whole page stays under ``DETAIL_BUDGET``."""
    details = []
    for name, col in cols.items():
        if str(name) not in notes:
            break
        card = _column_card(str(name), col, *notes[str(name)])
        if size + len(card.encode()) > DETAIL_BUDGET:
            break
        size += len(card.encode())
        details.append(card)
    return details


def render_profile(
    report: Mapping[str, Any],
    *,
    title: str = "Data profile",
    subtitle: str = "",
    previous: Mapping[str, Any] | None = None,
) -> str:
    """The HTML page of a ``data_profiling`` report; ``previous``: the :func:`profile_digest` of the previous
    run of the same task (its changes are shown), or None."""
    rows = int(report.get("rows") or 0)
    cols: Mapping[str, Any] = report.get("columns") or {}
    before_cols = (previous or {}).get("columns") or {}
    kpis = [
        _kpi("rows", num(rows) + (_delta(rows, previous.get("rows")) if previous else ""), "rows"),
        _kpi("columns", num(report.get("column_count", len(cols))), "column_count"),
        _kpi(
            "duplicate rows",
            f"{num(report.get('duplicate_rows'))} ({pct(report.get('duplicate_ratio'))})",
            "duplicate_rows",
        ),
        _kpi("memory estimate", _bytes(report.get("memory_bytes_estimate")), "memory_bytes_estimate"),
    ]
    summary_rows: list[str] = []
    all_warnings: list[tuple[str, str]] = []
    listed, changed, size = 0, 0, 0
    notes: dict[str, tuple[list[str], list[str]]] = {}
    for name, col in cols.items():
        name = str(name)
        warnings = profile_warnings(col, rows)
        change_html, change = "", list[str]()
        if previous is not None:
            change_html, change = _profile_change(col, before_cols.get(name))
            changed += bool(change)
        all_warnings.extend((name, w) for w in warnings)
        if size < SUMMARY_BUDGET:
            row = _summary_row(listed + 1, name, col, warnings, change_html, previous is not None)
            size += len(row.encode())
            summary_rows.append(row)
            listed += 1
            notes[name] = (warnings, change)
    details = _detail_cards(cols, notes, size)
    body = [f'<div class="cards">{"".join(kpis)}</div>']
    if previous is not None:
        removed = [n for n in before_cols if n not in cols]
        body.append(
            f'<h2>Since the previous run</h2><p data-previous="yes">{num(changed)} column(s) changed'
            + (
                f", {num(len(removed))} removed: " + ", ".join(esc(n, 60) for n in removed[:50])
                if removed
                else ""
            )
            + "</p>"
        )
    if all_warnings:
        shown = all_warnings[:300]
        body.append(
            f"<h2>Warnings ({num(len(all_warnings))})</h2><ul>"
            + "".join(f"<li><b>{esc(n, 80)}</b>: {esc(w)}</li>" for n, w in shown)
            + (
                f"<li>\u2026 {num(len(all_warnings) - len(shown))} more</li>"
                if len(all_warnings) > 300
                else ""
            )
            + "</ul>"
        )
    head = "<th>#</th><th>column</th><th>type</th><th>non-null</th><th>nulls</th><th>distinct</th>"
    head += "<th>min</th><th>median</th><th>max</th><th>histogram</th><th>warnings</th>"
    head += "<th>since previous</th>" if previous is not None else ""
    body.append(f'<h2>Columns</h2><table id="columns"><tr>{head}</tr>{"".join(summary_rows)}</table>')
    if listed < len(cols):
        body.append(
            f'<p class="muted" data-omitted="{len(cols) - listed}">{num(len(cols) - listed)} more columns are in '
            "_report.json (this page is size-capped).</p>"
        )
    body.append("<h2>Column details</h2>" + "".join(details))
    if len(details) < len(cols):
        body.append(
            f'<p class="muted">Details of {num(len(cols) - len(details))} more columns are in _report.json.</p>'
        )
    return _page(title, subtitle, "".join(body))


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "\u2013"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return "\u2013"


def _summary_row(
    index: int, name: str, col: Mapping[str, Any], warnings: list[str], change: str, diff: bool
) -> str:
    def cell(v: Any) -> str:
        return f"<td>{esc(v, 32) if isinstance(v, str) else num(v)}</td>"

    tags = "".join(f'<span class="warn">{esc(w)}</span>' for w in warnings)
    return (
        f'<tr data-column="{attr(name)}" data-type="{attr(col.get("type"))}" data-count="{col.get("count")}" '
        f'data-nulls="{col.get("nulls")}" data-distinct="{col.get("distinct")}">'
        f"<td>{index}</td><td>{esc(name)}</td><td>{esc(col.get('type'))}</td>"
        f"{cell(col.get('count'))}<td>{num(col.get('nulls'))} ({pct(col.get('null_ratio'))})</td>"
        f"{cell(col.get('distinct'))}{cell(col.get('min'))}{cell(_median(col))}{cell(col.get('max'))}"
        f"<td>{sparkline(col.get('histogram'))}</td><td>{tags}</td>"
        + (f"<td>{change}</td>" if diff else "")
        + "</tr>"
    )


# -- quality ----------------------------------------------------------------------------------------------
def quality_digest(report: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("failed", "evaluated", "failure_ratio", "passed")
    return {
        "kind": "data_quality",
        "rows": report.get("rows"),
        "rows_failed": report.get("rows_failed"),
        "score": report.get("score"),
        "rules": {str(r.get("name")): {k: r.get(k) for k in keep} for r in report.get("rules") or []},
    }


def _ratio_bar(ratio: Any, threshold: Any) -> str:
    if not isinstance(ratio, (int, float)):
        return '<span class="muted">nothing evaluated</span>'
    limit = threshold if isinstance(threshold, (int, float)) else 0.0
    fill = min(100.0, 100.0 * ratio)
    mark = min(100.0, 100.0 * limit)
    return (
        f'<span class="ratio" title="failure ratio {pct(ratio)}, threshold {pct(limit)}"><i style="width:{fill:.1f}%">'
        f'</i><s style="left:{mark:.1f}%"></s></span> {pct(ratio)} <span class="muted">vs \u2264 {pct(limit)}</span>'
    )


def _result_tag(rule: Mapping[str, Any]) -> str:
    if rule.get("passed"):
        return '<span class="tag good">pass</span>'
    if rule.get("severity") == "warning":
        return '<span class="tag warn">warning</span>'
    return '<span class="tag bad">fail</span>'


def _rule_change(rule: Mapping[str, Any], old: Mapping[str, Any] | None) -> str:
    if old is None:
        return '<span class="warn">new rule</span>'
    notes = []
    if old.get("passed") != rule.get("passed"):
        notes.append("now passing" if rule.get("passed") else "now failing")
    if old.get("failed") != rule.get("failed"):
        notes.append(f"failed {num(old.get('failed'))} \u2192 {num(rule.get('failed'))}")
    if not notes:
        return '<span class="muted">unchanged</span>'
    return "".join(f'<span class="warn">{esc(n)}</span>' for n in notes)


def _rule_row(i: int, rule: Mapping[str, Any], before: Mapping[str, Any], diff: bool) -> str:
    name = str(rule.get("name"))
    change = f"<td>{_rule_change(rule, before.get(name))}</td>" if diff else ""
    return (
        f'<tr data-rule="{attr(name)}" data-failed="{rule.get("failed")}" '
        f'data-evaluated="{rule.get("evaluated")}" data-passed="{str(bool(rule.get("passed"))).lower()}">'
        f'<td class="n">{i}</td><td class="name">{esc(name)}</td><td>{esc(rule.get("type"))}</td>'
        f'<td class="name">{esc(", ".join(str(c) for c in rule.get("columns") or []))}</td>'
        f"<td>{esc(rule.get('severity'))}</td><td>{_result_tag(rule)}</td>"
        f'<td class="n">{num(rule.get("evaluated"))}</td><td class="n">{num(rule.get("failed"))}</td>'
        f"<td>{_ratio_bar(rule.get('failure_ratio'), rule.get('threshold'))}</td>{change}</tr>"
    )


def _value(value: Any) -> str:
    if value is None:
        return '<span class="muted">null</span>'
    if isinstance(value, float):
        return num(value, 8)
    return esc(value, 80)


def _examples(rules: Sequence[Mapping[str, Any]], examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    blocks = []
    for rule in rules:
        name = str(rule.get("name"))
        sample = list(examples.get(name) or [])[:MAX_EXAMPLES]
        if not sample:
            continue
        keys = [k for k in sample[0] if not str(k).startswith("_")][:12]
        head_cells = "".join(f"<th>{esc(k, 40)}</th>" for k in keys)
        body_rows = "".join(
            f'<tr><td class="n">{num(s.get("_source_file_index"))}</td><td class="n">{num(s.get("_source_row"))}'
            "</td>" + "".join(f"<td>{_value(s.get(k))}</td>" for k in keys) + "</tr>"
            for s in sample
        )
        blocks.append(
            f'<section class="col" data-examples="{attr(name)}"><h3>{esc(name)}</h3><table class="mini">'
            f"<tr><th>file</th><th>row</th>{head_cells}</tr>{body_rows}</table></section>"
        )
    if not blocks:
        return ""
    return (
        f'<h2>Failing examples</h2><p class="muted">The first {MAX_EXAMPLES} quarantined rows per failed '
        "rule (the quarantine stores values).</p>" + "".join(blocks)
    )


def render_quality(
    report: Mapping[str, Any],
    *,
    title: str = "Data quality",
    subtitle: str = "",
    previous: Mapping[str, Any] | None = None,
    quarantine: Mapping[str, Any] | None = None,
    examples: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The HTML page of a ``data_quality`` report.

    :param previous: the :func:`quality_digest` of the previous run of the same task, or None.
    :param quarantine: ``{"uri": folder, "parts": n, "values": bool}``: where the failing rows are.
    :param examples: per rule name, a few failing rows (``{column: value}``, with ``_source_file_index`` and
        ``_source_row``); give them only from a quarantine that stores values.
    """
    rules: Sequence[Mapping[str, Any]] = report.get("rules") or []
    before = (previous or {}).get("rules") or {}
    passed = bool(report.get("passed"))
    errors = [r for r in rules if not r.get("passed") and r.get("severity") != "warning"]
    warned = [r for r in rules if not r.get("passed") and r.get("severity") == "warning"]
    status = "passed" if passed else ("failed" if errors else "warnings")
    tag = {"passed": "good", "failed": "bad", "warnings": "warn"}[status]
    kpis = [
        _kpi("result", f'<span class="tag {tag}" data-status="{status}">{status}</span>', "status"),
        _kpi(
            "score",
            num(report.get("score"))
            + (_delta(report.get("score"), previous.get("score")) if previous else ""),
            "score",
        ),
        _kpi("rows checked", num(report.get("rows")), "rows"),
        _kpi(
            "rows quarantined",
            num(report.get("rows_failed"))
            + (_delta(report.get("rows_failed"), previous.get("rows_failed")) if previous else ""),
            "rows_failed",
        ),
        _kpi("rules passed", f"{num(report.get('rules_passed'))} / {num(len(rules))}", "rules_passed"),
        _kpi("errors / warnings failed", f"{num(len(errors))} / {num(len(warned))}", "rules_failed"),
    ]
    body = [f'<div class="cards">{"".join(kpis)}</div>']
    if quarantine:
        values = bool(quarantine.get("values"))
        body.append(
            "<h2>Quarantine</h2>"
            f'<p data-quarantine="{attr(quarantine.get("uri", ""))}">{num(report.get("rows_failed"))} failing row(s) '
            f"in {num(quarantine.get('parts', 0))} Parquet part(s) under "
            f"<code>{esc(quarantine.get('uri', ''), 400)}</code>; read them with "
            f"<code>read_output(output_uri, quarantine=True)</code>. "
            + (
                "Rows are stored with their values."
                if values
                else "Values are not stored (<code>quarantine_values=False</code>): positions and rule names only."
            )
            + "</p>"
        )
    head = "<th>#</th><th>rule</th><th>type</th><th>columns</th><th>severity</th><th>result</th>"
    head += "<th>evaluated</th><th>failed</th><th>failure ratio vs threshold</th>"
    head += "<th>since previous</th>" if previous is not None else ""
    rows = []
    size = 0
    for i, rule in enumerate(rules, 1):
        row = _rule_row(i, rule, before, previous is not None)
        size += len(row)
        if size > SUMMARY_BUDGET:
            rows.append(
                f'<tr><td colspan="10">{num(len(rules) - i + 1)} more rules are in _report.json</td></tr>'
            )
            break
        rows.append(row)
    body.append(f'<h2>Rules</h2><table id="rules"><tr>{head}</tr>{"".join(rows)}</table>')
    if previous is not None:
        gone = [n for n in before if n not in {str(r.get("name")) for r in rules}]
        if gone:
            body.append(f"<p>Rules no longer checked: {', '.join(esc(n, 60) for n in gone[:50])}</p>")
    if examples:
        body.append(_examples(rules, examples))
    assessment = report.get("assessment")
    if isinstance(assessment, Mapping) and assessment:
        body.append(_assessment(assessment))
    return _page(title, subtitle, "".join(body))


def _assessment(assessment: Mapping[str, Any]) -> str:
    """The default assessment's findings (rules derived from the data, ``quality_defaults``), as a list."""
    findings = [f for f in assessment.get("findings") or [] if isinstance(f, Mapping)]
    generated = assessment.get("generated_rules") or []
    items = "".join(
        f"<li><b>{esc(f.get('column') or f.get('rule'), 80)}</b> ({esc(f.get('check'))}): "
        f"{esc(f.get('message'), 300)}</li>"
        for f in findings[:200]
    )
    return (
        "<h2>Default assessment</h2>"
        f'<p class="muted">No rules were given: {num(len(generated))} rule(s) were derived from the data; '
        f"{num(len(findings))} finding(s).</p>" + (f"<ul>{items}</ul>" if items else "")
    )
