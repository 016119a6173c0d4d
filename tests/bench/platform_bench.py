"""Benchmark (not a test): shop-platform webhook deliveries through the collector, and `journey import`.

    python -m tests.bench.platform_bench [--deliveries 5000] [--concurrency 8] [--orders 10000]

Starts its own broker and a real collector process with the three platforms' secrets, then:
- webhooks: `--concurrency` clients POST signed deliveries back to back (Shopify orders/create,
  Square payment.updated, WooCommerce order.updated in turn, each with its own delivery id),
  every answer 200 "produced"; deliveries/s. Baseline in the same run: the same number of
  plain `POST /v1/touchpoints` requests of one event each (HTTP, validation and Kafka without
  signature checks and mapping);
- import: a generated export of `--orders` orders (rows grouped by order) read, mapped, sorted
  and produced as `journey import` does; events/s. Baseline: the same events, already
  validated, produced by the emitter alone (what Kafka costs).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local import processes
from schemas.contract import iso_from_ms
from streams.emitter import TouchpointEmitter, fewer_gc_passes
from streams.history_import import load_mapping, read_export
from streams.import_producer import produce_history
from streams.platforms.common import sign
from streams.platforms.routes import platforms
from tests.bench.collector_bench import closed_loop
from tests.bench.common import bench_servers
from tests.collector_process import collector_process
from tests.history_export import generate, start_for, write_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "platforms"
MAPPING = Path(__file__).parents[2] / "infra" / "examples" / "orders_reviews.toml"
SECRETS = {"shopify_webhook_secret": "bench-shopify", "square_signature_key": "bench-square",
           "square_notification_url": "https://bench.example/v1/webhooks/square",
           "woocommerce_webhook_secret": "bench-wc"}
KEY = "bench-key"


def deliveries(count: int, round_: int = 0) -> list[tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers) of `count` signed deliveries, the three platforms in turn."""
    shop = json.loads((FIXTURES / "shopify_orders_create.json").read_text())
    square = json.loads((FIXTURES / "square_payment_updated_failed.json").read_text())
    woo = json.loads((FIXTURES / "woocommerce_order_processing.json").read_text())
    at = iso_from_ms(int(time.time() * 1000) - 60_000)
    out = []
    for n in range(count):
        if n % 3 == 0:
            body = json.dumps(dict(shop, id=n, checkout_token=f"t{n}", created_at=at)).encode()
            out.append(("/v1/webhooks/shopify", body, {
                "X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"s-{round_}-{n}",
                "X-Shopify-Shop-Domain": "bench.myshopify.com",
                "X-Shopify-Hmac-Sha256": sign(SECRETS["shopify_webhook_secret"], body)}))
        elif n % 3 == 1:
            payload = copy.deepcopy(square)
            payload["event_id"] = f"q-{round_}-{n}"
            payload["data"]["object"]["payment"].update(order_id=f"o{n}", updated_at=at)
            body = json.dumps(payload).encode()
            signed = SECRETS["square_notification_url"].encode() + body
            out.append(("/v1/webhooks/square", body, {
                "x-square-hmacsha256-signature": sign(SECRETS["square_signature_key"], signed)}))
        else:
            body = json.dumps(dict(woo, id=n, date_paid_gmt=at[:-1], meta_data=[])).encode()
            out.append(("/v1/webhooks/woocommerce", body, {
                "X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Source": "https://bench.example/",
                "X-WC-Webhook-Delivery-ID": f"{round_}-{n}",
                "X-WC-Webhook-Signature": sign(SECRETS["woocommerce_webhook_secret"], body)}))
    return out


