"""The HTTP collector as a real process against the real broker (and a real browser for the snippet)."""

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
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner import murmur2

from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local import processes, stack
from schemas.contract import iso_from_ms
from streams.topic_reader import follow
from tests.collector_process import collector_process, request
from tests.topic_names import suffixed

pytestmark = pytest.mark.integration

KEYS = {"pos-1": "k-pos-1", "web-shop": "k-web", "limited": "k-limited"}
PATH = "/v1/touchpoints"
CHROMIUM = Path("/usr/bin/chromium")


def touchpoint(tag: str, n: int, type_: str = "VISIT", **extra: Any) -> dict[str, Any]:
    """One event in the design's JSON form."""
    event = {"event_id": f"{tag}-{n}", "journey_id": f"{tag}-j{n % 3}", "customer_id": "c-77", "type": type_,
             "channel": "pos", "occurred_at": iso_from_ms(int(time.time() * 1000)), "store_id": "seoul-01"}
    event.update(extra)
    return event


def on_topic(settings: Settings, tag: str) -> list[dict[str, Any]]:
    """Every record of the touchpoints topic whose event id carries `tag` (read until idle)."""
    records = (json.loads(line) for line in follow(settings, settings.topics.touchpoints, from_beginning=True,
                                                   idle_timeout_s=2))
    return [r for r in records if r["event_id"].startswith(f"{tag}-")]


def key(source: str) -> dict[str, str]:
    return {"X-Journey-Key": KEYS[source]}


class PageServer:
    """Serves the browser test page from its own origin (another port than the collector's)."""

    def __init__(self, root: Path) -> None:
        self.root = root

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageServer]:
    server = PageServer(tmp_path_factory.mktemp("shop"))
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def collector(stack_settings: Settings, page_server: PageServer,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One collector on topics of its own: three sources, the test page's origin, small limits."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(
        home=tmp_path_factory.mktemp("collector-home"), collector_port=processes.free_port(),
        collector_keys=KEYS, collector_origins=(page_server.origin,), collector_max_body_bytes=64 * 1024,
        collector_max_batch=100, collector_rate_per_s=100,
        topics=suffixed(stack_settings.topics, suffix),
    )
    ensure_topics(settings, settings.topics.all())
    with collector_process(settings):
        yield settings


