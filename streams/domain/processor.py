"""The detection engine: event-time watermarks, indexed deadlines, rules, incidents, metrics.

One `Detector` serves all partitions a worker owns. Per partition it keeps a watermark (the
newest event time seen) and a heap of pending deadlines, so each check touches only what is
due. Before an event is applied, every deadline of its partition at or before the event's
time fires; with no events, `tick` advances an idle (caught-up) partition's watermark by the
wall-clock time elapsed since its last event arrived. Live traffic and a replay of the same
log therefore raise the same incidents (only `detected_at` differs).

Journey state is a small record per journey (`streams.domain.journey.Journey`, JSON-able via
`to_state`); everything needed after a restart lives in it (pending deadlines included), and
`load` rebuilds the indexes from it.
Customer history (repeat-failure severity, "came back") is not decided here: it needs every
journey of a customer, so the customers stage decides it (`streams.customers.book`) from the
incident changes and journey starts this detector reports.

Two clocks. `clock="events"` (the pure reference, and a single-partition replay): an event moves
its partition's watermark and fires every deadline of the partition at or before it.
`clock="marks"` (the journeys stage behind intake): a partition's watermark comes only from
`advance` (the low watermark of the source partitions, `streams.journeys.marks`), since one
internal partition interleaves several source partitions in arrival order; an event fires only
its own journey's deadlines at or before its time (a function of that journey's events alone),
so a delivery or an acknowledgement after a breach still finds the breach open.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.event_types import FULFILMENT_OF, RECOVERY_TYPES, REQUEST_FULFILMENT
from streams.domain.config import DetectionConfig
from streams.domain.incidents import (
    DUE_FIELD,
    REPLIED,
    WAITING,
    WITHDRAWN,
    Incident,
    apply_recovery,
    breach_sla,
    incident_id,
    new_incident,
    set_waiting,
    withdraw,
    withdrawable,
)
from streams.domain.journey import Journey
from streams.domain.tombstones import Tombstone, Tombstones

DAY_MS = 86_400_000
COMPLAINT_TYPES = frozenset({"COMPLAINT_FILED", "RETURN_REQUESTED", "GUARANTEE_CLAIMED"})
RULE_OF_REQUEST = {
    "ITEM_REQUESTED": "promise_breach",
    "ORDER_PLACED": "promise_breach",
    "CHECKOUT_STARTED": "abandonment",
    "PAYMENT_FAILED": "payment_failed",
}
SLA_TARGETS = ("acknowledge_s", "first_response_s", "resolve_s")
SLA_DONE_FIELD = {"acknowledge_s": "acknowledged_at", "first_response_s": "first_response_at",
                  "resolve_s": "resolved_at"}
STAGE_TARGET = {"FAILURE_ACKNOWLEDGED": "acknowledge_s", "CUSTOMER_CONTACTED": "first_response_s",
                "RECOVERY_RESOLVED": "resolve_s"}
# Recovery events that act on the newest *open* incident; the rest take the newest at all.
OPEN_ONLY = frozenset({"FAILURE_ACKNOWLEDGED", "CUSTOMER_CONTACTED", "COMPENSATION_GIVEN", "RECOVERY_RESOLVED",
                       WAITING, REPLIED})

# A deadline heap entry: (due_ms, journey_id, kind, ref) for a request or SLA deadline, and just
# (due_ms, journey_id) for a journey's expiry check (one per open journey: 16 bytes less each).
# Between equal (due, journey) the shorter tuple sorts first, as "exp" did before "req"/"sla".
HeapEntry = tuple[int, str] | tuple[int, str, str, str]


@dataclass
class ProcessResult:
    """What a batch or a tick produced."""

    incident_changes: list[Incident] = field(default_factory=list)
    unmatched_recovery: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    fired_deadlines: int = 0
    late_events: int = 0  # events older than their partition's watermark less the allowed lateness
    withdrawn: int = 0  # breaches withdrawn by an on-time fulfilment reported late
    late: list[tuple[str, str, int]] = field(default_factory=list)  # (event id, journey id, ms behind the mark)
    # (journey id, customer id, first event time): a journey seen for the first time, or its first
    # event moved earlier (an out-of-order event), or its customer became known
    journey_starts: list[tuple[str, str, int]] = field(default_factory=list)

    def merge(self, other: ProcessResult) -> None:
        self.incident_changes += other.incident_changes
        self.journey_starts += other.journey_starts
        self.unmatched_recovery += other.unmatched_recovery
        self.duplicates += other.duplicates
        self.fired_deadlines += other.fired_deadlines
        self.late_events += other.late_events
        self.late += other.late
        self.withdrawn += other.withdrawn


class Detector:
    """Applies touchpoints in order, fires deadlines on event time, tracks incidents."""

    def __init__(self, config: DetectionConfig, clock: str = "events") -> None:
        if clock not in ("events", "marks"):
            raise ValueError(f"clock must be 'events' or 'marks', not {clock!r}")
        self.config = config
        self.marks_clock = clock == "marks"
        self.journeys: dict[str, Journey] = {}
        self.dirty: dict[str, int] = {}  # journey id -> partition, changed since `take_dirty`
        self._heaps: dict[int, list[HeapEntry]] = {}
        self.watermarks: dict[int, int] = {}
        self._idle_base: dict[int, tuple[int, int]] = {}  # partition -> (watermark, wall ms at arrival)
        self._now = 0
        self._out: ProcessResult = ProcessResult()
        self._tombs: dict[int, Tombstones] = {}  # partition -> expired journeys (a late event is not new)
        self._applying: str | None = None  # the journey whose event is being applied (it never expires itself)
        self.late_by_partition: dict[int, int] = {}  # events later than the allowed lateness, since start

    # ---- restart --------------------------------------------------------------------------

    def load(self, journeys: Iterable[tuple[str, Journey | Tombstone]], now_ms: int) -> None:
        """Rebuild indexes from persisted journey states and tombstones (after a restart or rebalance)."""
        for journey_id, journey in journeys:
            if isinstance(journey, Tombstone):
                self._tombstones(journey.p).put(journey_id, journey.packed, journey.day)
                continue
            self.journeys[journey_id] = journey
            partition = journey.p
            heap = self._heaps.setdefault(partition, [])
            for due, kind, ref in journey.dl or ():
                heap.append((due, journey_id, kind, ref))
            if journey.exp is not None:
                heap.append((journey.exp, journey_id))
            if journey.last is not None and not self.marks_clock:  # marks: the source partitions tell
                self.watermarks[partition] = max(self.watermarks.get(partition, 0), journey.last)
        for heap in self._heaps.values():
            heapq.heapify(heap)
        for partition, mark in self.watermarks.items():
            self._idle_base[partition] = (mark, now_ms)

    def forget_partition(self, partition: int) -> None:
        """Drop a partition's in-memory state (it was assigned to another worker)."""
        gone = [jid for jid, j in self.journeys.items() if j.p == partition]
        for jid in gone:
            del self.journeys[jid]
        self._heaps.pop(partition, None)
        self._tombs.pop(partition, None)
        self.watermarks.pop(partition, None)
        self._idle_base.pop(partition, None)

    def take_dirty(self) -> dict[str, int]:
        """Journeys changed since the last call (the adapter persists them)."""
        dirty, self.dirty = self.dirty, {}
        return dirty

    def tombstone(self, journey_id: str, partition: int) -> Tombstone | None:
        """The persisted form of an expired journey's tombstone (None: none, so a deletion)."""
        found = self._tombstones(partition).find(journey_id)
        return None if found is None else Tombstone(partition, *found)

    def tombstone_count(self) -> int:
        return sum(len(t) for t in self._tombs.values())

    def _tombstones(self, partition: int) -> Tombstones:
        tombs = self._tombs.get(partition)
        if tombs is None:
            tombs = self._tombs[partition] = Tombstones(int(self.config.tombstone_days * DAY_MS))
        return tombs

    def deadline_index_size(self) -> int:
        """Entries in the deadline heaps (pending deadlines, expiry checks, cancelled ones not yet popped)."""
        return sum(len(h) for h in self._heaps.values())

    # ---- the two entry points -------------------------------------------------------------

    def process(self, events: Iterable[tuple[int, dict[str, Any]]], now_ms: int) -> ProcessResult:
        """Apply (partition, event) pairs in order; returns incident changes and counters."""
        self._now = now_ms
        self._out = out = ProcessResult()
        for partition, event in events:
            self._process_one(partition, event)
            if not self.marks_clock:
                self._idle_base[partition] = (self.watermarks[partition], now_ms)
        return out

    def tick(self, now_ms: int, partitions: Iterable[int] | None = None) -> ProcessResult:
        """Advance idle partitions' watermarks by elapsed wall-clock time and fire what is due.

        Pass only caught-up partitions: a partition with a backlog must advance by its events,
        or a replay would fire a deadline whose fulfilment is still waiting to be read.
        """
        self._now = now_ms
        self._out = out = ProcessResult()
        if self.marks_clock:
            return out  # the watermark moves by `advance` only
        for partition in list(self._idle_base) if partitions is None else partitions:
            base = self._idle_base.get(partition)
            if base is None:
                continue
            mark = max(self.watermarks.get(partition, 0), base[0] + max(0, now_ms - base[1]))
            self.watermarks[partition] = mark
            self._fire_due(partition, mark)
        return out

    def advance(self, partition: int, mark: int, now_ms: int) -> ProcessResult:
        """Move a partition's watermark to `mark` (never back) and fire what is due (marks clock)."""
        self._now = now_ms
        self._out = out = ProcessResult()
        mark = max(mark, self.watermarks.get(partition, mark))
        self.watermarks[partition] = mark
        self._fire_due(partition, mark)
        return out

    # ---- per event --------------------------------------------------------------------------

    def _process_one(self, partition: int, event: dict[str, Any]) -> None:
        journey_id = event["journey_id"]
        journey = self.journeys.get(journey_id)
        is_new = journey is None
        if journey is None:
            journey = self.journeys[journey_id] = self._revive(partition, journey_id, event)
            is_new = journey.first is None  # a late event of an expired journey: not a new journey
        elif journey.has_seen(event["event_id"]):
            self._out.duplicates += 1
            # Written again all the same: a replay after a worker died between its state write
            # and its changelog record finds the state ahead (a shared JOURNEY_HOME's RocksDB);
            # unchanged, it would never reach the changelog, and a later restore from it alone
            # would lose this event. Replays are short, so the extra writes are few.
            self.dirty[journey_id] = journey.p
            return
        at = event["occurred_at"]
        mark = self.watermarks.get(partition)
        if mark is not None and mark - at > self.config.allowed_lateness_s * 1000:
            self._out.late_events += 1  # applied all the same: nothing is dropped
            self.late_by_partition[partition] = self.late_by_partition.get(partition, 0) + 1
            self._out.late.append((event["event_id"], journey_id, mark - at))
        if self.marks_clock:
            self._fire_own(partition, journey_id, journey, at)
        else:
            if mark is None or at > mark:
                self.watermarks[partition] = mark = at
            self._applying = journey_id  # its own event moves the watermark: it must not expire the journey
            try:
                self._fire_due(partition, mark)
            finally:
                self._applying = None
        journey.remember(event["event_id"], self.config.seen_event_ids)
        customer_known = journey.c is None and bool(event.get("customer_id"))
        if customer_known:
            journey.c = event["customer_id"]
        journey.last = at if journey.last is None else max(journey.last, at)
        starts_earlier = journey.first is None or at < journey.first
        if starts_earlier:
            journey.first = at
        if journey.c and (is_new or starts_earlier or customer_known):
            self._out.journey_starts.append((journey_id, journey.c, journey.first))
        self.dirty[journey_id] = partition
        self._apply(journey_id, journey, event)
        if journey.exp is None:
            self._schedule_expiry(journey_id, journey)

    def _revive(self, partition: int, journey_id: str, event: dict[str, Any]) -> Journey:
        """A journey's state for an event of a journey not held: fresh, or from its tombstone
        (then it keeps its first event time, and knows it had an incident)."""
        journey = Journey(partition, event.get("customer_id"))
        tomb = self._tombs.get(partition)
        found = tomb.take(journey_id) if tomb is not None else None
        if found is not None:
            journey.first, had_incident = found
            journey.last = journey.first
            journey.old = had_incident or None
            self.dirty[journey_id] = partition
        return journey

    def _apply(self, journey_id: str, journey: Journey, event: dict[str, Any]) -> None:
        kind = event["type"]
        if journey.inc and kind not in RECOVERY_TYPES:
            self._customer_is_back(journey_id, journey, event)
        if kind in REQUEST_FULFILMENT:
            self._open_request(journey_id, journey, event)
        elif kind in FULFILMENT_OF:
            self._fulfil(journey_id, journey, event)
        elif kind in RECOVERY_TYPES:
            self._recovery(journey, event)
        elif kind in COMPLAINT_TYPES:
            self._open_incident(journey_id, journey, "complaint", event["event_id"], event, event["occurred_at"],
                                about=_about(event))
        elif kind == "SERVICE_ERROR":
            self._open_incident(journey_id, journey, "service_error", event["event_id"], event, event["occurred_at"],
                                about=_about(event))
        elif kind == "FEEDBACK_SUBMITTED":
            self._feedback(journey_id, journey, event)

    # ---- requests, fulfilments, deadlines --------------------------------------------------

    def _window_s(self, event: dict[str, Any]) -> float:
        kind = event["type"]
        if kind in ("ITEM_REQUESTED", "ORDER_PLACED"):
            return float(event.get("promised_within_s") or self.config.default_promise_s.get(kind, 600))
        rule = self.config.rule(RULE_OF_REQUEST[kind], event.get("store_id"), event.get("channel"))
        return float(rule.window_s or 0)

    def _open_request(self, journey_id: str, journey: Journey, event: dict[str, Any]) -> None:
        ref = self._request_ref(journey, event)
        if ref is None:
            return  # the same request again (a re-sent event with a new id) opens nothing new
        due = event["occurred_at"] + int(self._window_s(event) * 1000)
        early = self._take_early(journey, REQUEST_FULFILMENT[event["type"]], event.get("request_id"))
        if early is not None and early[2] < due:
            return  # fulfilled (on time) before the request itself reached us
        late_at = early[2] if early is not None else None
        journey.add_request(ref, [event["type"], due, event["occurred_at"], event.get("request_id"),
                                  event["event_id"], late_at, event.get("store_id"), event.get("channel")])
        self._schedule(journey_id, journey, due, "req", ref)

    def _request_ref(self, journey: Journey, event: dict[str, Any]) -> str | None:
        """The key of a new watch for this request, or None when it is one already watched.

        Pending with the same request id: the same request (a reminder, a re-send). Breached
        before: asked again once it failed (occurred at or after that breach) is a new watch, with
        a ref of its own (`spoon#2`: another incident id); occurred before it, a re-send. Fulfilled
        before: nothing of it is pending, so it is a new watch anyway.
        """
        rid = event.get("request_id")
        if rid is None:
            ref = event["event_id"]
            return None if (journey.req and ref in journey.req) or (journey.fired and ref in journey.fired) else ref
        if any(req[3] == rid for req in (journey.req or {}).values()):
            return None
        incs = journey.inc or {}
        breaches = [incs[iid] for iid in (journey.fired or {}).values()
                    if iid in incs and incs[iid]["request_id"] == rid]
        if not breaches:
            return None if journey.fired and rid in journey.fired else rid
        if event["occurred_at"] < max(i["failed_at"] for i in breaches):
            return None
        return f"{rid}#{len(breaches) + 1}"

    def _take_early(self, journey: Journey, fulfil_type: str, request_id: str | None) -> list[Any] | None:
        for i, (kind, rid, _at) in enumerate(journey.early or ()):
            if kind == fulfil_type and (rid == request_id or request_id is None or rid is None):
                return journey.pop_early(i)
        return None

    def _fulfil(self, journey_id: str, journey: Journey, event: dict[str, Any]) -> None:
        request_type = FULFILMENT_OF[event["type"]]
        rid = event.get("request_id")
        reqs = journey.req or {}
        open_refs = [r for r, req in reqs.items() if req[0] == request_type and (rid is None or req[3] == rid)]
        if open_refs:
            ref = min(open_refs, key=lambda r: reqs[r][2])  # oldest open request of that kind
            req = journey.pop_request(ref)
            journey.drop_deadline((req[1], "req", ref))
            return
        incs = journey.inc or {}
        fired = [incs[iid] for iid in (journey.fired or {}).values()
                 if iid in incs and (rid is None or incs[iid]["request_id"] == rid)
                 and incs[iid]["late_fulfilment_at"] is None and RULE_OF_REQUEST[request_type] == incs[iid]["rule"]]
        if fired:
            incident, at = fired[0], event["occurred_at"]
            watermark = max(self.watermarks.get(journey.p, 0), journey.last or 0)
            if withdrawable(incident, at, watermark, int(self.config.allowed_lateness_s * 1000)):
                withdraw(incident, at)
                for target in SLA_TARGETS:
                    self._cancel_sla(journey, incident, target)
                self._out.withdrawn += 1
            else:
                incident["late_fulfilment_at"] = at
                incident["updated_at"] = max(incident["updated_at"], at)
                incident["version"] += 1
            self._emit(incident)
            return
        journey.add_early([event["type"], rid, event["occurred_at"]])

    def keep_until(self, journey: Journey) -> int:
        """Until when (event time) a journey's state must stay: what can still arrive for it.

        - its last event + `journey_ttl_days`;
        - a pending request: until just after its deadline (it breaches or is fulfilled by then);
        - each incident: its last change + `incident_journey_ttl_days`, or + as long as the journey
          had been running when it failed if that is longer (a breached 60-day promise keeps its
          links 60 days after the breach): follow-up, feedback and a late fulfilment still match.
        """
        due = journey.last + int(self.config.journey_ttl_days * DAY_MS)  # type: ignore[operator]
        if journey.req:
            due = max(due, max(req[1] for req in journey.req.values()) + 1)
        incident_ttl = int(self.config.incident_journey_ttl_days * DAY_MS)
        for incident in (journey.inc or {}).values():
            keep = max(incident_ttl, incident["failed_at"] - journey.first)  # type: ignore[operator]
            due = max(due, incident["updated_at"] + keep)
        return due

    def _schedule_expiry(self, journey_id: str, journey: Journey, after: int = 0) -> None:
        """Journey state is bounded: one expiry check per journey, at `keep_until` (event time).

        When it comes due with newer activity seen, it moves on. It always moves past `after`
        (the check that just fired): rescheduling at the same due time would pop the same entry
        again at once and never leave the firing loop.
        """
        due = max(self.keep_until(journey), after + 1)
        journey.exp = due
        heapq.heappush(self._heaps.setdefault(journey.p, []), (due, journey_id))

    def _expire(self, journey_id: str, journey: Journey, due: int) -> None:
        if journey_id == self._applying:
            journey.exp = None  # scheduled again once its event is applied (its last moves on)
            return
        if journey.req or self.keep_until(journey) > due:
            self._schedule_expiry(journey_id, journey, after=due)  # still active (or waiting on a request)
            return
        del self.journeys[journey_id]  # persisted by the adapter (dirty, now absent): its tombstone, or a deletion
        if journey.inc or journey.old:
            # Only a journey with an incident leaves a tombstone (~150 B; a month of them for every
            # journey would outweigh the open ones): its late feedback is not a new failure. Any
            # journey's late event is no return of the customer all the same: the customers stage
            # keeps every journey's start for its 90 days.
            self._tombstones(journey.p).add(journey_id, journey.first, True, due)

    def _schedule(self, journey_id: str, journey: Journey, due: int, kind: str, ref: str) -> None:
        journey.add_deadline((due, kind, ref))
        heapq.heappush(self._heaps.setdefault(journey.p, []), (due, journey_id, kind, ref))

    def _fire_own(self, partition: int, journey_id: str, journey: Journey, at: int) -> None:
        """Fire this journey's own request and SLA deadlines at or before `at` (marks clock).

        Their heap entries stay and are skipped when they come up (no longer in `journey.dl`).
        """
        while journey.dl:
            entry = min(journey.dl)
            if entry[0] > at:
                return
            journey.drop_deadline(entry)
            self._fire(partition, journey_id, journey, *entry)

    def _fire(self, partition: int, journey_id: str, journey: Journey, due: int, kind: str, ref: str) -> None:
        self.dirty[journey_id] = partition
        self._out.fired_deadlines += 1
        if kind == "req":
            self._breach(journey_id, journey, ref)
        elif kind == "exp":
            self._expire(journey_id, journey, due)
        else:
            iid, target = ref.split("|")
            incident = (journey.inc or {}).get(iid)
            if incident is not None and breach_sla(incident, target, due):
                self._emit(incident)

    def _fire_due(self, partition: int, mark: int) -> None:
        tombs = self._tombs.get(partition)
        if tombs is not None:
            for journey_id in tombs.expire(mark):
                self.dirty[journey_id] = partition  # a deletion, unless it came back meanwhile
        heap = self._heaps.get(partition)
        # A cancelled deadline (fulfilled, acknowledged, ...) stays in the heap and is skipped
        # when it comes up: lazy deletion keeps cancelling O(1).
        while heap and heap[0][0] <= mark:
            entry = heapq.heappop(heap)
            due, journey_id = entry[0], entry[1]
            journey = self.journeys.get(journey_id)
            if journey is None:
                continue
            if len(entry) == 2:  # expiry check: only the journey's current one counts
                if journey.exp != due:
                    continue
                kind, ref = "exp", ""
            else:
                kind, ref = entry[2], entry[3]  # type: ignore[misc]
                if not journey.drop_deadline((due, kind, ref)):
                    continue
            self._fire(partition, journey_id, journey, due, kind, ref)

    def _breach(self, journey_id: str, journey: Journey, ref: str) -> None:
        rtype, due, _occurred, rid, event_id, late_at, store, channel = journey.pop_request(ref)
        trigger = {"event_id": event_id, "customer_id": journey.c, "store_id": store, "channel": channel}
        incident = self._open_incident(journey_id, journey, RULE_OF_REQUEST[rtype], ref, trigger, due, rid, late_at,
                                       about=f"{rtype} {rid or ref}")
        if incident is not None:
            journey.add_fired(ref, incident["incident_id"])

    # ---- incidents ---------------------------------------------------------------------------

    def _open_incident(
        self, journey_id: str, journey: Journey, rule_name: str, ref: str, trigger: dict[str, Any],
        failed_at: int, request_id: str | None = None, late_fulfilment_at: int | None = None,
        about: str | None = None,
    ) -> Incident | None:
        if journey.inc and incident_id(journey_id, rule_name, ref) in journey.inc:
            return None  # one failure, one incident
        rule = self.config.rule(rule_name, trigger.get("store_id"), trigger.get("channel"))
        customer = trigger.get("customer_id") or journey.c
        # repeat_customer and the severity it raises are the customers stage's to decide
        incident = new_incident(rule, journey_id, ref, {**trigger, "customer_id": customer}, failed_at,
                                max(self._now, failed_at), False, request_id,
                                calendar=self.config.calendar(trigger.get("store_id")), about=about)
        incident["late_fulfilment_at"] = late_fulfilment_at
        iid = incident["incident_id"]
        journey.add_incident(iid, incident)
        for target in SLA_TARGETS:  # business-time deadlines (the store's hours) come with the incident
            self._schedule(journey_id, journey, incident[DUE_FIELD[target]], "sla", f"{iid}|{target}")
        self._emit(incident)
        return incident

    def _emit(self, incident: Incident) -> None:
        self._out.incident_changes.append(dict(incident))

    def _newest(self, journey: Journey, open_only: bool) -> Incident | None:
        """The newest incident (not resolved, with `open_only`); a withdrawn one never."""
        for incident in reversed((journey.inc or {}).values()):
            if incident["status"] != WITHDRAWN and (not open_only or incident["status"] != "resolved"):
                return incident
        return None

    def _recovery(self, journey: Journey, event: dict[str, Any]) -> None:
        named = event.get("incident_id")
        incident = (journey.inc or {}).get(named) if named else self._newest(journey, event["type"] in OPEN_ONLY)
        if incident is None:
            self._out.unmatched_recovery.append(event)
            return
        rule = self.config.rule(incident["rule"], incident["store_id"], incident["channel"])
        waiting_since = incident.get("waiting_since")
        if apply_recovery(incident, event, rule, self.config.calendar(incident["store_id"])):
            target = STAGE_TARGET.get(event["type"])
            if target is not None:
                self._cancel_sla(journey, incident, target)
            if incident.get("waiting_since") != waiting_since:  # a wait on the customer began or ended
                self._move_resolve_deadline(event["journey_id"], journey, incident)
            self._emit(incident)

    def _move_resolve_deadline(self, journey_id: str, journey: Journey, incident: Incident) -> None:
        """A wait on the customer cancels the resolve deadline; its end schedules the moved one."""
        self._cancel_sla(journey, incident, "resolve_s")
        due = incident.get("sla_resolve_due_at")
        if due is not None and incident["resolved_at"] is None and not incident["sla_resolve_breached"]:
            self._schedule(journey_id, journey, due, "sla", f"{incident['incident_id']}|resolve_s")

    def _customer_is_back(self, journey_id: str, journey: Journey, event: dict[str, Any]) -> None:
        """Any touchpoint of the customer's own ends a wait on them, as a CUSTOMER_REPLIED would."""
        for incident in (journey.inc or {}).values():
            if incident.get("waiting_since") is None:
                continue
            rule = self.config.rule(incident["rule"], incident["store_id"], incident["channel"])
            if set_waiting(incident, False, event["occurred_at"], self.config.calendar(incident["store_id"]), rule):
                incident["updated_at"] = max(incident["updated_at"], event["occurred_at"])
                incident["version"] += 1
                self._move_resolve_deadline(journey_id, journey, incident)
                self._emit(incident)

    def _cancel_sla(self, journey: Journey, incident: Incident, target: str) -> None:
        ref = f"{incident['incident_id']}|{target}"
        for entry in journey.dl or ():
            if entry[1] == "sla" and entry[2] == ref:
                journey.drop_deadline(entry)
                return

    def _feedback(self, journey_id: str, journey: Journey, event: dict[str, Any]) -> None:
        """Feedback after an incident is its post-recovery score; bad feedback alone is a failure."""
        score_text = (event.get("attrs") or {}).get("score")
        try:
            score = float(score_text) if score_text is not None else None
        except ValueError:
            score = None
        newest = self._newest(journey, open_only=False)
        if newest is not None and newest["failed_at"] <= event["occurred_at"]:
            rule = self.config.rule(newest["rule"], newest["store_id"], newest["channel"])
            if apply_recovery(newest, event, rule):
                self._emit(newest)
            return
        if newest is None and journey.old:
            # feedback on an incident of this journey that expired: its score, not a new failure
            self._out.unmatched_recovery.append(event)
            return
        rule = self.config.rule("negative_feedback", event.get("store_id"), event.get("channel"))
        if score is not None and score <= (rule.max_score or 2):
            self._open_incident(journey_id, journey, "negative_feedback", event["event_id"], event,
                                event["occurred_at"])


def _about(event: dict[str, Any]) -> str | None:
    """What an incident is about, in the customer's or the device's words (complaint text...)."""
    attrs = event.get("attrs") or {}
    text = attrs.get("text") or attrs.get("reason") or attrs.get("message")
    return str(text)[:300] if text else None