def plain_requests(hooks: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[str, bytes, dict[str, str]]]:
    """Per delivery, one `POST /v1/touchpoints` of the very touchpoints it maps to (same count, same journeys)."""
    out = []
    for path, body, headers in hooks:
        platform = path.rsplit("/", 1)[1]
        routes = platforms(Settings().with_(**SECRETS))
        delivery = routes[platform].delivery(CIMultiDict(headers), body)
        events = routes[platform].mapper(delivery, 0).events
        out.append(("/v1/touchpoints", json.dumps([dict(e, event_id="p" + e["event_id"]) for e in events]).encode(),
                    {"X-Journey-Key": KEY}))
    return out


async def post_all(base: str, requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency * 4)) as session:
        def post(path: str, body: bytes, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                async with session.post(base + path, data=body,
                                        headers={**headers, "Content-Type": "application/json"}) as response:
                    answer = await response.json()
                    assert response.status == 200 and answer.get("status", "produced") == "produced", answer
            return run
        return await closed_loop([post(*r) for r in requests], concurrency)


def measure_webhooks(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://{settings.host}:{settings.collector_port}"
    rounds = [deliveries(args.deliveries, r) for r in range(2)]
    plain = plain_requests(rounds[0])
    asyncio.run(post_all(base, plain[:50], args.concurrency))  # warm up
    # alternated, best of two each: on a shared machine the load moves between runs
    hooks_s = plain_s = float("inf")
    for hooks in rounds:
        hooks_s = min(hooks_s, asyncio.run(post_all(base, hooks, args.concurrency)))
        plain_s = min(plain_s, asyncio.run(post_all(base, plain, args.concurrency)))
    rate, plain_rate = args.deliveries / hooks_s, args.deliveries / plain_s
    events = sum(len(json.loads(body)) for _, body, _ in plain)
    return {"webhook_deliveries_per_s": {
        "value": round(rate), "baseline": round(plain_rate), "ratio": round(rate / plain_rate, 3),
        "note": f"{args.deliveries} signed deliveries (Shopify, Square, WooCommerce in turn; {events} touchpoints), "
                f"{args.concurrency} clients; baseline: per delivery, its touchpoints as one POST /v1/touchpoints"}}


def measure_import(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        rows, _ = generate(args.orders, start_for(args.orders, int(time.time() * 1000)))
        export = write_export(Path(tmp) / "export.csv", rows)
        started = time.perf_counter()
        with fewer_gc_passes():  # as the command reads
            plan = read_export(export, load_mapping(MAPPING))
        read_s = time.perf_counter() - started
    # alternated, best of two each, every run into a topic of its own created beforehand
    produce_s = emit_s = float("inf")
    for round_ in range(2):
        mine, base = (settings.with_(topics=type(settings.topics)(touchpoints=f"{name}-{round_}"))
                      for name in ("imported", "emitted"))
        ensure_topics(settings, [mine.topics.touchpoints, base.topics.touchpoints])
        started = time.perf_counter()
        produce_history(mine, plan.events, lambda n: None)
        produce_s = min(produce_s, time.perf_counter() - started)
        started = time.perf_counter()
        with fewer_gc_passes(), TouchpointEmitter(base) as emitter:
            emitter.send_many(plan.events)
            emitter.flush()
        emit_s = min(emit_s, time.perf_counter() - started)
    events = len(plan.events)
    import_s = read_s + produce_s
    return {"import_events_per_s": {
        "value": round(events / import_s), "baseline": round(events / emit_s), "ratio": round(emit_s / import_s, 3),
        "note": f"{args.orders} orders, {len(rows)} rows -> {events} events (reading and sorting {read_s:.1f} s, "
                f"producing {produce_s:.1f} s); baseline: the same events produced by the emitter alone"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--orders", type=int, default=10000)
    args = parser.parse_args()
    with bench_servers("platformbench") as servers:
        settings = servers.with_(home=servers.home / "collector", collector_port=processes.free_port(),
                                 collector_keys={"bench": KEY}, collector_rate_per_s=0, **SECRETS)
        with collector_process(settings):
            result = measure_webhooks(settings, args)
        result.update(measure_import(settings, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
