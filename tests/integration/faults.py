"""Reliability runs: a simulated day through real worker and sink processes while faults are
injected, then ClickHouse checked against the simulator's ground truth.

Services start as `journey up` starts them (the argv and env of their `infra.local.services`
component, spawned and tracked by `infra.local.processes`); faults are black-box: kill -9 by pid,
SIGTERM, an endpoint stopped and started again. Sizes come from the environment so CI runs
a short version and the full one stays one variable away:

    JOURNEY_CRASH_EVENTS   simulated touchpoints per scenario (default 20000; the issue's size is 200000)
    JOURNEY_CRASH_KILLS    kill -9s per crash scenario (default 3)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse_connect.driver import Client

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.heartbeat import heartbeat_path
from infra.local import processes
from infra.local.services import sink_components, worker_components
from infra.local.stack import Component
from streams.demo import CLOSING_VISITS, send
from streams.ground_truth import compare
from streams.simulator import Simulation, simulate
from tests.child import stop_child

EVENTS = int(os.environ.get("JOURNEY_CRASH_EVENTS", "20000"))
KILLS = int(os.environ.get("JOURNEY_CRASH_KILLS", "3"))
SEND_RATE = 2000  # events/s the simulator sends at: below one worker's throughput, so backlogs drain
DAY_S = 12 * 3600
READY_TIMEOUT_S = 120
SETTLE_S = 6.0  # after everything matched: nothing may change for this long (no late duplicate)

INCIDENT_QUERY = """
SELECT incident_id, journey_id, rule, status, toUnixTimestamp64Milli(failed_at) AS failed_at,
       time_to_acknowledge_s, time_to_first_response_s, time_to_resolve_s,
       compensation_kind, compensation_amount, post_recovery_score, recovered, severity, repeat_customer
