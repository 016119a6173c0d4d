"""The tracker watches itself: consumer lag, watermark lag per partition, pending deadlines,
dead-letter rate, sink lag — and which of them means the pipeline stalled.

`probe()` reads the figures (worker/sink heartbeats, Kafka group offsets); `StallDetector`
is plain logic over successive snapshots: a stuck watermark silently stops all breach
detection, so a watermark or heartbeat standing still for `stall_after_s` is a problem --
unless the worker is *busy*: it has a backlog (consumer lag) and its event counters grew within
`stall_after_s`. A backlog of old or out-of-order events moves no watermark while it is worked
through (a 258k-event import paged five CRITICAL stalls); that is reported as busy (`busy`:
how far behind, at what rate), never paged. Caught up with a watermark standing still, or a
backlog and no progress, is stalled.
Note: Tansu reports a partition's end offset as its last batch's base offset + 1, so lags
read from it can be low by up to one producer batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError

from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat, worker_names
from infra.base.kafka import records_written
from infra.base.kafka_clients import client_args


def _group_lag(admin: KafkaAdminClient, reader: KafkaConsumer, group: str, topics: list[str]) -> int | None:
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:
        return None
    parts = [tp for tp in committed if tp.topic in topics and committed[tp].offset >= 0]
    if not parts:
        return None
    ends = reader.end_offsets(parts)
    return sum(max(0, ends[tp] - committed[tp].offset) for tp in parts)


def probe(settings: Settings, now_ms: int) -> dict[str, Any]:
    """One snapshot of the pipeline's figures (blocking: run it in a thread)."""
    workers = {name: read_heartbeat(settings, name) for name in worker_names(settings)}
    snapshot: dict[str, Any] = {"at": now_ms, "workers": {}, "sink": None, "worker_lag": None, "sink_lag": None,
                                "dead_letters": None}
    for name, beat in workers.items():
        if beat is None:
            continue
        marks = {p: int(w) for p, w in beat.get("watermarks", {}).items()}
        snapshot["workers"][name] = {
            "heartbeat_age_s": round((now_ms - beat.get("at", 0)) / 1000, 1), "watermarks": marks,
            "watermark_lag_s": {p: round((now_ms - w) / 1000, 1) for p, w in marks.items()},
            "pending_deadlines": beat.get("deadline_index"), "open_journeys": beat.get("open_journeys"),
            "events": beat.get("events"), "late_events": beat.get("late_events") or {},
            "withdrawn": beat.get("withdrawn", 0), "intake_events": beat.get("intake_events"),
        }
    sink = read_heartbeat(settings, "sink")
    if sink is not None:
        snapshot["sink"] = {"heartbeat_age_s": round((now_ms - sink.get("at", 0)) / 1000, 1)}
    beats = {**workers, "sink": sink, "notifier": read_heartbeat(settings, "notifier")}
    snapshot["quarantine"] = {name: beat["quarantine"] for name, beat in beats.items()
                              if beat is not None and beat.get("quarantine")}
    try:
        admin = KafkaAdminClient(**client_args(settings), request_timeout_ms=5000,
                                 bootstrap_timeout_ms=3000)
    except (KafkaError, ValueError):
        return snapshot
    reader = KafkaConsumer(**client_args(settings), group_id=None, request_timeout_ms=5000)
    try:
        t = settings.topics
        # the stages' internal topics too: intake can be through while the journeys stage works on
        snapshot["worker_lag"] = _group_lag(admin, reader, settings.app_id,
                                            [t.touchpoints, settings.topic_by_journey, settings.topic_by_customer])
        snapshot["sink_lag"] = _group_lag(admin, reader, f"{settings.app_id}-sink",
                                          [t.touchpoints, t.incidents, t.alerts])
        snapshot["dead_letters"] = records_written(settings, reader, t.dlq)
    except KafkaError:
        pass
    finally:
        reader.close()
        admin.close()
    return snapshot


BACKLOG_MIN = 1_000  # messages behind that make a backlog: the stages' progress marks alone keep a few in flight
QUARANTINE_PAGE_S = 900  # a quarantined batch keeps its page open this long after the last one


