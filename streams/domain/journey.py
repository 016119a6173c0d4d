"""One journey's detector state, kept small: there is one per open journey (1M and more).

A `__slots__` record instead of a dict, and containers only once something goes in them: most
open journeys have no pending request, no incident, one pending deadline (their expiry check,
held in `exp` alone) and often a single event id to remember (kept bare, not in a list). See
BENCHMARKS.md (memory) for what each part costs.

`to_state` / `from_state` convert to and from the JSON-able dict persisted in the journey table;
empty parts are left out, and states written before (every key present, `order`, the expiry
check also in `dl`) read back the same.
"""

from __future__ import annotations

from typing import Any

Deadline = tuple[int, str, str]  # (due_ms, kind, ref): a pending request or SLA deadline


class Journey:
    """Detector state of one journey (see `streams.domain.processor`)."""

    __slots__ = ("p", "c", "seen", "req", "early", "fired", "inc", "dl", "first", "last", "exp", "old")

    def __init__(self, partition: int, customer_id: str | None) -> None:
        self.p = partition                         # partition that owns the journey
        self.c = customer_id
        self.seen: str | list[str] | None = None   # recent event ids (dedupe); one id is kept bare
        # ref -> [type, due_ms, occurred_ms, request_id, event_id, late_at, store_id, channel]
        self.req: dict[str, list[Any]] | None = None
        self.early: list[list[Any]] | None = None  # fulfilments seen before their request: [type, request_id, at]
        self.fired: dict[str, str] | None = None   # ref -> incident id of a request whose deadline fired
        self.inc: dict[str, dict[str, Any]] | None = None  # incident id -> incident, oldest first
        self.dl: list[Deadline] | None = None       # pending request / SLA deadlines
        self.first: int | None = None              # oldest event time in the journey (its start)
        self.last: int | None = None               # newest event time in the journey
        self.exp: int | None = None                # due time of its expiry check (one pending at most)
        self.old: bool | None = None               # revived after expiry, and had an incident then

    # ---- seen event ids -------------------------------------------------------------------

    def has_seen(self, event_id: str) -> bool:
        seen = self.seen
        if seen is None:
            return False
        return seen == event_id if isinstance(seen, str) else event_id in seen

    def remember(self, event_id: str, keep: int) -> None:
        """Add an event id, keeping the newest `keep`."""
        seen = self.seen
        if seen is None and keep >= 1:
            self.seen = event_id
            return
        ids = [] if seen is None else [seen] if isinstance(seen, str) else seen
        ids.append(event_id)
        if len(ids) > keep:
            del ids[0]
        self.seen = ids

    def seen_ids(self) -> list[str]:
        seen = self.seen
        return [] if seen is None else [seen] if isinstance(seen, str) else list(seen)

    # ---- requests, early fulfilments, fired requests, incidents ---------------------------
    # Containers are made on the first add and dropped when the last entry goes (see the
    # module docstring): the processor never creates or empties them itself.

    def add_request(self, ref: str, request: list[Any]) -> None:
        if self.req is None:
            self.req = {}
        self.req[ref] = request

    def pop_request(self, ref: str) -> list[Any]:
        """Remove and return a pending request (KeyError when it is not pending)."""
        request = self.req.pop(ref)  # type: ignore[union-attr]
        if not self.req:
            self.req = None
        return request

    def add_early(self, fulfilment: list[Any]) -> None:
        if self.early is None:
            self.early = []
        self.early.append(fulfilment)

    def pop_early(self, index: int) -> list[Any]:
        early = self.early
        taken = early.pop(index)  # type: ignore[union-attr]
        if not early:
            self.early = None
        return taken

    def add_fired(self, ref: str, incident_id: str) -> None:
        if self.fired is None:
            self.fired = {}
        self.fired[ref] = incident_id

    def add_incident(self, incident_id: str, incident: dict[str, Any]) -> None:
        if self.inc is None:
            self.inc = {}
        self.inc[incident_id] = incident  # insertion order: oldest first

    # ---- pending deadlines ----------------------------------------------------------------

    def add_deadline(self, entry: Deadline) -> None:
        if self.dl is None:
            self.dl = [entry]
        else:
            self.dl.append(entry)

    def drop_deadline(self, entry: Deadline) -> bool:
        """Remove a pending deadline; False when it is not pending (cancelled or fired)."""
        dl = self.dl
        if not dl or entry not in dl:
            return False
        dl.remove(entry)
        if not dl:
            self.dl = None
        return True

    # ---- incidents --------------------------------------------------------------------------

    def incidents(self) -> list[dict[str, Any]]:
        """Incident records, oldest first."""
        return list(self.inc.values()) if self.inc else []

    # ---- persisted form -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The JSON-able dict stored in the journey table (empty parts left out)."""
        state: dict[str, Any] = {"p": self.p, "c": self.c, "seen": self.seen_ids()}
        for key in ("req", "early", "fired", "inc"):
            value = getattr(self, key)
            if value:
                state[key] = value
        if self.dl:
            state["dl"] = [list(entry) for entry in self.dl]
        if self.first != self.last:  # most journeys: left out, read back as `last`
            state["first"] = self.first
        state["last"] = self.last
        state["exp"] = self.exp
        if self.old:
            state["old"] = 1
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Journey:
        """A journey from `to_state`'s dict, or from the older layout (all keys, `order`, expiry in `dl`)."""
        journey = cls(state["p"], state.get("c"))
        seen = state.get("seen") or None
        journey.seen = seen[0] if seen is not None and len(seen) == 1 else seen
        journey.req = state.get("req") or None
        journey.early = state.get("early") or None
        journey.fired = state.get("fired") or None
        inc = state.get("inc") or None
        if inc and state.get("order"):  # older layout: incident order kept apart
            inc = {**{iid: inc[iid] for iid in state["order"] if iid in inc}, **inc}
        journey.inc = inc
        exp = state.get("exp")
        for due, kind, ref in state.get("dl") or ():
            if kind == "exp":
                exp = due if exp is None else exp
            else:
                journey.add_deadline((due, kind, ref))
        journey.last = state.get("last")
        journey.first = state.get("first", journey.last)
        journey.exp = exp
        journey.old = bool(state.get("old")) or None
        return journey