FROM journey.incidents FINAL WHERE startsWith(journey_id, {p:String})
"""


def timeout_s(events: int = EVENTS, kills: int = KILLS) -> int:
    """A generous pytest timeout for one scenario of this size (a hang fails, a slow machine does not)."""
    return 600 + events // 100 + kills * 120


def worker_component(settings: Settings, worker_id: int) -> Component:
    return worker_components(settings.with_(workers=worker_id + 1))[worker_id]


def sink_component(settings: Settings) -> Component:
    return sink_components(settings)[0]


@dataclass
class Service:
    """One service process, started (and restarted) the way `journey up` starts it."""

    settings: Settings
    component: Component
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def log_path(self) -> Path:
        return self.settings.home / "logs" / f"{self.name}.log"

    def start(self, wait: bool = True) -> Service:
        assert self.component.argv is not None
        heartbeat_path(self.settings, self.name).unlink(missing_ok=True)  # ready means *this* process
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.proc = processes.spawn(self.name, self.component.argv, self.log_path, self.settings.home / "pids",
                                    {**os.environ, **self.settings.to_env(), **self.component.env})
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        return bool(self.component.ready())

    def wait_ready(self) -> None:
        assert self.proc is not None
        if not processes.wait_until(lambda: self.ready() or self.proc.poll() is not None, READY_TIMEOUT_S):
            raise AssertionError(f"{self.name} not ready in {READY_TIMEOUT_S} s: {self.log_tail()}")
        assert self.proc.poll() is None, f"{self.name} exited: {self.log_tail()}"

    def kill9(self) -> str:
        """SIGKILL, no goodbye; returns the phase it died in ('running' or 'starting')."""
        assert self.proc is not None
        phase = "running" if self.ready() else "starting"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return phase

    def stop(self) -> None:
        """SIGTERM and wait: a graceful leave."""
        if self.proc is not None and self.proc.poll() is None:
            stop_child(self.proc, 60)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@dataclass
class Run:
    """One simulated day sent in the background at SEND_RATE, and what it should leave in ClickHouse."""

    settings: Settings
    events: int = EVENTS
    seed: int = 7
    min_send_s: float = 30.0
    sim: Simulation = field(init=False)
    prefix: str = field(init=False)
    send_s: float = field(init=False)
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    _thread: threading.Thread | None = None
    _error: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = int(time.time() * 1000)
        sample = simulate(self.seed, 500, start_ms=now, span_s=DAY_S)  # events per journey, to hit the size
        journeys = max(10, round(self.events * 500 / len(sample.events)))
        # The day ends 3 h ago: its closing visits (2 h after it, streams.demo.send) are then in the
        # past, where a device clock is believed (ahead of its receive time an event time is capped).
        self.sim = simulate(self.seed, journeys, start_ms=now - DAY_S * 1000 - 3 * 3_600_000, span_s=DAY_S)
        self.prefix = self.sim.events[0]["event_id"].rsplit("-", 1)[0] + "-"  # this run's ids, no other run's
        self.send_s = max(self.min_send_s, len(self.sim.events) / SEND_RATE)

    def start(self) -> Run:
        def go() -> None:
            try:
                send(self.settings, self.sim, DAY_S / self.send_s, self._on_sent)
            except BaseException as exc:  # re-raised in the test by join()
                self._error.append(exc)

        self.started = time.monotonic()
        self._thread = threading.Thread(target=go, daemon=True)
        self._thread.start()
        return self

    def _on_sent(self, n: int) -> None:
        self.sent = n

    def sending(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join()
        if self._error:
            raise self._error[0]

    def expected_event_ids(self) -> set[str]:
        last = self.sim.events[-1]["event_id"]
        return {e["event_id"] for e in self.sim.events} | {f"{last}-close-{k}" for k in range(CLOSING_VISITS)}


def client_for(settings: Settings) -> Client:
    return get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)


@dataclass
class Outcome:
    """What ClickHouse holds for a run, compared with the truth."""

    comparison: dict[str, Any]
    incident_rows: int
    touchpoints_final: int
    touchpoints_unique: int
    duplicate_event_ids: list[tuple[str, int]]
    missing_event_ids: int
    unexpected_event_ids: int
    raw_touchpoint_rows: int  # before merges: redelivered rows still separate
    raw_incident_rows: int
    diagnosis: str = ""  # the first false alarms' touchpoints and incident versions, to read on a failure

    @property
    def complete(self) -> bool:
        return (self.comparison["ok"] and self.missing_event_ids == 0 and self.unexpected_event_ids == 0
                and not self.duplicate_event_ids and self.touchpoints_final == self.touchpoints_unique)


def read_outcome(client: Client, run: Run) -> Outcome:
    p = {"p": run.prefix}
    rows = client.query(INCIDENT_QUERY, parameters=p)
    incidents = [dict(zip(rows.column_names, r, strict=True)) for r in rows.result_rows]
    final_ids = client.query("SELECT event_id FROM journey.touchpoints FINAL WHERE startsWith(event_id, {p:String})",
                             parameters=p).result_columns
    ids = final_ids[0] if final_ids else []
    expected = run.expected_event_ids()
    seen = set(ids)
    doubled = client.query(
        "SELECT event_id, count() AS n FROM journey.touchpoints FINAL WHERE startsWith(event_id, {p:String}) "
        "GROUP BY event_id HAVING n > 1 ORDER BY event_id LIMIT 10", parameters=p).result_rows
    raw_touchpoints = client.query("SELECT count() FROM journey.touchpoints WHERE startsWith(event_id, {p:String})",
                                   parameters=p).result_rows[0][0]
    raw_incidents = client.query("SELECT count() FROM journey.incidents WHERE startsWith(journey_id, {p:String})",
                                 parameters=p).result_rows[0][0]
    comparison = compare(run.sim, incidents)
    return Outcome(
        comparison=comparison, incident_rows=len(incidents), touchpoints_final=len(ids),
        touchpoints_unique=len(seen), duplicate_event_ids=[(e, n) for e, n in doubled],
        missing_event_ids=len(expected - seen), unexpected_event_ids=len(seen - expected),
        raw_touchpoint_rows=raw_touchpoints, raw_incident_rows=raw_incidents,
        diagnosis=diagnose([j for j, _ in comparison["false_alarm_list"][:3]], client),
    )


def diagnose(journeys: list[str], client: Client) -> str:
    """Each journey's touchpoints (event time, source partition and offset, arrival in ClickHouse)
    and every incident version written: what a false alarm's timeline looked like."""
    lines = []
    for journey in journeys:
        lines.append(f"== {journey}")
        lines += [f"  {r}" for r in client.query(
            "SELECT type, request_id, toUnixTimestamp64Milli(occurred_at) AS at, kafka_partition, kafka_offset, "
            "ingested_at FROM journey.touchpoints FINAL WHERE journey_id = {j:String} ORDER BY at",
            parameters={"j": journey}).result_rows]
        lines += [f"  incident {r}" for r in client.query(
            "SELECT version, status, rule, toUnixTimestamp64Milli(failed_at), detected_at, severity "
            "FROM journey.incidents WHERE journey_id = {j:String} ORDER BY version",
            parameters={"j": journey}).result_rows]
    return "\n".join(lines)


