"""What a customer's history decides about their incidents, and their profile (pure, no Kafka).

The journeys stage reports, keyed by customer, every incident change (its own fields, version
`v`, `repeat_customer` false, base severity) and every journey start (a journey seen for the
first time, or its first event moved earlier). From the whole set of these facts -- never from
the order they arrived in -- a `Customer` decides for each of its incidents:

- **repeat customer**: another incident of the customer failed in the 30 days before this one
  (a withdrawn incident never failed: it counts for nothing; a row already published as a repeat
  because of it stays so, as "came back" does).
  "Before" is by `(failed_at, incident_id)`: of two incidents failing at the same instant the
  one with the smaller incident id is the earlier (ties are broken, never both or neither).
  A repeat is paged one severity level higher than its rule says.
- **came back**: a *new* journey of the customer whose first event is after the incident's
  `failed_at` and at most 30 days after it (`failed_at < first <= failed_at + 30 d`). A journey's
  first event is the oldest event time seen in it, so a late event of a journey that started
  before the incident never makes a return. `recovered` is the post-recovery feedback where there
  is one (score >= 4), else true when the customer came back, else unknown (null).

The published row of an incident carries version `v + repeat + came_back`. Along one incident's
history v never falls and the two facts only turn true (an incident never disappears), so every
publication has a higher version than the one before -- ClickHouse keeps the newest -- and the
final version is a function of the final facts alone: the same in every run. Without customer
facts the version is the journey's own (1 when opened, +1 per change).

One fact could turn false again: a journey first seen after an incident, whose older first event
arrives later, stops being a return. Taking that back could publish a changed row under a version
already used, so "came back" stays true once published (`Customer.back`); the one place where an
arrival order can show (see README, "Customers").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.domain.incidents import WITHDRAWN, Incident, bump

DAY_MS = 86_400_000


@dataclass(frozen=True)
class CustomerRules:
    repeat_window_days: float = 30
    recovered_window_days: float = 30
    regular_visits: int = 3  # a customer with this many journeys in ...
    regular_window_days: float = 90  # ... this many days up to their last visit is a regular
    ttl_days: float = 90  # facts older than this (event time) before the customer's newest are dropped


def published_version(version: int, repeat: bool, came_back: bool) -> int:
    """The incident row's version for the journey-side version and the two customer facts."""
    return version + repeat + came_back


class Customer:
    """One customer's facts: incidents (journey-side latest), journey starts, and counters of
    what expired from them (so the profile keeps counting)."""

    __slots__ = ("incidents", "journeys", "published", "back", "expired_journeys", "expired_incidents",
                 "expired_recovered", "first_seen", "profile_version")

    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.journeys: dict[str, int] = {}  # journey id -> its first event time
        self.published: dict[str, int] = {}  # incident id -> version of the row last published
        self.back: set[str] = set()  # incidents published as "came back" (it stays: see the module docstring)
        self.expired_journeys = 0
        self.expired_incidents = 0
        self.expired_recovered = 0
        self.first_seen: int | None = None
        self.profile_version = 0

    def newest(self) -> int:
        """The customer's newest fact (event time)."""
        times = [*self.journeys.values(), *(i["failed_at"] for i in self.incidents.values())]
        return max(times) if times else 0

    def to_state(self) -> dict[str, Any]:
        return {"i": self.incidents, "j": self.journeys, "p": self.published, "b": sorted(self.back),
                "x": [self.expired_journeys, self.expired_incidents, self.expired_recovered],
                "f": self.first_seen, "v": self.profile_version}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Customer:
        customer = cls()
        customer.incidents = state["i"]
        customer.journeys = state["j"]
        customer.published = state["p"]
        customer.back = set(state.get("b", ()))
        customer.expired_journeys, customer.expired_incidents, customer.expired_recovered = state["x"]
        customer.first_seen = state["f"]
        customer.profile_version = state["v"]
        return customer


def decide(customer: Customer, incident: Incident, rules: CustomerRules) -> Incident:
    """The incident row as published: the journey's fields with the customer's facts applied."""
    key = (incident["failed_at"], incident["incident_id"])
    since = incident["failed_at"] - int(rules.repeat_window_days * DAY_MS)
    repeat = any(other["failed_at"] >= since and (other["failed_at"], iid) < key
                 for iid, other in customer.incidents.items()
                 if iid != incident["incident_id"] and other.get("status") != WITHDRAWN)
    until = incident["failed_at"] + int(rules.recovered_window_days * DAY_MS)
    came_back = incident["incident_id"] in customer.back or any(
        jid != incident["journey_id"] and incident["failed_at"] < first <= until
        for jid, first in customer.journeys.items())
    row = dict(incident)
    row["repeat_customer"] = repeat
    row["severity"] = bump(incident["severity"]) if repeat else incident["severity"]
    if row["recovered"] is None and came_back:
        row["recovered"] = True
    row["version"] = published_version(incident["version"], repeat, came_back)
    return row


