"""The customers stage's decisions: repeat severity, ties, "came back", revisions (pure)."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.customers.book import Customer, CustomerBook, CustomerRules, published_version

DAY = 86_400_000
T0 = 1_763_899_200_000
RULES = CustomerRules()


def incident(iid: str, journey: str, failed_at: int, version: int = 1, recovered: bool | None = None,
             customer: str = "c-1") -> dict[str, Any]:
    return {"k": "i", "incident_id": iid, "journey_id": journey, "customer_id": customer, "failed_at": failed_at,
            "severity": "medium", "version": version, "recovered": recovered, "repeat_customer": False}


def start(journey: str, at: int, customer: str = "c-1") -> dict[str, Any]:
    return {"k": "s", "journey_id": journey, "customer_id": customer, "at": at}


def final(facts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    book = CustomerBook(RULES)
    latest: dict[str, dict[str, Any]] = {}
    for fact in facts:
        for row in book.take(fact):
            assert row["version"] > latest.get(row["incident_id"], {}).get("version", 0), "versions must grow"
            latest[row["incident_id"]] = row
    return latest


def test_an_earlier_incident_within_30_days_makes_a_repeat_one_level_higher() -> None:
    rows = final([incident("a", "j-a", T0), incident("b", "j-b", T0 + 29 * DAY), incident("c", "j-c", T0 + 70 * DAY)])
    assert (rows["a"]["repeat_customer"], rows["a"]["severity"]) == (False, "medium")
    assert (rows["b"]["repeat_customer"], rows["b"]["severity"]) == (True, "high")
    assert rows["c"]["repeat_customer"] is False  # the last one was 41 days before


def test_a_late_earlier_incident_revises_the_later_one_with_a_new_version() -> None:
    book = CustomerBook(RULES)
    [first] = book.take(incident("b", "j-b", T0 + DAY))
    assert (first["repeat_customer"], first["version"]) == (False, 1)
    revised = {r["incident_id"]: r for r in book.take(incident("a", "j-a", T0))}
    assert (revised["b"]["repeat_customer"], revised["b"]["severity"], revised["b"]["version"]) == (True, "high", 2)
    assert revised["a"]["repeat_customer"] is False


def test_a_tie_at_the_same_instant_makes_exactly_one_of_them_the_repeat() -> None:
    rows = final([incident("inc-b", "j-1", T0), incident("inc-a", "j-2", T0)])
    assert (rows["inc-a"]["repeat_customer"], rows["inc-b"]["repeat_customer"]) == (False, True)


def test_a_new_journey_after_the_incident_within_30_days_is_a_return() -> None:
    rows = final([start("j-a", T0 - 1000), incident("a", "j-a", T0), start("j-b", T0 + 30 * DAY)])
    assert rows["a"]["recovered"] is True
    assert rows["a"]["version"] == published_version(1, False, True)
    assert final([incident("a", "j-a", T0), start("j-b", T0 + 30 * DAY + 1)])["a"]["recovered"] is None


def test_a_late_event_of_an_older_journey_is_not_a_return() -> None:
    # j-b began before the incident; its later events (after the incident) do not move its start
    rows = final([start("j-b", T0 - 5000), incident("a", "j-a", T0), start("j-b", T0 + 1000)])
    assert rows["a"]["recovered"] is None


def test_feedback_settles_recovered_whatever_the_return() -> None:
    rows = final([incident("a", "j-a", T0), start("j-b", T0 + DAY), incident("a", "j-a", T0, 2, recovered=False)])
    assert rows["a"]["recovered"] is False and rows["a"]["version"] == published_version(2, False, True)


def test_repeated_facts_change_nothing() -> None:
    book = CustomerBook(RULES)
    assert book.take(incident("a", "j-a", T0))
    assert book.take(incident("a", "j-a", T0)) == [] and book.take(start("j-b", T0 + 1)) != []
    assert book.take(start("j-b", T0 + 1)) == []


def test_state_round_trips_and_the_profile_counts() -> None:
    book = CustomerBook(RULES)
    for fact in [start("j-a", T0), incident("a", "j-a", T0 + 10), start("j-b", T0 + DAY), start("j-c", T0 + 2 * DAY)]:
        book.take(fact)
    restored = CustomerBook(RULES)
    restored.load([("c-1", Customer.from_state(book.customers["c-1"].to_state()))])
    profile = restored.profile("c-1")
    assert {k: profile[k] for k in ("first_seen", "last_visit", "journeys", "incidents", "recovered", "regular")} == {
        "first_seen": T0, "last_visit": T0 + 2 * DAY, "journeys": 3, "incidents": 1, "recovered": 1, "regular": True}


def test_expiry_drops_old_facts_but_keeps_counting_them() -> None:
    book = CustomerBook(RULES)
    for fact in [start("j-a", T0), incident("a", "j-a", T0 + 10), start("j-b", T0 + 100 * DAY)]:
        book.take(fact)
    book.take_dirty()
    book.expire(T0 + 100 * DAY)
    assert book.take_dirty() == {"c-1"}
    profile = book.profile("c-1")
    assert (profile["journeys"], profile["incidents"], profile["recovered"]) == (2, 1, 0)
    book.expire(T0 + 300 * DAY)
    assert "c-1" not in book.customers


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_any_arrival_order_gives_the_same_final_rows(seed: int) -> None:
    rng = random.Random(seed)
    ids = itertools.count()
    facts: list[dict[str, Any]] = []
    for j in range(6):
        first = T0 + rng.choice([0, 1, 10, 25, 31, 40]) * DAY + rng.choice([0, 1000])
        facts.append(start(f"j-{j}", first, customer=f"c-{j % 2}"))
        if rng.random() < 0.6:
            iid = f"inc-{next(ids)}"
            at = first + rng.choice([0, 500])
            for version in range(1, rng.randint(1, 3) + 1):
                facts.append(incident(iid, f"j-{j}", at, version, customer=f"c-{j % 2}"))
    in_order = final(facts)
    shuffled = facts[:]
    rng.shuffle(shuffled)
    # one incident's versions reach the stage in order (one journey, one partition); the rest in any order
    by_incident: dict[str, list[dict[str, Any]]] = {}
    for fact in facts:
        if fact["k"] == "i":
            by_incident.setdefault(fact["incident_id"], []).append(fact)
    reordered = [by_incident[f["incident_id"]].pop(0) if f["k"] == "i" else f for f in shuffled]
    assert final(reordered) == in_order
