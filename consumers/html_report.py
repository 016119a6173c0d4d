"""`journey report --html FILE`: the same report as a self-contained page with SVG charts."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem} td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.bar{fill:#3b78c2} .bar2{fill:#e08a2c} text{font-size:11px}
"""


def _bars(title: str, items: list[tuple[str, float]], unit: str = "", width: int = 520) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no external assets)."""
    if not items:
        return f"<h2>{html.escape(title)}</h2><p>no data</p>"
    top = max(v for _, v in items) or 1
    row_h, label_w = 22, 170
    parts = [f'<svg width="{width + label_w + 80}" height="{row_h * len(items) + 10}" role="img" '
             f'aria-label="{html.escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = i * row_h + 4
        w = max(1, int(width * value / top))
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(label)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y}" width="{w}" height="{row_h - 6}"/>'
                     f'<text x="{label_w + w + 6}" y="{y + 14}">{value:g}{unit}</text>')
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def _fmt(value: Any) -> str:
    return "–" if value is None or value != value else html.escape(str(value))


def render_html(report: dict[str, Any], title: str) -> str:
    """The report dict from `recovery_report` as an HTML page."""
    rules = report["by_rule"]
    columns = list(rules[0]) if rules else []
    table = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in columns) + "</tr>" for r in rules)
    table += "</table>"
    generated = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{html.escape(title)}</h1><p>{report['total_incidents']} incidents · generated {generated}</p>",
        _bars("Incidents by rule", [(r["rule"], r["incidents"]) for r in rules]),
        _bars("Incidents by SERVQUAL dimension", list(report["by_servqual"].items())),
        _bars("Median time to resolve (s)", [(r["rule"], r["ttr_p50_s"]) for r in rules if r["ttr_p50_s"] is not None],
              " s"),
        _bars("SLA compliance by rule", [(r["rule"], r["sla_compliance"]) for r in rules
                                         if r["sla_compliance"] is not None]),
        _bars("Incidents by local hour of the store",
              [(f"{h:02d}:00", n) for h, n in sorted(report["by_local_hour"].items()) if n]),
        _bars("Stores with the most incidents", [(s["store"], s["incidents"]) for s in report["worst_stores"]]),
        "<h2>By rule</h2>" + table,
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