class CustomerBook:
    """The customers of the partitions a worker holds; `take` a fact, get the rows to publish."""

    def __init__(self, rules: CustomerRules) -> None:
        self.rules = rules
        self.customers: dict[str, Customer] = {}
        self.dirty: set[str] = set()  # customers changed since `take_dirty`

    def load(self, customers: list[tuple[str, Customer]]) -> None:
        self.customers.update(customers)

    def forget(self, customer_ids: list[str]) -> None:
        for cid in customer_ids:
            self.customers.pop(cid, None)

    def take_dirty(self) -> set[str]:
        """Customers changed since the last call (the stage persists them; gone ones as deletions)."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    def take(self, fact: dict[str, Any]) -> list[Incident]:
        """Apply one fact (`{"k": "i", ...incident}` or `{"k": "s", journey_id, customer_id, at}`);
        returns the incident rows whose published form changed (a new, higher version each)."""
        cid = fact["customer_id"]
        customer = self.customers.get(cid)
        if customer is None:
            customer = self.customers[cid] = Customer()
        if fact["k"] == "s":
            known = customer.journeys.get(fact["journey_id"])
            if known is not None and known <= fact["at"]:
                return []  # seen (a repeat after a restart, or a later event of the journey)
            customer.journeys[fact["journey_id"]] = fact["at"]
            customer.first_seen = fact["at"] if customer.first_seen is None else min(customer.first_seen, fact["at"])
        else:
            incident = {k: v for k, v in fact.items() if k != "k"}
            known_incident = customer.incidents.get(incident["incident_id"])
            if known_incident is not None and known_incident["version"] >= incident["version"]:
                return []  # an older or the same change again
            customer.incidents[incident["incident_id"]] = incident
        self.dirty.add(cid)
        return self._publishable(customer)

    def _publishable(self, customer: Customer) -> list[Incident]:
        rows = []
        for iid, incident in sorted(customer.incidents.items(), key=lambda kv: (kv[1]["failed_at"], kv[0])):
            row = decide(customer, incident, self.rules)
            last = customer.published.get(iid, 0)
            if row["version"] > last:
                customer.published[iid] = row["version"]
                if row["version"] - incident["version"] - row["repeat_customer"]:
                    customer.back.add(iid)
                rows.append(row)
        return rows

    def profile(self, customer_id: str) -> dict[str, Any]:
        """The customer's profile row (`customers` table)."""
        customer = self.customers[customer_id]
        starts = sorted(customer.journeys.values())
        last_visit = starts[-1] if starts else None
        window = int(self.rules.regular_window_days * DAY_MS)
        recent = sum(1 for at in starts if last_visit is not None and at >= last_visit - window)
        live = [inc for inc in customer.incidents.values() if inc.get("status") != WITHDRAWN]  # withdrawn: none
        recovered = sum(1 for inc in live if decide(customer, inc, self.rules)["recovered"])
        customer.profile_version += 1
        return {
            "customer_id": customer_id, "version": customer.profile_version, "first_seen": customer.first_seen,
            "last_visit": last_visit, "journeys": len(starts) + customer.expired_journeys,
            "incidents": len(live) + customer.expired_incidents,
            "recovered": recovered + customer.expired_recovered, "regular": recent >= self.rules.regular_visits,
        }

    def expire(self, now_event_ms: int) -> None:
        """Drop facts older than the TTL before `now_event_ms` (event time); customers left
        with none are dropped whole (dirty and absent: a deletion)."""
        horizon = now_event_ms - int(self.rules.ttl_days * DAY_MS)
        gone = []
        for cid, customer in self.customers.items():
            old_journeys = [jid for jid, at in customer.journeys.items() if at < horizon]
            old_incidents = [iid for iid, inc in customer.incidents.items() if inc["failed_at"] < horizon]
            if not old_journeys and not old_incidents:
                continue
            # a withdrawn incident counts for nothing, expired or not
            counted = [iid for iid in old_incidents if customer.incidents[iid].get("status") != WITHDRAWN]
            for iid in counted:
                customer.expired_recovered += bool(decide(customer, customer.incidents[iid], self.rules)["recovered"])
            for jid in old_journeys:
                del customer.journeys[jid]
            for iid in old_incidents:
                del customer.incidents[iid]
                customer.published.pop(iid, None)
                customer.back.discard(iid)
            customer.expired_journeys += len(old_journeys)
            customer.expired_incidents += len(counted)
            self.dirty.add(cid)
            if not customer.journeys and not customer.incidents:
                gone.append(cid)
        for cid in gone:
            del self.customers[cid]