def wait_for_outcome(settings: Settings, run: Run, timeout: float) -> Outcome:
    """Poll ClickHouse until the run is complete and stays so for SETTLE_S; the last outcome either way."""
    client = client_for(settings)
    deadline = time.monotonic() + timeout
    outcome = read_outcome(client, run)
    while time.monotonic() < deadline:
        if outcome.complete:
            time.sleep(SETTLE_S)
            again = read_outcome(client, run)
            if again.complete and again.incident_rows == outcome.incident_rows:
                return again
            outcome = again
            continue
        time.sleep(2)
        outcome = read_outcome(client, run)
    return outcome


def assert_exact(outcome: Outcome, run: Run, context: str) -> None:
    """The issue's bar: incidents equal the truth exactly, no touchpoint missing or doubled."""
    c = outcome.comparison
    summary = (f"{context}\nincidents: injected {c['injected_failures']}, detected {c['detected']}, "
               f"missed {c['missed']} {c['missed_list']}, false alarms {c['false_alarms']} {c['false_alarm_list']}, "
               f"counted twice "
               f"{c['duplicate_incidents']} {c['duplicate_list']}, mismatched {c['metric_mismatches']} "
               f"{c['mismatch_list']}\ntouchpoints: {outcome.touchpoints_final} rows (FINAL), "
               f"{outcome.touchpoints_unique} unique, missing {outcome.missing_event_ids}, unexpected "
               f"{outcome.unexpected_event_ids}, doubled {outcome.duplicate_event_ids}\n{outcome.diagnosis}")
    assert c["injected_failures"] > 0 and c["detected"] == c["injected_failures"], summary
    assert (c["missed"], c["false_alarms"], c["duplicate_incidents"], c["metric_mismatches"]) == (0, 0, 0, 0), summary
    assert outcome.incident_rows == c["injected_failures"], summary
    assert outcome.missing_event_ids == 0 and outcome.unexpected_event_ids == 0, summary
    assert outcome.touchpoints_final == outcome.touchpoints_unique == len(run.expected_event_ids()), summary
    assert outcome.duplicate_event_ids == [], summary


def assert_merges_leave_no_duplicate(settings: Settings, run: Run) -> None:
    """The tables' own guarantee: once merged, a redelivered row is physically gone (not only hidden by FINAL)."""
    client = client_for(settings)
    for table in ("touchpoints", "incidents"):
        client.command(f"OPTIMIZE TABLE journey.{table} FINAL")
    p = {"p": run.prefix}
    raw = client.query("SELECT count(), uniqExact(event_id) FROM journey.touchpoints "
                       "WHERE startsWith(event_id, {p:String})", parameters=p).result_rows[0]
    assert raw == (len(run.expected_event_ids()),) * 2
    incidents = client.query("SELECT count(), uniqExact(incident_id) FROM journey.incidents "
                             "WHERE startsWith(journey_id, {p:String})", parameters=p).result_rows[0]
    assert incidents == (len(run.sim.truth),) * 2


def pause_until(seconds: float, stop: Callable[[], bool] | None = None) -> None:
    """Sleep up to `seconds`, returning early when `stop()` says so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (stop and stop()):
        time.sleep(0.1)


def kill_schedule(rng: random.Random, run: Run, kills: int) -> list[float]:
    """Seconds to wait before each kill: spread at random over the sending window."""
    slot = run.send_s / max(1, kills)
    return [rng.uniform(0.2, 1.0) * slot for _ in range(kills)]
