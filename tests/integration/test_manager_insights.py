"""The manager's insights on a simulated month with a planted effect, through the real pipeline.

The simulator (`ReturnModel`) plants who comes back: customers whose failure was recovered with a
fast first response (<= 5 min) come back within 30 days with p = 0.8, slower ones 0.35, never
recovered 0.15, no failure 0.5, +0.1 with compensation. The month goes through a real worker and
sink into ClickHouse (January 2013, a range no other test writes); the report must then

- count exactly what the simulation did (customers per group and bucket, how many came back), and
- recover the planted rates: each within 4 binomial standard errors (+0.02) of the planted mean,
  and the planted ordering (fast > slow > not recovered; recovered > not recovered).

The same data feeds the dashboard, served by a real notifier and opened in headless Chromium
(elements present, charts drawn, no console errors, a screenshot), and `journey report --html`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.insights import FIRST_RESPONSE_BUCKETS
from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local import processes
from infra.local.services import notifier_components
from streams.demo import send
from streams.simulator import Injected, ReturnModel, Simulation, simulate
from tests.integration.faults import Service, client_for, sink_component, worker_component
from tests.topic_names import suffixed

pytestmark = pytest.mark.integration

MODEL = ReturnModel()
START = datetime(2013, 1, 7, tzinfo=UTC)  # a Monday: weeks line up
DAYS = 21
ONCALL, MANAGER = "insights-oncall-token", "insights-manager-token"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("JOURNEY_ARTIFACTS_DIR", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def planted(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("insights-home")
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(
        home=home, app_id=f"jt-{suffix}", web_port=processes.free_port(), oncall_token=ONCALL, manager_token=MANAGER,
        topics=suffixed(stack_settings.topics, suffix))
    ensure_topics(settings, settings.topics.all())
    services = [Service(settings, worker_component(settings, 0)).start(),
                Service(settings, sink_component(settings)).start(),
                Service(settings, notifier_components(settings)[0]).start()]
    try:
        start_ms = int(START.timestamp() * 1000)
        sim = simulate(int(suffix, 16) % 10_000, 1500, start_ms, DAYS * 86400, failure_rate=0.4, returns=MODEL)
        send(settings, sim, speed=(sim.end_ms - start_ms) / 1000 / 12, on_sent=lambda n: None)
        prefix = sim.events[0]["event_id"].rsplit("-", 1)[0] + "-"
        # data goes on for 100 more days (one anonymous visit): every customer can be judged at 90 days too
        later = {**sim.events[-1], "event_id": f"{prefix}later", "journey_id": f"{prefix}later", "customer_id": None,
                 "type": "VISIT", "stage": "before", "occurred_at": start_ms + 100 * 86_400_000, "attrs": {}}
        send(settings, Simulation(events=[later], start_ms=later["occurred_at"], end_ms=later["occurred_at"]),
             speed=1.0, on_sent=lambda n: None)
        client = client_for(settings)

        def landed() -> bool:
            p = {"p": prefix}
            incidents = client.query("SELECT count() FROM journey.incidents FINAL "
                                     "WHERE startsWith(trigger_event_id, {p:String})", parameters=p).result_rows[0][0]
            events = client.query("SELECT count() FROM journey.touchpoints FINAL "
                                  "WHERE startsWith(event_id, {p:String})", parameters=p).result_rows[0][0]
            return incidents == len(sim.truth) and events >= len(sim.events)

        assert processes.wait_until(landed, 240, 2), [s.log_tail() for s in services]
        time.sleep(3)  # the last incident versions (resolutions) after the counts matched
        yield {"settings": settings, "sim": sim}
    finally:
        for service in services:
            service.stop()


def journey_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args],
                          env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=180)


def _window_args() -> list[str]:
    last = datetime.fromtimestamp(START.timestamp() + (DAYS - 1) * 86400, tz=UTC)
    return ["--from", START.strftime("%Y-%m-%d"), "--to", last.strftime("%Y-%m-%d")]


def expected_customers(sim: Simulation, until_ms: int) -> list[dict[str, Any]]:
    """Each customer as the simulation made them: their first journey's failure (if it falls in the report's
    range; one after it leaves a first journey without a failure in range), and whether they came back."""
    first: dict[str, str] = {}
    started: dict[str, int] = {}
    came_back: set[str] = set()
    paid: dict[str, float] = defaultdict(float)
    for e in sim.events:
        if e["type"] == "PAYMENT_SUCCEEDED":
            paid[e["journey_id"]] += float(e["attrs"].get("amount", 0))
        if "-back" in e["journey_id"]:
            came_back.add(e["customer_id"])
        else:
            first.setdefault(e["customer_id"], e["journey_id"])
            started.setdefault(e["journey_id"], e["occurred_at"])
    truth: dict[str, Injected] = {t.journey_id: t for t in sim.truth if t.failed_at < until_ms}
    return [{"failure": truth.get(journey), "back": customer in came_back, "paid": paid.get(journey),
             "ref_ms": truth[journey].failed_at if journey in truth else started[journey]}
            for customer, journey in first.items()]


def group_of(c: dict[str, Any]) -> str:
    failure = c["failure"]
    return "no_failure" if failure is None else "recovered" if failure.resolve_s is not None else "not_recovered"


def speed_bucket(c: dict[str, Any]) -> str:
    s = c["failure"].first_response_s
    return "no response" if s is None else next(label for label, top in FIRST_RESPONSE_BUCKETS if s < top)


def assert_recovers(measured: dict[str, Any], members: list[dict[str, Any]], newest_ms: int, what: str) -> None:
    """Exact counts against the simulation; the rate within the stated tolerance of the planted one.

    A customer counts once 30 days have passed since their reference before the newest data (every
    planted return falls within 29 days, so none of those is cut off).
    """
    assert measured["customers"] == len(members), what
    for days in (30, 90):  # every planted return falls within 29 days: the same customers at 90 days
        judged = [c for c in members if c["ref_ms"] + days * 86_400_000 <= newest_ms]
        assert measured[f"eligible_{days}d"] == len(judged), what
        assert measured[f"returned_{days}d"] == sum(c["back"] for c in judged), what
    members = [c for c in members if c["ref_ms"] + 30 * 86_400_000 <= newest_ms]
    assert len(members) > 20, what
    planted = sum(MODEL.probability(c["failure"]) for c in members) / len(members)
    tolerance = 4 * math.sqrt(planted * (1 - planted) / len(members)) + 0.02
    assert abs(measured["return_rate_30d"] - planted) <= tolerance, (what, measured["return_rate_30d"], planted)


def test_report_recovers_the_planted_recovery_paradox_and_speed_effect(planted: dict[str, Any]) -> None:
    result = journey_cli(planted["settings"], "report", *_window_args(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"recovery_paradox", "trend", "rates", "causes"} <= set(report)
    customers = expected_customers(planted["sim"], report["until_ms"])
    newest = report["newest_data_ms"]  # this month's end, or later data other tests wrote
    overall = report["recovery_paradox"]["overall"]
    by_group = defaultdict(list)
    for c in customers:
        by_group[group_of(c)].append(c)
    for group in ("recovered", "not_recovered", "no_failure"):
        assert_recovers(overall["groups"][group], by_group[group], newest, group)
    groups = overall["groups"]
    assert groups["recovered"]["return_rate_30d"] > groups["no_failure"]["return_rate_30d"] > \
        groups["not_recovered"]["return_rate_30d"]  # the paradox as planted
    failed = [c for c in customers if c["failure"] is not None]
    speed = {b["bucket"]: b for b in overall["by_first_response"]}
    for bucket in ("2-5 min", "5-15 min", "no response"):
        assert_recovers(speed[bucket], [c for c in failed if speed_bucket(c) == bucket], newest, bucket)
    assert speed["2-5 min"]["return_rate_30d"] - speed["5-15 min"]["return_rate_30d"] > 0.25  # planted: 0.45
    compensation = {b["bucket"]: b for b in overall["by_compensation"]}
    given = [c for c in failed if c["failure"].compensation_amount and c["paid"]]
    assert_recovers(compensation["10-25%"], [c for c in given if 0.10 <= 5.0 / c["paid"] < 0.25], newest, "10-25%")
    assert_recovers(compensation["none"], [c for c in failed if not c["failure"].compensation_amount], newest,
                    "none")
    # per store: every customer once per store they failed at or visited first, adding up to the overall count
    stores = report["recovery_paradox"]["by_store"]
    assert {"seoul-01", "seoul-02", "busan-01", "web-shop"} <= set(stores)
    assert sum(s["groups"]["recovered"]["customers"] for s in stores.values()) == groups["recovered"]["customers"]


def test_rates_trend_and_causes_add_up(planted: dict[str, Any]) -> None:
    sim = planted["sim"]
    report = json.loads(journey_cli(planted["settings"], "report", *_window_args(), "--json").stdout)
    start_ms, end_ms = report["since_ms"], report["until_ms"]
    first_event: dict[str, dict[str, Any]] = {}
    for e in sim.events:
        first_event.setdefault(e["journey_id"], e)
    started = [e for e in first_event.values() if start_ms <= e["occurred_at"] < end_ms]
    in_window = [t for t in sim.truth if start_ms <= t.failed_at < end_ms]
    assert report["rates"]["journeys"] == len(started)
    assert sum(r["incidents"] for r in report["rates"]["by_store"]) == len(in_window) == report["total_incidents"]
    seoul = next(r for r in report["rates"]["by_store"] if r["store"] == "seoul-01")
    seoul_journeys = sum(e["store_id"] == "seoul-01" for e in started)
    assert seoul["journeys"] == seoul_journeys
    assert seoul["per_100_journeys"] == round(100 * seoul["incidents"] / seoul_journeys, 2)
    assert [w["week"] for w in report["trend"]] == ["2013-01-07", "2013-01-14", "2013-01-21"]
    assert sum(w["incidents"] for w in report["trend"]) == len(in_window)
    assert all(0 <= w["sla_all"] <= 1 and w["median_resolve_s"] > 0 for w in report["trend"])
    top = report["causes"][0]
    abandoned = sum(t.kind == "abandoned_checkout" for t in in_window)
    assert (top["rule"], top["cause"], top["store"], top["incidents"]) == ("abandonment", "checkout", "web-shop",
                                                                           abandoned)
    assert sum(top["by_local_hour"]) == abandoned


def test_backfilled_month_is_reached_with_since_at_newest_or_dates(planted: dict[str, Any]) -> None:
    settings = planted["settings"]
    today = journey_cli(settings, "report", "--since", "7d", "--store", "busan-01", "--json")
    # the window counts back from today: it cannot reach the planted 2013 month (the shared ClickHouse
    # may hold other tests' recent busan-01 rows, so the window's own figures are not asserted here)
    assert json.loads(today.stdout)["since_ms"] > int(START.timestamp() * 1000) + 100 * 86_400_000
    if json.loads(today.stdout)["newest_data_ms"] < json.loads(today.stdout)["since_ms"]:  # only 2013 data so far
        assert "add --at-newest" in today.stderr
    newest = json.loads(journey_cli(settings, "report", "--since", "30d", "--at-newest", "--json").stdout)
    assert newest["until_ms"] == newest["newest_data_ms"] + 1
    assert newest["since_ms"] == newest["until_ms"] - 30 * 86_400_000
    assert newest["newest_data_ms"] >= int(START.timestamp() * 1000) + 100 * 86_400_000  # at least our last visit
    bad = journey_cli(settings, "report", "--from", "January")
    assert bad.returncode != 0 and "use a date such as 2018-03-01" in bad.stderr and "Traceback" not in bad.stderr


def _api(settings: Settings, token: str | None, query: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"X-Journey-Token": token} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}/dashboard/api/report{query}",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_dashboard_api_needs_the_manager_or_on_call_token(planted: dict[str, Any]) -> None:
    settings = planted["settings"]
    assert _api(settings, None)[0] == 401 and _api(settings, "wrong")[0] == 401
    status, body = _api(settings, MANAGER, "?from=2013-01-07&to=2013-01-27&store=seoul-02")
    assert status == 200 and body["report"]["store"] == "seoul-02" and "busan-01" in body["stores"]
    assert _api(settings, ONCALL, "?from=2013-01-07&to=2013-01-27")[0] == 200
    assert _api(settings, MANAGER, "?from=someday")[0] == 400


def _browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def _drawn_charts(page: Any) -> int:
    """Charts Chart.js holds whose canvas has coloured pixels (drawn, not blank)."""
    return page.evaluate("""() => Object.values(Chart.instances).filter((c) => {
        const d = c.ctx.getImageData(0, 0, c.canvas.width, c.canvas.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
        return false; }).length""")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (`bash infra/dev.sh test`)")
def test_dashboard_in_a_real_browser(planted: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = planted["settings"]
    html_file = tmp_path / "report.html"
    written = journey_cli(settings, "report", *_window_args(), "--html", str(html_file), "--json")
    assert written.returncode == 0, written.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            # served by the stack: the manager token in the fragment, then a date range and a store
            page.goto(f"http://127.0.0.1:{settings.web_port}/dashboard#token={MANAGER}")
            assert "token" not in page.url
            expect(page.locator("body")).to_have_attribute("data-ready", "yes", timeout=120_000)
            page.evaluate("document.body.dataset.ready = ''")
            page.fill("#from", "2013-01-07")
            page.fill("#to", "2013-01-27")
            page.dispatch_event("#to", "change")
            expect(page.locator("body")).to_have_attribute("data-ready", "yes", timeout=120_000)
            expect(page.locator("#range")).to_contain_text("2013-01-07 00:00 to 2013-01-28 00:00 UTC")
            assert _drawn_charts(page) == 11
            expect(page.locator("#rules tbody tr")).to_have_count(5)
            expect(page.locator("#rules td.missed").first).to_be_visible()  # colour carries met / missed
            expect(page.locator("dl.legend dt")).to_have_count(12)
            assert "%" in page.locator("#kpi-sla").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            page.evaluate("document.body.dataset.ready = ''")
            page.select_option("#store", "busan-01")
            expect(page.locator("body")).to_have_attribute("data-ready", "yes", timeout=120_000)
            expect(page.locator("#range")).to_contain_text("store busan-01")
            expect(page.locator("#chart-stores")).to_be_visible()
            # the file from `journey report --html`: offline, each store's figures inside
            offline = browser.new_page(viewport={"width": 1400, "height": 900})
            offline.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            offline.on("pageerror", lambda e: problems.append(str(e)))
            offline.route("http*://**", lambda route: (problems.append(f"fetched {route.request.url}"), route.abort()))
            offline.goto(html_file.as_uri())
            expect(offline.locator("body")).to_have_attribute("data-ready", "yes", timeout=30_000)
            assert _drawn_charts(offline) == 11
            offline.select_option("#store", "seoul-01")
            expect(offline.locator("#range")).to_contain_text("store seoul-01")
            assert offline.locator("#from").is_disabled()
            offline.screenshot(path=str(ARTIFACTS / "dashboard-file.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 100_000
    if os.environ.get("JOURNEY_UPDATE_SCREENSHOT"):  # refresh the README's picture
        shutil.copy(ARTIFACTS / "dashboard.png", Path(__file__).resolve().parents[1] / "screenshots" / "dashboard.png")
