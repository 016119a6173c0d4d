"""The manager's insights without ClickHouse: groups, buckets, eligibility, windows, human units, causes,
and the simulator's planted return effect."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consumers import human
from consumers.insight_queries import top_causes
from consumers.insights import Reference, insight, per_hundred, recovery_paradox, return_figures
from consumers.report import parse_date_ms, report_window
from infra.base.errors import JourneyError
from streams.simulator import ReturnModel, simulate

BASE = Reference(customer="c", store="s1", failed=True, resolved=True, first_response_s=100.0, resolve_s=500.0,
                 compensation=None, order_value=40.0, score=4, returned_30d=True, returned_90d=True)


def test_groups_and_rates_leave_out_customers_too_recent_to_tell() -> None:
    refs = [BASE, replace(BASE, returned_30d=False), replace(BASE, returned_30d=None, returned_90d=None, score=None),
            replace(BASE, resolved=False, returned_30d=False), replace(BASE, failed=False, resolved=False)]
    groups = insight(refs)["groups"]
    assert groups["recovered"]["customers"] == 3
    assert (groups["recovered"]["eligible_30d"], groups["recovered"]["returned_30d"]) == (2, 1)
    assert groups["recovered"]["return_rate_30d"] == 0.5 and groups["recovered"]["mean_score"] == 4.0
    assert groups["not_recovered"]["return_rate_30d"] == 0.0
    assert groups["no_failure"]["customers"] == 1 and groups["no_failure"]["return_rate_90d"] == 1.0
    assert return_figures([])["return_rate_30d"] is None  # no customers: no rate, not 0%


def test_speed_buckets_have_exclusive_upper_bounds_and_a_row_for_no_response() -> None:
    refs = [replace(BASE, first_response_s=119.9), replace(BASE, first_response_s=120.0),
            replace(BASE, first_response_s=None, resolve_s=None, resolved=False), replace(BASE, failed=False)]
    buckets = {b["bucket"]: b["customers"] for b in insight(refs)["by_first_response"]}
    assert buckets == {"under 2 min": 1, "2-5 min": 1, "5-15 min": 0, "15-60 min": 0, "over 1 h": 0, "no response": 1}
    resolve = {b["bucket"]: b["customers"] for b in insight(refs)["by_resolve"]}
    assert resolve["under 10 min"] == 2 and resolve["not resolved"] == 1


def test_compensation_as_a_share_of_the_order_value() -> None:
    refs = [replace(BASE, compensation=5.0, order_value=42.0), replace(BASE, compensation=5.0, order_value=19.9),
            replace(BASE, compensation=5.0, order_value=None), replace(BASE, compensation=None),
            replace(BASE, compensation=30.0, order_value=40.0)]
    rows = {b["bucket"]: b["customers"] for b in insight(refs)["by_compensation"]}
    assert rows == {"none": 1, "under 10%": 0, "10-25%": 1, "25-50%": 1, "50% or more": 1, "order value unknown": 1}


def test_per_store_and_overall() -> None:
    paradox = recovery_paradox([BASE], [BASE, replace(BASE, store="s2", failed=False)])
    assert paradox["overall"]["groups"]["recovered"]["customers"] == 1
    assert sorted(paradox["by_store"]) == ["s1", "s2"]
    assert paradox["by_store"]["s2"]["groups"]["no_failure"]["customers"] == 1
    assert per_hundred(3, 12) == 25.0 and per_hundred(3, 0) is None


def test_report_window_dates_since_and_newest_data() -> None:
    day = 86_400_000
    jan1 = parse_date_ms("2018-01-01", "--from")
    assert report_window("7d", "2018-01-01", "2018-01-31", None, None, False).until_ms == jan1 + 31 * day
    noon = report_window("7d", "2018-01-01T12:00", None, "s", None, False, now_ms=jan1 + day)
    assert noon.since_ms == jan1 + day // 2
    backfill = report_window("30d", None, None, None, newest_ms=jan1, at_newest=True, now_ms=jan1 + 3000 * day)
    assert (backfill.since_ms, backfill.until_ms) == (jan1 + 1 - 30 * day, jan1 + 1)  # reaches 2018, not "today"
    with pytest.raises(JourneyError, match="use a date such as 2018-03-01"):
        report_window("7d", "01/03/2018", None, None, None, False)
    with pytest.raises(JourneyError, match="not before its end"):
        report_window("7d", "2018-02-01", "2018-01-01", None, None, False)
    with pytest.raises(JourneyError, match="holds no touchpoints yet"):
        report_window("7d", None, None, None, None, True)


def test_human_units() -> None:
    assert [human.duration(s) for s in (None, 42, 1163, 3600, 5400, 200_000)] == [
        "-", "42 s", "19 min 23 s", "1 h", "1 h 30 min", "2 d 7 h"]
    assert [human.percent(x) for x in (None, 0.263, 1.0, 0.0, 0.012)] == ["-", "26%", "100%", "0%", "1.2%"]
    assert [human.text(v) for v in (None, True, False, float("nan"), 3)] == ["-", "yes", "no", "-", "3"]


def test_causes_name_their_busiest_hour_most_frequent_first() -> None:
    rows = top_causes({("complaint", "cold food", "s1"): {12: 3, 13: 1},
                       ("promise_breach", "spoon", "s2"): {9: 2, 20: 2, 21: 2}}, top=5)
    assert [(r["cause"], r["incidents"], r["peak_local_hour"]) for r in rows] == [("spoon", 6, 9), ("cold food", 4, 12)]
    assert len(rows[0]["by_local_hour"]) == 24


def test_simulator_plants_returns_at_the_model_rate() -> None:
    model = ReturnModel()
    sim = simulate(3, 4000, 1_514_764_800_000, 20 * 86400, failure_rate=0.4, returns=model)
    truth = {t.journey_id: t for t in sim.truth}
    journeys: dict[str, list[str]] = {}
    for e in sim.events:
        if e["journey_id"] not in journeys.get(e["customer_id"], []):
            journeys.setdefault(e["customer_id"], []).append(e["journey_id"])
    expected = returned = 0.0
    for customer_journeys in journeys.values():
        first = min(customer_journeys, key=lambda j: "-back" in j)  # the planted return is the "-back" journey
        expected += model.probability(truth.get(first))
        returned += len(customer_journeys) > 1
    assert len(journeys) == 4000
    assert abs(returned - expected) < 4 * (len(journeys) * 0.25) ** 0.5  # binomial: within 4 standard deviations
    assert max(len(js) for js in journeys.values()) == 2