def quarantine_problems(snapshot: dict[str, Any], now: int) -> dict[str, str | None]:
    """A page per component that set a record batch aside recently (infra/base/quarantine.py), naming the
    batch and the real cause; each resolves QUARANTINE_PAGE_S after that component's last one."""
    problems: dict[str, str | None] = {}
    for name, summary in snapshot.get("quarantine", {}).items():
        last = summary["last"]
        recent = now - last["at"] <= QUARANTINE_PAGE_S * 1000
        problems[f"{name} quarantine"] = (
            f"{name}: {summary['count']} record batch(es) could not be read and were set aside in the dead-letter "
            f"topic; last: {summary['reason']}") if recent else None
    return problems


@dataclass
class StallDetector:
    """Turns snapshots into problems per component (None: healthy)."""

    stall_after_s: float
    sink_lag_alert: int
    _mark_moved: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (watermark, when)
    _sink_lag_since: int | None = None
    _dead_letters: tuple[int, int] | None = None  # (count, at) of the previous snapshot
    dead_letters_per_min: float = 0.0
    _progress: dict[str, tuple[tuple[int, int], int, int]] = field(default_factory=dict)  # -> (counts, grew at, /s)
    busy: dict[str, str] = field(default_factory=dict)  # worker -> what it is working through (not a problem)
    _lag_seen: dict[str, int | None] = field(default_factory=dict)

    def assess(self, snapshot: dict[str, Any]) -> dict[str, str | None]:
        now = snapshot["at"]
        limit_ms = int(self.stall_after_s * 1000)
        problems: dict[str, str | None] = {}
        for name, worker in snapshot["workers"].items():
            problem = None
            if worker["heartbeat_age_s"] * 1000 > limit_ms:
                problem = f"{name}: no heartbeat for {worker['heartbeat_age_s']:.0f} s"
            else:
                busy = self._busy(name, worker, snapshot.get("worker_lag"), now, limit_ms)
                for partition, mark in worker["watermarks"].items():
                    seen, since = self._mark_moved.get((name, partition), (None, now))
                    if seen != mark:
                        self._mark_moved[(name, partition)] = (mark, now)
                    elif now - since > limit_ms and busy is None:
                        problem = (f"{name}: watermark of partition {partition} stuck for {(now - since) / 1000:.0f} s "
                                   "(promise breaches stopped firing)")
                        break
            problems[name] = problem
        if snapshot["sink"] is not None:
            problems["sink"] = self._sink_problem(snapshot, now, limit_ms)
        problems.update(quarantine_problems(snapshot, now))
        if snapshot["dead_letters"] is not None:
            if self._dead_letters is not None and now > self._dead_letters[1]:
                count, at = self._dead_letters
                self.dead_letters_per_min = round((snapshot["dead_letters"] - count) * 60_000 / (now - at), 1)
            self._dead_letters = (snapshot["dead_letters"], now)
        return problems

    def _busy(self, name: str, worker: dict[str, Any], lag: int | None, now: int, limit_ms: int) -> str | None:
        """What the worker is working through, when it has a backlog and made progress within the
        stall limit; else None (and `busy` forgets it)."""
        count = worker.get("events") or 0  # detected (journeys stage); intake's count says it is reading
        read = worker.get("intake_events") or 0
        before = self._progress.get(name)
        lag_before = self._lag_seen.get(name)
        self._lag_seen[name] = lag
        if before is None or (count, read) != before[0]:
            rate = round((count - before[0][0]) * 1000 / (now - before[1])) if before and now > before[1] else 0
            self._progress[name] = before = ((count, read), now, max(rate, 0))
        elif lag is not None and lag_before is not None and lag < lag_before:
            self._progress[name] = before = (before[0], now, before[2])  # committed further: progress too
        progressing = before is not None and now - before[1] <= limit_ms
        if lag is not None and lag > BACKLOG_MIN and progressing:
            self.busy[name] = f"busy: {lag} messages behind, working through them at {before[2]} events/s"
            return self.busy[name]
        self.busy.pop(name, None)
        return None

    def _sink_problem(self, snapshot: dict[str, Any], now: int, limit_ms: int) -> str | None:
        age = snapshot["sink"]["heartbeat_age_s"]
        if age * 1000 > limit_ms:
            return f"sink: no heartbeat for {age:.0f} s (ClickHouse is falling behind)"
        lag = snapshot["sink_lag"]
        if lag is None or lag <= self.sink_lag_alert:
            self._sink_lag_since = None
            return None
        self._sink_lag_since = self._sink_lag_since or now
        if now - self._sink_lag_since > limit_ms:
            return f"sink: {lag} messages behind for {(now - self._sink_lag_since) / 1000:.0f} s"
        return None
