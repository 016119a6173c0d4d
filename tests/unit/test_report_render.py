"""Report helpers that need no ClickHouse: durations, store zones, the HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumers.html_report import render_html
from consumers.report import parse_duration_s, store_timezones
from infra.base.errors import JourneyError


def test_since_durations() -> None:
    assert parse_duration_s("24h", "--since") == 86_400 and parse_duration_s("2w", "--since") == 14 * 86_400
    with pytest.raises(JourneyError, match="use a duration such as"):
        parse_duration_s("yesterday", "--since")


def test_store_zones_from_file(tmp_path: Path) -> None:
    assert store_timezones()["seoul-01"] == "Asia/Seoul"
    bad = tmp_path / "stores.toml"
    bad.write_text('[stores."x"]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(JourneyError, match="unknown time zone 'Mars/Olympus'"):
        store_timezones(bad)


def test_html_report_is_one_offline_file_with_chart_js_and_escaped_data() -> None:
    report = {"since_ms": 1_514_764_800_000, "until_ms": 1_517_443_200_000, "store": None,
              "total_incidents": 3, "by_rule": [{"rule": "</script><script>alert(1)</script>"}]}
    page = render_html(report, "Service recovery", {"seoul-01": {**report, "store": "seoul-01"}})
    assert "Chart.js v4.6.1" in page and "Released under the MIT License" in page  # vendored, licence kept
    assert "http://" not in page.split("<body>")[0] and "src=" not in page  # nothing loaded from elsewhere
    assert "alert(1)" in page and "</script><script>alert(1)" not in page  # data cannot close its element
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["from"] == "2018-01-01" and data["to"] == "2018-01-31"  # --to is inclusive: the day before until
    assert list(data["stores"]) == ["seoul-01"] and data["report"]["title"] == "Service recovery"
    for element in ("chart-paradox", "chart-first-response", "chart-compensation", "chart-trend-sla", "store", "from"):
        assert f'id="{element}"' in page
