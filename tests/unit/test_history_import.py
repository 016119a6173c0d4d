"""`journey import`'s pure part: the mapping file, rows -> touchpoints, refusals, event-time order."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.base.errors import JourneyError
from schemas.contract import ms_from_iso
from streams.history_import import MappingFileError, is_imported, load_mapping, read_export

EXAMPLES = Path(__file__).parents[2] / "infra" / "examples"
MAPPING = load_mapping(EXAMPLES / "orders_reviews.toml")
HEADER = ("record,order_id,customer_email,store,checkout_started_at,paid_at,promise_s,shipped_at,refunded_at,"
          "refund_amount,total,currency,line_item,reviewed_at,rating\n")


def export(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_the_shipped_example_reads_in_event_time_order_with_line_items_merged() -> None:
    plan = read_export(EXAMPLES / "orders_reviews.csv", MAPPING)
    assert (plan.rows, len(plan.events), plan.journeys, plan.duplicates, plan.refused) == (9, 21, 5, 4, [])
    times = [e["occurred_at"] for e in plan.events]
    assert times == sorted(times)
    placed = next(e for e in plan.events if e["type"] == "ORDER_PLACED" and e["journey_id"] == "shop:1002")
    assert placed["promised_within_s"] == 172800 and placed["request_id"] == "1002"
    assert placed["customer_id"] == "shop:bo@example.com" and placed["store_id"] == "main-street"
    assert placed["attrs"] == {"amount": "31.50", "currency": "EUR"} and placed["source"] == "import"
    refund = next(e for e in plan.events if e["type"] == "COMPENSATION_GIVEN")
    assert refund["attrs"] == {"kind": "refund", "amount": "10.00", "currency": "EUR"}
    review = next(e for e in plan.events if e["type"] == "FEEDBACK_SUBMITTED" and e["journey_id"] == "shop:1004")
    assert review["attrs"] == {"score": "2"} and review["stage"] == "after"
    assert all(is_imported(e["event_id"]) for e in plan.events)


def test_event_ids_depend_on_content_so_a_second_import_is_the_same_events(tmp_path: Path) -> None:
    again = read_export(EXAMPLES / "orders_reviews.csv", MAPPING)
    assert [e["event_id"] for e in again.events] == [e["event_id"] for e in read_export(
        EXAMPLES / "orders_reviews.csv", MAPPING).events]


def test_rows_out_of_time_order_are_sorted_and_bad_rows_refused_with_line_and_reason(tmp_path: Path) -> None:
    path = export(tmp_path,
                  "order,2,b@x.io,s,,2026-10-02T10:00:00Z,3600,2026-10-02T10:30:00Z,,,1,EUR,a,,",
                  "order,1,a@x.io,s,,2026-10-01T10:00:00+02:00,3600,,,,1,EUR,a,,",
                  "order,,c@x.io,s,,2026-10-01T10:00:00Z,,,,,1,EUR,a,,",
                  "order,3,c@x.io,s,,01/10/2026,,,,,1,EUR,a,,",
                  "order,4,c@x.io,s,,2026-10-01T10:00:00Z,-5,,,,1,EUR,a,,",
                  "review,1,a@x.io,s,,,,,,,,,,2026-10-03T10:00:00Z,1")
    plan = read_export(path, MAPPING)
    assert [(e["journey_id"], e["type"]) for e in plan.events] == [
        ("shop:1", "CHECKOUT_COMPLETED"), ("shop:1", "ORDER_PLACED"), ("shop:2", "CHECKOUT_COMPLETED"),
        ("shop:2", "ORDER_PLACED"), ("shop:2", "ORDER_SERVED"), ("shop:1", "FEEDBACK_SUBMITTED")]
    assert plan.events[0]["occurred_at"] == ms_from_iso("2026-10-01T08:00:00Z")
    assert [line for line, _ in plan.refused] == [4, 5, 6]
    reasons = [reason for _, reason in plan.refused]
    assert "column order_id: the journey is empty" in reasons[0]
    assert "column paid_at: '01/10/2026' is not a time" in reasons[1]
    assert "promised_within_s must be a positive integer" in reasons[2]


def test_mapping_and_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text('[columns]\njourney = "id"\n[[events]]\ntype = "SHIPPED"\ntime = "t"\n')
    with pytest.raises(MappingFileError, match="type 'SHIPPED' is not a touchpoint type"):
        load_mapping(bad)
    bad.write_text('[columns]\ncustomer = "c"\n')
    with pytest.raises(MappingFileError, match="journey is required"):
        load_mapping(bad)
    bad.write_text('[columns]\njourney = "id"\nstray = 1\n')
    with pytest.raises(MappingFileError, match="unknown key 'stray'"):
        load_mapping(bad)
    other = tmp_path / "other.csv"
    other.write_text("id,when\n1,2026-10-01T00:00:00Z\n")
    with pytest.raises(JourneyError, match="columns the file does not have: checkout_started_at"):
        read_export(other, MAPPING)
    with pytest.raises(JourneyError, match="no such file"):
        read_export(tmp_path / "missing.csv", MAPPING)


def test_a_recent_failure_in_imported_history_is_recorded_not_paged() -> None:
    """The paging horizon covers old history; an import of the last hour relies on the trigger's id."""
    from tests.unit.test_alert_book import book, incident

    now = ms_from_iso("2026-11-30T12:00:00Z")
    imported = incident(failed_at=now - 60_000, trigger_event_id="import:3f2a")
    live = incident(incident_id="inc-live", failed_at=now - 60_000, trigger_event_id="pos-77")
    alerts = book().on_incident(imported, now) + book().on_incident(live, now)
    assert [(a["kind"], a["paged"]) for a in alerts] == [("suppressed", False), ("triggered", True)]
    assert "journey import" in alerts[0]["reason"]


def test_history_behind_a_partitions_live_event_time_is_refused_with_why() -> None:
    from streams.import_guard import import_conflict

    first = ms_from_iso("2026-10-01T00:00:00Z")
    assert import_conflict({}, first, 300_000) is None  # an empty topic
    assert import_conflict({0: first - 1000, 1: first + 200_000}, first, 300_000) is None  # within lateness
    reason = import_conflict({0: first - 1000, 2: ms_from_iso("2026-11-24T12:00:00Z")}, first, 300_000)
    assert reason is not None and "up to 2026-11-24T12:00:00.000Z (partition 2, 1 of 2 partitions ahead)" in reason
    assert "--force" in reason
