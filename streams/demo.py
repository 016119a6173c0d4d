"""`journey demo`: simulate a day of service through the real stack and check what was detected.

Sends the simulator's touchpoints at `speed` x real time, follows the incidents topic while it
does, then compares the incidents (latest version each) with the simulator's ground truth:
detected / missed / false alarms / counted twice, and whether every recovery figure matches
(`streams.ground_truth`).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.heartbeat import read_heartbeat, worker_names
from infra.base.kafka_clients import client_args
from schemas.codec import DecodeError, decode
from streams.domain.config import load_detection_config
from streams.emitter import TouchpointEmitter
from streams.ground_truth import compare
from streams.simulator import Simulation, simulate

EVENTS_PER_JOURNEY = 11  # about what the simulator emits per journey
SETTLE_S = 4.0  # no new incident change for this long after the last expected one: done
CLOSING_VISITS = 64  # events at closing time that move every partition's watermark past the day
CLOSING_AHEAD_S = 2 * 3600  # closing time: this long after the day (past its longest window, 30 min)


@dataclass
class RunFollower:
    """Background reader of the incidents and alerts topics: this run's incidents (latest version
    each) and its alerts by kind."""

    settings: Settings
    prefix: str
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    last_change: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        topics = self.settings.topics
        reader = KafkaConsumer(topics.incidents, topics.alerts, **client_args(self.settings),
                               auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        try:
            while not self._stop.is_set():
                for records in reader.poll(timeout_ms=200).values():
                    for message in records:
                        if message.topic == topics.alerts:
                            self._take_alert(message.value)
                        else:
                            self._take_incident(message.value)
        finally:
            reader.close()

    def _take_incident(self, value: bytes) -> None:
        try:
            record = decode(value, "incident")
        except DecodeError:
            return
        if not record["journey_id"].startswith(self.prefix):
            return
        known = self.latest.get(record["incident_id"])
        if known is None or record["version"] > known["version"]:
            self.latest[record["incident_id"]] = record
            self.last_change = time.monotonic()

    def _take_alert(self, value: bytes) -> None:
        try:
            alert = decode(value, "alert")
        except DecodeError:
            return
        if alert["journey_id"].startswith(self.prefix):
            self.alerts[alert["kind"]] += 1


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None}
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0]}
    qs = statistics.quantiles(values, n=10, method="inclusive")
    return {"p50": round(statistics.median(values), 1), "p90": round(qs[8], 1)}


def recovery_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """p50/p90 of each recovery latency (seconds) over incidents that have it."""
    fields = ("time_to_acknowledge_s", "time_to_first_response_s", "time_to_resolve_s")
    return {f: _quantiles([r[f] for r in records if r.get(f) is not None]) for f in fields}


def send(settings: Settings, sim: Simulation, speed: float, on_sent: Callable[[int], None]) -> None:
    """Produce the day in event-time order, paced at `speed` x real time."""
    wall0 = time.monotonic()
    with TouchpointEmitter(settings) as emitter:
        for n, event in enumerate(sim.events, start=1):
            due = (event["occurred_at"] - sim.start_ms) / 1000 / speed
            ahead = due - (time.monotonic() - wall0)
            if ahead > 0.02:
                emitter.flush()
                time.sleep(ahead)
            emitter.send(event)
            if n % 200 == 0:
                on_sent(n)
        # Store closing time: later traffic on many journeys moves every partition's event-time
        # watermark past the day's last deadlines (the longest window is 30 min).
        closing = sim.end_ms + CLOSING_AHEAD_S * 1000
        for k in range(CLOSING_VISITS):
            emitter.send({**sim.events[-1], "event_id": f"{sim.events[-1]['event_id']}-close-{k}",
                          "journey_id": f"close-{sim.events[-1]['event_id']}-{k}", "customer_id": None,
                          "type": "VISIT", "stage": "before", "occurred_at": closing, "attrs": {}})
        emitter.flush()
    on_sent(len(sim.events))


def run_demo(settings: Settings, duration_s: float, rate: float, speed: float, seed: int,
             progress: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
    """Run the day through the running stack and compare with the truth (`journey demo` starts
    the stack first when it is not up, and stops what it started)."""
    span_s = duration_s * speed
    journeys = max(10, int(rate * duration_s / EVENTS_PER_JOURNEY))
    # The day ends now: the last hour's failures are paged live; older ones are past the
    # notifier's paging horizon by the time they are sent, so they are recorded, not paged.
    now = int(time.time() * 1000)
    config = load_detection_config(settings.rules_file)
    check_stack_clock(settings, now - int(span_s * 1000), int(config.allowed_lateness_s * 1000))
    sim = simulate(seed, journeys, start_ms=now - int(span_s * 1000), span_s=span_s)
    prefix = sim.events[0]["event_id"].rsplit("-", 1)[0]
    follower = RunFollower(settings, prefix)
    follower.start()
    progress("start", {"events": len(sim.events), "journeys": journeys, "span_s": span_s})
    send(settings, sim, speed, lambda n: progress("sent", {"sent": n, "incidents": len(follower.latest),
                                                           "alerts": _paged(follower.alerts)}))
    expected = len(sim.truth)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = {(i["journey_id"], i["rule"]) for i in follower.latest.values()}
        done = all((t.journey_id, t.rule) in found for t in sim.truth)
        if done and time.monotonic() - follower.last_change > SETTLE_S:
            break
        progress("wait", {"incidents": len(follower.latest), "expected": expected,
                          "alerts": _paged(follower.alerts)})
        time.sleep(0.5)
    follower.stop()
    incidents = list(follower.latest.values())
    result = {"events": len(sim.events), "journeys": journeys, "simulated_hours": round(span_s / 3600, 2),
              **compare(sim, incidents, config),
              "recovery_metrics": recovery_metrics(incidents),
              "truth_metrics": recovery_metrics([
                  {"time_to_acknowledge_s": t.acknowledge_s, "time_to_first_response_s": t.first_response_s,
                   "time_to_resolve_s": t.resolve_s} for t in sim.truth])}
    result["by_rule"] = _by_rule(incidents)
    result["alerts"] = dict(follower.alerts)
    return result


def check_stack_clock(settings: Settings, day_start_ms: int, lateness_ms: int) -> None:
    """Refuse a day the stack's event time has already passed.

    The demo sends a past day (it ends now) in event-time order. A stack whose event time is past
    the day's start -- the closing visits of an earlier demo put it 2 h ahead; live traffic puts it
    at now -- takes the day's events as late, fires their deadlines at once and finds the truth
    wrong. A stack the demo starts itself starts with a clock of its own (no re-seed); a running
    one is read from its workers' heartbeats (none: nothing to go by, the day is sent)."""
    marks = [int(mark) for name in worker_names(settings) for mark in
             ((read_heartbeat(settings, name) or {}).get("watermarks") or {}).values()]
    if marks and max(marks) > day_start_ms + lateness_ms:
        behind_h = (max(marks) - day_start_ms) / 3_600_000
        raise JourneyError(
            f"the running stack's event time is already {behind_h:.1f} h past the start of the day the demo "
            "would send (from traffic it has seen: an earlier demo, live events, or history re-seeded by "
            "`journey up`), so the day would arrive late and be judged wrongly: stop the stack (`journey down`) "
            "and run `journey demo` alone -- it then starts a stack with a clock of its own -- or use another "
            "JOURNEY_HOME"
        )


def clock_tolerance_s(settings: Settings) -> float:
    """The device-clock tolerance a stack started for the demo needs.

    A simulated day in a minute runs a fast clock on purpose: its journeys' last events and its
    closing visits (2 h after the day that ends now) are ahead of the wall clock. The stack the
    demo starts believes device clocks that far ahead (`streams.domain.event_time`); a stack
    already running keeps its own tolerance."""
    return max(settings.clock_tolerance_s, CLOSING_AHEAD_S + 2 * 3600)  # + the day's last events


def _paged(alerts: Counter[str]) -> int:
    return alerts["triggered"] + alerts["escalated"] + alerts["reminded"]


def _by_rule(incidents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rule in sorted({i["rule"] for i in incidents}):
        mine = [i for i in incidents if i["rule"] == rule]
        out[rule] = {"incidents": len(mine), "servqual": mine[0]["servqual"],
                     "resolved": sum(i["status"] == "resolved" for i in mine),
                     "compensated": sum(i["compensation_amount"] is not None for i in mine),
                     "sla_breached": sum(i["sla_acknowledge_breached"] or i["sla_first_response_breached"]
                                         or i["sla_resolve_breached"] for i in mine),
                     **recovery_metrics(mine)}
    return out


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, default=str)
