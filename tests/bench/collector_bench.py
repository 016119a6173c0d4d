"""Benchmark (not a test): what the HTTP collector accepts with batches of 100, and its latency.

    python -m tests.bench.collector_bench [--batches 400] [--concurrency 8] [--rate 2000] [--seconds 10]

Starts its own broker and a real collector process (rate limit off), then measures from an
aiohttp client in this process:
- throughput: `--concurrency` clients POST batches of 100 back to back; accepted events/s
  (every answer must be 200: accepted means acknowledged by the broker, acks=all);
- latency at a stated rate: `--rate` events/s (batches of 100 sent on a fixed schedule, open
  loop, so a slow answer does not slow the sender), p50/p99 from the scheduled send time.
Baseline in the same run: a bare aiokafka producer (acks=all) sending the same events, already
Avro-encoded, in batches of 100 with the same concurrency / schedule: what Kafka alone costs.
Also printed: `kafka_path_events_per_s`, the collector's own Kafka path (`PartitionFeeds`) fed
the same encoded events, so the rest of the gap is HTTP, JSON and validation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiokafka import AIOKafkaProducer

from infra.local import processes
from schemas.codec import encode
from schemas.contract import iso_from_ms, validate_event
from streams.collector.feeds import PartitionFeeds
from tests.bench.common import bench_servers
from tests.collector_process import collector_process

BATCH = 100
KEY = "bench-key"


def batches(count: int, tag: str) -> list[list[dict[str, object]]]:
    """`count` batches of 100 events in the design's JSON form (a mix of types, 5k journeys)."""
    types = ["VISIT", "BROWSE", "CART_UPDATED", "CHECKOUT_STARTED", "CHECKOUT_COMPLETED"]
    at = iso_from_ms(int(time.time() * 1000) - 60_000)
    return [[{"event_id": f"{tag}-{b}-{i}", "journey_id": f"j-{(b * BATCH + i) % 5000}", "customer_id": f"c-{i}",
              "type": types[i % len(types)], "channel": "web", "occurred_at": at, "store_id": "web",
              "attrs": {"page": "/spoons", "sku": "spoon-3"}} for i in range(BATCH)] for b in range(count)]


async def closed_loop(jobs: list[Callable[[], Awaitable[None]]], concurrency: int) -> float:
    """Run the jobs with `concurrency` workers back to back; seconds taken."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def open_loop(jobs: list[Callable[[], Awaitable[None]]], per_s: float) -> list[float]:
    """Start job i at i / per_s seconds; latency of each in ms from its scheduled start."""
    latencies: list[float] = []
    start = time.perf_counter() + 0.1

    async def one(i: int, job: Callable[[], Awaitable[None]]) -> None:
        scheduled = start + i / per_s
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        await job()
        latencies.append((time.perf_counter() - scheduled) * 1000)
    await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
    return latencies


def quantiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1)}


async def measure(url: str, bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, object]:
    load = batches(args.batches, "t")
    timed = batches(int(args.rate * args.seconds / BATCH), "l")
    bodies = [json.dumps(b).encode() for b in load]
    timed_bodies = [json.dumps(b).encode() for b in timed]
    encoded = [[(e["journey_id"].encode(), encode("touchpoint", validate_event(e))) for e in b] for b in load]
    timed_encoded = [[(e["journey_id"].encode(), encode("touchpoint", validate_event(e))) for e in b]
                     for b in timed]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency * 4)) as session:
        accepted = 0

        def post(body: bytes) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                nonlocal accepted
                async with session.post(url, data=body, headers={"X-Journey-Key": KEY}) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                    accepted += answer["accepted"]
            return run
        await closed_loop([post(b) for b in bodies[:10]], args.concurrency)  # warm up connections
        accepted = 0
        collector_s = await closed_loop([post(b) for b in bodies], args.concurrency)
        assert accepted == len(bodies) * BATCH, accepted
        collector_latency = quantiles(await open_loop([post(b) for b in timed_bodies], args.rate / BATCH))

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        def produce(batch: list[tuple[bytes, bytes]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in batch])
            return run
        await closed_loop([produce(b) for b in encoded[:10]], args.concurrency)
        bare_s = await closed_loop([produce(b) for b in encoded], args.concurrency)
        bare_latency = quantiles(await open_loop([produce(b) for b in timed_encoded], args.rate / BATCH))
        feeds = PartitionFeeds(producer, topic)

        def feed(batch: list[tuple[bytes, bytes]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await asyncio.gather(*await feeds.send(batch))
            return run
        feeds_s = await closed_loop([feed(b) for b in encoded], args.concurrency)
    finally:
        await producer.stop()

    events = len(bodies) * BATCH
    rate, bare_rate = events / collector_s, events / bare_s
    note = f"batches of {BATCH}, {args.concurrency} concurrent clients; baseline: bare aiokafka producer, acks=all"
    at = f"at {args.rate} events/s ({args.rate / BATCH:g} requests/s of {BATCH}) for {args.seconds} s"
    return {
        "collector_events_per_s": {"value": round(rate), "baseline": round(bare_rate),
                                   "ratio": round(rate / bare_rate, 3), "note": note},
        "collector_latency_ms_p50": {"value": collector_latency["p50"], "baseline": bare_latency["p50"],
                                     "ratio": round(collector_latency["p50"] / bare_latency["p50"], 2), "note": at},
        "collector_latency_ms_p99": {"value": collector_latency["p99"], "baseline": bare_latency["p99"],
                                     "ratio": round(collector_latency["p99"] / bare_latency["p99"], 2), "note": at},
        # the collector's own Kafka path (record batches per partition) without HTTP and validation
        "kafka_path_events_per_s": round(events / feeds_s),
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=400, help="batches of 100 for the throughput figure")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=2000, help="events/s of the latency figure")
    parser.add_argument("--seconds", type=int, default=10, help="length of the latency run")
    args = parser.parse_args()
    with bench_servers("collectorbench") as servers:
        settings = servers.with_(home=servers.home / "collector", collector_port=processes.free_port(),
                                 collector_keys={"bench": KEY}, collector_rate_per_s=0)
        with collector_process(settings):
            url = f"http://{settings.host}:{settings.collector_port}/v1/touchpoints"
            result = asyncio.run(measure(url, settings.bootstrap_servers, settings.topics.touchpoints, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
