"""Report helpers that need no ClickHouse: durations, store zones, the HTML page."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.html_report import render_html
from consumers.report import parse_since, store_timezones
from infra.errors import JourneyError


def test_since_durations() -> None:
    assert parse_since("24h", now_ms=100 * 3_600_000) == 76 * 3_600_000
    assert parse_since("2w", now_ms=14 * 86_400_000) == 0
    with pytest.raises(JourneyError, match="use a duration such as"):
        parse_since("yesterday")


def test_store_zones_from_file(tmp_path: Path) -> None:
    assert store_timezones()["seoul-01"] == "Asia/Seoul"
    bad = tmp_path / "stores.toml"
    bad.write_text('[stores."x"]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(JourneyError, match="unknown time zone 'Mars/Olympus'"):
        store_timezones(bad)


def test_html_report_has_charts_and_escapes_names() -> None:
    report = {
        "total_incidents": 3,
        "by_rule": [{"rule": "complaint", "servqual": "assurance", "incidents": 3, "ttr_p50_s": 400.0,
                     "sla_compliance": 0.5}],
        "by_servqual": {"assurance": 3},
        "by_local_hour": {**dict.fromkeys(range(24), 0), 21: 3},
        "worst_stores": [{"store": "<script>", "incidents": 3, "sla_compliance": 0.5, "ttr_p50_s": 400.0}],
    }
    page = render_html(report, "Service recovery")
    assert page.count("<svg") == 6
    assert "21:00" in page and "complaint" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
