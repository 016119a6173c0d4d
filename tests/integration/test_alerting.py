"""On-call alerting through the real broker: a Faust worker, the notifier, webhooks and the CLI.

One worker and one notifier serve the module (short SLA and repeat interval from a rules file
of the test's own); each test uses its own journeys and stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.base.config import Settings
from infra.base.heartbeat import service_ready
from infra.local import processes
from infra.local.processes import wait_until
from streams.domain.config import DEFAULT_RULES_FILE
from streams.domain.incidents import incident_id
from streams.topic_reader import follow
from tests.integration.test_detection import event, incidents_until, produce, start_worker, stop_worker
from tests.topic_names import suffixed

pytestmark = pytest.mark.integration

TOKEN = "test-oncall-token"


class WebhookReceiver:
    """A real HTTP webhook receiver that fails the first `failures` posts of each alert."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: Counter[str] = Counter()
        self.delivered: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                alert_id = body["alert"]["alert_id"]
                receiver.attempts[alert_id] += 1
                ok = receiver.attempts[alert_id] > receiver.failures
                if ok:
                    receiver.delivered.append(body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered_ids(self) -> Counter[str]:
        return Counter(body["alert"]["alert_id"] for body in self.delivered)


def _rules_file(path: Path) -> Path:
    text = DEFAULT_RULES_FILE.read_text()
    text = text.replace("sla = { acknowledge_s = 120, first_response_s = 300, resolve_s = 900 }",
                        "sla = { acknowledge_s = 2, first_response_s = 300, resolve_s = 900 }", 1)
    text = text.replace("repeat_interval_s = 300", "repeat_interval_s = 2").replace("max_level = 3", "max_level = 2")
    text = text.replace("group_interval_s = 60", "group_interval_s = 1")  # escalations 2 s apart are not folded
    path.write_text(text)
    return path


def oncall_settings(stack_settings: Settings, home: Path, **changes: Any) -> Settings:
    """Settings for an on-call module: its own home, app id, web port and topics (created)."""
    from infra.base.kafka import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(
        home=home, app_id=f"jt-{suffix}", web_port=processes.free_port(),
        topics=suffixed(stack_settings.topics, suffix), **changes)
    ensure_topics(settings, settings.topics.all())
    return settings


@contextmanager
def running_notifier(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """The notifier as `journey up` runs it, ready, stopped on exit."""
    log = open(settings.home / "notifier.log", "ab")  # noqa: SIM115 - closed below
    notifier = subprocess.Popen([sys.executable, "-m", "consumers.notifier"], env={**os.environ, **settings.to_env()},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: service_ready(settings, "notifier") or notifier.poll() is not None, 60)
        assert notifier.poll() is None, (settings.home / "notifier.log").read_text()[-3000:]
        yield notifier
    finally:
        notifier.terminate()
        notifier.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def oncall(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A worker and a notifier on topics of their own, with a flaky and a healthy webhook."""
    home = tmp_path_factory.mktemp("oncall-home")
    flaky, healthy = WebhookReceiver(failures=2), WebhookReceiver(failures=0)
    settings = oncall_settings(stack_settings, home, oncall_token=TOKEN, rules_file=_rules_file(home / "rules.toml"),
                               webhooks={"flaky": flaky.url, "healthy": healthy.url})
    worker = start_worker(settings)
    try:
        with running_notifier(settings) as notifier:
            yield {"settings": settings, "flaky": flaky, "healthy": healthy, "notifier": notifier}
    finally:
        stop_worker(worker)
        flaky.server.shutdown()
        healthy.server.shutdown()


def alerts_of(settings: Settings, incident: str, until: Any, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Alerts of one incident on the alerts topic, read until `until(alerts)` holds or the timeout.

    Group summaries (kind `grouped`, keyed by their newest incident) are the group's, not its own.
    """
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [a for a in (json.loads(line) for line in follow(settings, settings.topics.alerts, True,
                                                                 idle_timeout_s=0.5))
                 if a["incident_id"] == incident and a["kind"] != "grouped"]
        if until(found):
            return found
        time.sleep(0.3)
    return found


def journey_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args], capture_output=True,
                          text=True, env={**os.environ, **settings.to_env()}, timeout=60)


def test_one_page_per_incident_and_a_flaky_webhook_gets_it_exactly_once(oncall: dict[str, Any]) -> None:
    settings = oncall["settings"]
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    complaint = event("COMPLAINT_FILED", now, f"{tag}-j", store_id=f"{tag}-store", event_id=f"{tag}-complaint")
    # the same complaint three times (a POS retrying), then changes that page nobody
    produce(settings, [complaint, complaint, complaint,
                       event("CUSTOMER_CONTACTED", now + 1000, f"{tag}-j"),
                       event("COMPENSATION_GIVEN", now + 2000, f"{tag}-j", attrs={"kind": "voucher", "amount": "5"})])
    iid = incident_id(f"{tag}-j", "complaint", f"{tag}-complaint")
    incidents_until(settings, lambda got: got.get(iid, {}).get("version", 0) >= 3)
    time.sleep(1.0)  # the notifier has seen every change by now
    alerts = alerts_of(settings, iid, lambda a: bool(a))
    assert [a["kind"] for a in alerts] == ["triggered"]
    assert alerts[0]["paged"] and "webhook:flaky" in alerts[0]["channels"]
    alert_id = alerts[0]["alert_id"]
    # the flaky receiver failed twice, then took it: exactly one delivery, three attempts
    assert wait_until(lambda: oncall["flaky"].delivered_ids()[alert_id] == 1, 20)
    assert oncall["flaky"].attempts[alert_id] == 3
    assert oncall["healthy"].delivered_ids()[alert_id] == 1  # the flaky one never held it back
    time.sleep(1.0)
    assert oncall["flaky"].delivered_ids()[alert_id] == 1


def test_escalates_after_the_target_and_a_cli_ack_stops_it(oncall: dict[str, Any]) -> None:
    settings = oncall["settings"]
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    produce(settings, [event("ITEM_REQUESTED", now, f"{tag}-t7", request_id="spoon", promised_within_s=1)])
    iid = incident_id(f"{tag}-t7", "promise_breach", "spoon")
    # ack SLA 2 s, repeat interval 2 s, max level 2 (the test's rules file)
    alerts = alerts_of(settings, iid, lambda a: [x["kind"] for x in a].count("escalated") >= 2)
    assert [(a["kind"], a["level"]) for a in alerts][:3] == [("triggered", 0), ("escalated", 1), ("escalated", 2)]
    assert "not acknowledged within 2 s" in alerts[1]["reason"]
    acked = journey_cli(settings, "ack", iid, "--by", "s-7", "--note", "spoon on its way")
    assert acked.returncode == 0, acked.stderr
    alerts = alerts_of(settings, iid, lambda a: any(x["kind"] == "acknowledged" for x in a))
    assert alerts[-1]["kind"] == "acknowledged" and "by s-7" in alerts[-1]["reason"]
    time.sleep(5)  # two more repeat intervals: nothing more after the ack
    after = alerts_of(settings, iid, lambda a: True)
    assert after[-1]["kind"] == "acknowledged" and len(after) == len(alerts)
    incident = incidents_until(settings, lambda got: got.get(iid, {}).get("acknowledged_by") == "s-7")[iid]
    assert incident["status"] == "acknowledged" and incident["time_to_acknowledge_s"] > 2
    assert incident["sla_acknowledge_breached"] is True
    # acting on it again, or on an unknown id, is a clear one-line error
    again = journey_cli(settings, "ack", iid)
    assert again.returncode == 1 and "already acknowledged (by s-7)" in again.stderr
    unknown = journey_cli(settings, "ack", "inc-doesnotexist")
    assert unknown.returncode == 1 and "unknown incident inc-doesnotexist" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    resolved = journey_cli(settings, "resolve", iid, "--by", "s-7")
    assert resolved.returncode == 0, resolved.stderr
    assert alerts_of(settings, iid, lambda a: a and a[-1]["kind"] == "resolved")[-1]["kind"] == "resolved"
    closed = journey_cli(settings, "resolve", iid)
    assert closed.returncode == 1 and "already resolved" in closed.stderr


def test_silenced_incident_pages_nobody_but_is_recorded(oncall: dict[str, Any]) -> None:
    settings = oncall["settings"]
    tag = uuid.uuid4().hex[:6]
    store = f"{tag}-quiet"
    added = journey_cli(settings, "silence", "add", "--store", store, "--for", "1h", "--comment", "refit")
    assert added.returncode == 0, added.stderr
    listed = journey_cli(settings, "silence", "list", "--json")
    assert store in listed.stdout
    time.sleep(1.0)  # the notifier follows the silences topic
    now = int(time.time() * 1000)
    produce(settings, [event("SERVICE_ERROR", now, f"{tag}-j", store_id=store, event_id=f"{tag}-err")])
    iid = incident_id(f"{tag}-j", "service_error", f"{tag}-err")
    alerts = alerts_of(settings, iid, lambda a: bool(a))
    assert [a["kind"] for a in alerts] == ["suppressed"]
    assert not alerts[0]["paged"] and "silenced by sil-" in alerts[0]["reason"] and alerts[0]["channels"] == ["topic"]
    time.sleep(1.5)
    assert alerts[0]["alert_id"] not in oncall["healthy"].delivered_ids()


def test_backfilled_incident_is_recorded_never_paged(oncall: dict[str, Any]) -> None:
    settings = oncall["settings"]
    tag = uuid.uuid4().hex[:6]
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    produce(settings, [event("COMPLAINT_FILED", two_hours_ago, f"{tag}-old", event_id=f"{tag}-c")])
    iid = incident_id(f"{tag}-old", "complaint", f"{tag}-c")
    alerts = alerts_of(settings, iid, lambda a: bool(a))
    assert [a["kind"] for a in alerts] == ["suppressed"] and "replay or backfill" in alerts[0]["reason"]


def test_on_call_api_needs_the_token(oncall: dict[str, Any]) -> None:
    import urllib.error
    import urllib.request

    settings = oncall["settings"]
    url = f"http://127.0.0.1:{settings.web_port}/api/incidents"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    wrong = urllib.request.Request(url, headers={"Authorization": "Bearer nope"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(wrong, timeout=10)
    good = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(good, timeout=10) as response:
        assert "incidents" in json.loads(response.read())
    assert TOKEN not in (settings.home / "notifier.log").read_text()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("JOURNEY_ARTIFACTS_DIR", Path(__file__).resolve().parents[1] / "artifacts"))


def test_on_call_page_in_a_real_browser_shows_the_incident_and_acknowledges_it(oncall: dict[str, Any]) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`bash infra/dev.sh test` installs it)")
    from playwright.sync_api import expect, sync_playwright

    settings = oncall["settings"]
    tag = uuid.uuid4().hex[:6]
    produce(settings, [event("COMPLAINT_FILED", int(time.time() * 1000), f"{tag}-web", store_id="seoul-02",
                             event_id=f"{tag}-c")])
    iid = incident_id(f"{tag}-web", "complaint", f"{tag}-c")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{settings.web_port}/#token={TOKEN}")
            assert "token" not in page.url  # the page moved the token out of the address bar
            page.fill("#me", "page-tester")
            page.dispatch_event("#me", "change")
            row = page.locator(f'tr[data-incident="{iid}"]')
            expect(row).to_be_visible(timeout=30_000)  # appeared without a reload
            expect(row).to_contain_text("complaint")
            expect(row).to_contain_text("seoul-02")
            page.screenshot(path=str(ARTIFACTS / "oncall-page-incident.png"), full_page=True)
            row.locator('button[data-action="ack"]').click()
            expect(row.locator("td.status")).to_contain_text("acknowledged by page-tester", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "oncall-page-acknowledged.png"), full_page=True)
        finally:
            browser.close()
    alerts = alerts_of(settings, iid, lambda a: any(x["kind"] == "acknowledged" for x in a))
    assert alerts[-1]["kind"] == "acknowledged" and "by page-tester" in alerts[-1]["reason"]
    assert (ARTIFACTS / "oncall-page-acknowledged.png").stat().st_size > 10_000
