"""The manager's dashboard page: served by the stack (`consumers.dashboard`) or written as one file
(`journey report --html FILE`).

One page (`dashboard_static/dashboard.html`) and one renderer (`dashboard.js`, charts by the vendored
Chart.js) for both. Served, the page links its assets (the server's CSP allows no inline script) and
fetches the report; as a file, the assets and the reports are inlined so it works offline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "dashboard_static"
SCRIPTS = ("vendor/chart.umd.min.js", "dashboard.js")
STYLE = "dashboard.css"
ASSET_TYPES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript",
               "vendor/chart.umd.min.js": "text/javascript", "favicon.svg": "image/svg+xml"}


def _template() -> str:
    return (STATIC / "dashboard.html").read_text(encoding="utf-8")


def served_page() -> str:
    """The page as the stack serves it: assets linked from /dashboard/static/."""
    scripts = "".join(f'<script src="/dashboard/static/{name}"></script>' for name in SCRIPTS)
    head = (f'<link rel="stylesheet" href="/dashboard/static/{STYLE}">'
            '<link rel="icon" href="/dashboard/static/favicon.svg">')
    return (_template().replace("<!--STYLE-->", head)
            .replace("<!--SCRIPTS-->", scripts))


def _inline_json(value: Any) -> str:
    # Inside <script> only "</" (and "<!--") could end or confuse the element: escape every "<".
    return json.dumps(value, default=str).replace("<", "\\u003c")


def day(ms: int) -> str:
    """Epoch ms -> 'YYYY-MM-DD' (UTC), as a date input shows it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def bundle(report: dict[str, Any], title: str, stores: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the page draws: the report, each store's report (drill-down), and the date range."""
    return {"report": {**report, "title": title}, "stores": {s: {**r, "title": f"{title}, store {s}"}
                                                          for s, r in (stores or {}).items()},
            "store": report.get("store") or "", "from": day(report["since_ms"]), "to": day(report["until_ms"] - 1)}


def render_html(report: dict[str, Any], title: str, stores: dict[str, dict[str, Any]] | None = None) -> str:
    """One self-contained HTML file: the dashboard with its charts, data and scripts inlined."""
    style = (STATIC / STYLE).read_text(encoding="utf-8")
    scripts = "".join(f"<script>\n{(STATIC / name).read_text(encoding='utf-8')}\n</script>" for name in SCRIPTS)
    data = f'<script type="application/json" id="report-data">{_inline_json(bundle(report, title, stores))}</script>'
    head = f'<style>\n{style}</style><link rel="icon" href="data:,">'  # data:, = no icon request
    return (_template().replace("<!--STYLE-->", head)
            .replace("<!--SCRIPTS-->", data + scripts))