def test_mixed_batch_answers_per_event_and_only_the_good_ones_reach_the_topic(collector: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    good = [touchpoint(tag, n) for n in range(8)]
    bad = {
        2: touchpoint(tag, 100, type_="TELEPORTED"),
        5: {k: v for k, v in touchpoint(tag, 101).items() if k != "journey_id"},
        7: touchpoint(tag, 102, occurred_at="yesterday"),
        9: touchpoint(tag, 103, source="someone-else"),
        11: "not an object",
    }
    batch: list[Any] = list(good)
    for index in sorted(bad):
        batch.insert(index, bad[index])
    status, _, answer = request(collector, "POST", PATH, batch, key("pos-1"))
    assert status == 207
    assert (answer["accepted"], answer["rejected"]) == (8, 5)
    by_index = {r["index"]: r for r in answer["results"]}
    assert [by_index[i]["status"] for i in range(len(batch))] == [
        "rejected" if i in bad else "accepted" for i in range(len(batch))]
    assert "TELEPORTED" in by_index[2]["reason"] and "journey_id" in by_index[5]["reason"]
    assert "occurred_at" in by_index[7]["reason"] and "source" in by_index[9]["reason"]
    assert "object" in by_index[11]["reason"]
    written = on_topic(collector, tag)
    assert Counter(r["event_id"] for r in written) == Counter(e["event_id"] for e in good)  # each once
    assert {r["source"] for r in written} == {"pos-1"}
    for record in written:  # keyed by journey id, on the partition kafka-python's emitter would pick
        assert record["partition"] == (murmur2(record["journey_id"].encode()) & 0x7FFFFFFF) % collector.partitions


def test_single_event_all_good_is_200_and_all_bad_is_400(collector: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    status, _, answer = request(collector, "POST", PATH, touchpoint(tag, 1, type_="BROWSE", channel="web"),
                                key("web-shop"))
    assert status == 200 and answer["results"] == [{"index": 0, "event_id": f"{tag}-1", "status": "accepted"}]
    status, _, answer = request(collector, "POST", PATH, [touchpoint(tag, 2, channel="fax")], key("web-shop"))
    assert status == 400 and answer["rejected"] == 1 and "channel" in answer["results"][0]["reason"]
    status, _, answer = request(collector, "POST", PATH, b"{not json", key("web-shop"))
    assert status == 400 and "not valid JSON" in answer["error"]
    assert [(r["event_id"], r["source"]) for r in on_topic(collector, tag)] == [(f"{tag}-1", "web-shop")]


def test_wrong_or_missing_key_is_401_and_nothing_is_produced(collector: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    for headers in ({"X-Journey-Key": "k-pos-1-guess"}, {}):
        status, _, answer = request(collector, "POST", PATH, [touchpoint(tag, 1)], headers)
        assert status == 401 and "X-Journey-Key" in answer["error"]
    status, _, _ = request(collector, "POST", f"{PATH}?key=nope", [touchpoint(tag, 2)])
    assert status == 401
    assert on_topic(collector, tag) == []
    assert "k-pos-1" not in (collector.home / "collector.log").read_text()


def test_oversize_body_and_batch_are_413_with_the_limit_and_nothing_is_produced(collector: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    padded = [touchpoint(tag, n, attrs={"note": "x" * 1000}) for n in range(70)]  # ~80 KB > 64 KiB
    status, _, answer = request(collector, "POST", PATH, padded, key("pos-1"))
    assert status == 413 and "65536 bytes" in answer["error"] and "JOURNEY_COLLECTOR_MAX_BODY_BYTES" in answer["error"]
    too_many = [touchpoint(tag, n) for n in range(101)]
    status, _, answer = request(collector, "POST", PATH, too_many, key("pos-1"))
    assert status == 413 and "101 events" in answer["error"] and "100" in answer["error"]
    assert on_topic(collector, tag) == []


def test_over_the_rate_is_429_with_retry_after_and_the_retry_goes_through(collector: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    batches = [[touchpoint(tag, b * 100 + n) for n in range(100)] for b in range(3)]
    statuses = [request(collector, "POST", PATH, batch, key("limited")) for batch in batches]
    assert [s[0] for s in statuses[:2]] == [200, 200]  # 100 events/s with 2 s of burst
    status, headers, answer = statuses[2]
    assert status == 429 and int(headers["Retry-After"]) >= 1 and "limited" in answer["error"]
    assert len(on_topic(collector, tag)) == 200  # the refused batch wrote nothing
    time.sleep(int(headers["Retry-After"]))
    assert request(collector, "POST", PATH, batches[2], key("limited"))[0] == 200
    # another source has its own budget
    assert request(collector, "POST", PATH, [touchpoint(tag, 999)], key("pos-1"))[0] == 200


def test_cors_only_for_configured_origins(collector: Settings, page_server: PageServer) -> None:
    preflight = {"Origin": page_server.origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-journey-key"}
    status, headers, _ = request(collector, "OPTIONS", PATH, None, preflight)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == page_server.origin
    assert "x-journey-key" in headers["Access-Control-Allow-Headers"].lower()
    tag = uuid.uuid4().hex[:8]
    status, headers, _ = request(collector, "POST", PATH, [touchpoint(tag, 1)],
                                 {**key("web-shop"), "Origin": "https://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert on_topic(collector, tag) == []


def test_healthz_and_snippet(collector: Settings) -> None:
    status, _, body = request(collector, "GET", "/healthz")
    assert status == 200 and body["status"] == "ok"
    status, headers, script = request(collector, "GET", "/journey.js")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript")
    assert b"sendBeacon" in script


def test_broker_down_is_503_and_a_retry_after_it_is_back_loses_nothing(
        stack_settings: Settings, tmp_path: Path) -> None:
    """A broker of the test's own, stopped under a running collector, then started again."""
    broker = stack_settings.with_(home=tmp_path / "broker", kafka_port=processes.free_port(), external_kafka=None)
    stack.start(broker, [stack.broker_component(broker)], echo=lambda _: None)  # also creates the topics
    settings = broker.with_(home=tmp_path / "collector", collector_port=processes.free_port(),
                            collector_keys=KEYS, collector_rate_per_s=0)
    tag = uuid.uuid4().hex[:8]
    batch = [touchpoint(tag, n) for n in range(20)]
    try:
        with collector_process(settings):
            assert request(settings, "POST", PATH, batch[:1], key("pos-1"))[0] == 200
            stack.stop(broker)
            status, headers, answer = request(settings, "POST", PATH, batch, key("pos-1"))
            assert status == 503 and int(headers["Retry-After"]) >= 1 and "retry" in answer["error"]
            assert processes.wait_until(lambda: request(settings, "GET", "/healthz")[0] == 503, 30)
            stack.start(broker, [stack.broker_component(broker)], echo=lambda _: None)
            statuses = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the client's retry loop, honouring Retry-After
                status, headers, _ = request(settings, "POST", PATH, batch, key("pos-1"))
                statuses.append(status)
                if status == 200:
                    break
                assert status == 503
                time.sleep(int(headers["Retry-After"]))
            assert statuses[-1] == 200, statuses
            # The embedded broker lost the first event with its memory; the whole retried batch is there.
            assert {r["event_id"] for r in on_topic(settings, tag)} == {e["event_id"] for e in batch}
    finally:
        stack.stop(broker)


def test_concurrent_batches_are_never_refused_by_aiokafkas_batch_slot(unique_topics: Settings, tmp_path: Path) -> None:
    """Regression: concurrent `send_batch` callers timed out in aiokafka's accumulator (a 503 on a healthy broker)."""
    settings = unique_topics.with_(home=tmp_path, collector_port=processes.free_port(), collector_keys=KEYS,
                                   collector_rate_per_s=0)
    tag = uuid.uuid4().hex[:8]
    batches = [[touchpoint(tag, b * 100 + n) for n in range(100)] for b in range(40)]
    with collector_process(settings), ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda batch: request(settings, "POST", PATH, batch, key("pos-1"))[0], batches))
    assert statuses == [200] * len(batches)
    written = Counter(r["event_id"] for r in on_topic(settings, tag))
    assert written == Counter(e["event_id"] for batch in batches for e in batch)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (`bash infra/dev.sh test`)")
def test_snippet_in_a_real_browser_sends_batches_and_a_beacon_on_page_exit(
        collector: Settings, page_server: PageServer) -> None:
    from playwright.sync_api import sync_playwright

    tag = uuid.uuid4().hex[:8]
    collector_url = f"http://{collector.host}:{collector.collector_port}"
    (page_server.root / f"{tag}.html").write_text(f"""<!doctype html><html><body><h1>shop</h1>
<script src="{collector_url}/journey.js"></script>
<script>
  window.answers = [];
  var jt = JourneyTracker.init({{key: "k-web", journeyId: "{tag}-web", customerId: "c-77", storeId: "web",
                                batchSize: 3, flushMs: 60000,
                                onAnswer: function (status, answer) {{ window.answers.push(status); }}}});
  jt.browse({{page: "/spoons"}});
  jt.cart({{sku: "spoon-3", qty: "2"}});
  jt.checkout();                       // the third event: a batch of 3 goes by fetch
  jt.browse({{page: "/forks"}});
  jt.track("CHECKOUT_COMPLETED", {{attrs: {{order: "o-9"}}}});   // these two wait for page exit
</script></body></html>""")
    ids: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(f"{page_server.origin}/{tag}.html")
            page.wait_for_function("window.answers.length > 0", timeout=30_000)
            assert page.evaluate("window.answers") == [200]
            ids = page.evaluate("jt.queue.map(function (e) { return e.event_id; })")
            assert len(ids) == 2
            page.goto("about:blank")  # pagehide: the two queued events leave by sendBeacon
        finally:
            browser.close()

    def arrived() -> list[dict[str, Any]]:
        return [json.loads(line) for line in follow(collector, collector.topics.touchpoints, from_beginning=True,
                                                    idle_timeout_s=1) if f'"{tag}-web"' in line]
    assert processes.wait_until(lambda: len(arrived()) >= 5, 30)
    records = arrived()
    assert [r["type"] for r in records] == ["BROWSE", "CART_UPDATED", "CHECKOUT_STARTED", "BROWSE",
                                            "CHECKOUT_COMPLETED"]
    assert {r["source"] for r in records} == {"web-shop"} and {r["channel"] for r in records} == {"web"}
    assert [r["event_id"] for r in records[3:]] == ids
    assert records[1]["attrs"] == {"sku": "spoon-3", "qty": "2"}


def test_keyless_collector_off_loopback_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, **Settings(home=tmp_path, host="0.0.0.0", collector_port=processes.free_port()).to_env()}
    env.pop("JOURNEY_COLLECTOR_KEYS", None)
    done = subprocess.run([sys.executable, "-m", "streams.collector"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "collector: the collector would listen on 0.0.0.0 without API keys: set JOURNEY_COLLECTOR_KEYS "
        "(source=key[,source=key...]) or bind it to loopback (JOURNEY_HOST=127.0.0.1)"]
