"""The recovery picture from ClickHouse (`journey report`, `journey customer`).

Every filter is a server-side query parameter ({name:Type}), never spliced into SQL text.
"""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver import Client

from infra.errors import JourneyError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_FILTER = "failed_at >= fromUnixTimestamp64Milli({since:Int64}) AND ({store:String} = '' OR store_id = {store:String})"

BY_RULE = f"""
SELECT rule, servqual, count() AS incidents,
       round(quantile(0.5)(time_to_acknowledge_s), 1), round(quantile(0.9)(time_to_acknowledge_s), 1),
       round(quantile(0.5)(time_to_first_response_s), 1), round(quantile(0.9)(time_to_first_response_s), 1),
       round(quantile(0.5)(time_to_resolve_s), 1), round(quantile(0.9)(time_to_resolve_s), 1),
       round(1 - avg(sla_acknowledge_breached OR sla_first_response_breached OR sla_resolve_breached), 3),
       round(avg(compensation_amount IS NOT NULL), 3),
       round(avgIf(recovered, recovered IS NOT NULL), 3),
       round(quantile(0.5)(business_time_to_acknowledge_s), 1), round(quantile(0.5)(business_time_to_resolve_s), 1)
FROM journey.incidents FINAL WHERE {_FILTER}
GROUP BY rule, servqual ORDER BY incidents DESC, rule
"""
BY_SERVQUAL = f"""
SELECT servqual, count() FROM journey.incidents FINAL WHERE {_FILTER} GROUP BY servqual ORDER BY count() DESC
"""
WORST_STORES = f"""
SELECT ifNull(store_id, '(none)') AS store, count() AS incidents,
       round(1 - avg(sla_acknowledge_breached OR sla_first_response_breached OR sla_resolve_breached), 3) AS sla,
       round(quantile(0.5)(time_to_resolve_s), 1)
FROM journey.incidents FINAL WHERE {_FILTER}
GROUP BY store ORDER BY incidents DESC, sla ASC LIMIT 5
"""
RULE_COLUMNS = ["rule", "servqual", "incidents", "tta_p50_s", "tta_p90_s", "ttfr_p50_s", "ttfr_p90_s",
                "ttr_p50_s", "ttr_p90_s", "sla_compliance", "share_compensated", "share_recovered",
                "tta_business_p50_s", "ttr_business_p50_s"]  # business time: the stores' opening hours only


def parse_duration_s(text: str, option: str) -> int:
    """'30m', '24h', '7d', '2w' -> seconds; a clear error naming `option` otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise JourneyError(f"{option} {text!r}: use a duration such as 30m, 24h, 7d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def parse_since(text: str, now_ms: int | None = None) -> int:
    """'24h', '7d', '30m' -> epoch ms that long ago; clear error otherwise."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - parse_duration_s(text, "--since") * 1000


def recovery_report(client: Client, since_ms: int, store: str | None,
                    zones: dict[str, str] | None = None) -> dict[str, Any]:
    """Incidents by rule and SERVQUAL dimension, recovery latencies, SLA, compensation, worst stores,
    and incidents by each store's local hour of the day."""
    params = {"since": since_ms, "store": store or ""}
    rules = [dict(zip(RULE_COLUMNS, row, strict=True)) for row in client.query(BY_RULE, parameters=params).result_rows]
    servqual = {row[0]: row[1] for row in client.query(BY_SERVQUAL, parameters=params).result_rows}
    stores = [{"store": r[0], "incidents": r[1], "sla_compliance": r[2], "ttr_p50_s": r[3]}
              for r in client.query(WORST_STORES, parameters=params).result_rows]
    return {"since_ms": since_ms, "store": store, "total_incidents": sum(r["incidents"] for r in rules),
            "by_rule": rules, "by_servqual": servqual, "worst_stores": stores,
            "by_local_hour": incidents_by_local_hour(client, since_ms, store, zones or {})}


CUSTOMER_INCIDENTS = """
SELECT incident_id, journey_id, rule, severity, status, failed_at, time_to_resolve_s, compensation_kind,
       compensation_amount, recovered
FROM journey.incidents FINAL WHERE customer_id = {customer:String} ORDER BY failed_at DESC LIMIT 50
"""
CUSTOMER_JOURNEYS = """
SELECT journey_id, min(occurred_at), max(occurred_at), count(), any(store_id)
FROM journey.touchpoints FINAL WHERE customer_id = {customer:String}
GROUP BY journey_id ORDER BY min(occurred_at) DESC LIMIT 50
"""


def customer_history(client: Client, customer_id: str) -> dict[str, Any]:
    """One customer's journeys and incidents, newest first."""
    params = {"customer": customer_id}
    keys = ["incident_id", "journey_id", "rule", "severity", "status", "failed_at", "time_to_resolve_s",
            "compensation_kind", "compensation_amount", "recovered"]
    rows = client.query(CUSTOMER_INCIDENTS, parameters=params).result_rows
    incidents = [dict(zip(keys, row, strict=True)) for row in rows]
    journeys = [{"journey_id": r[0], "first": r[1], "last": r[2], "events": r[3], "store_id": r[4]}
                for r in client.query(CUSTOMER_JOURNEYS, parameters=params).result_rows]
    return {"customer_id": customer_id, "journeys": journeys, "incidents": incidents}


DEFAULT_STORES_FILE = Path(__file__).resolve().parents[1] / "infra" / "stores.toml"

LOCAL_HOURS = f"""
SELECT toHour(failed_at, {{tz:String}}) AS local_hour, count()
FROM journey.incidents FINAL
WHERE {_FILTER} AND ifNull(store_id, '') IN {{stores:Array(String)}}
GROUP BY local_hour ORDER BY local_hour
"""
OTHER_STORES = "SELECT DISTINCT ifNull(store_id, '') FROM journey.incidents FINAL WHERE " + _FILTER


def store_timezones(path: Path | None = None) -> dict[str, str]:
    """Store id -> IANA time zone, from the stores file; clear error for a bad zone."""
    path = path or DEFAULT_STORES_FILE
    try:
        raw = tomllib.loads(path.read_text()).get("stores", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise JourneyError(f"stores file {path}: {exc} (JOURNEY_STORES_FILE)") from None
    zones = {store: str(body.get("timezone", "UTC")) for store, body in raw.items()}
    for store, zone in zones.items():
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise JourneyError(f"stores file {path}: store {store!r} has unknown time zone {zone!r}") from None
    return zones


def incidents_by_local_hour(client: Client, since_ms: int, store: str | None,
                            zones: dict[str, str]) -> dict[int, int]:
    """Incidents per hour of the day in each store's own time zone (stores not configured: UTC)."""
    params: dict[str, Any] = {"since": since_ms, "store": store or ""}
    present = {row[0] for row in client.query(OTHER_STORES, parameters=params).result_rows}
    by_zone: dict[str, list[str]] = {}
    for name in present:
        by_zone.setdefault(zones.get(name, "UTC"), []).append(name)
    hours = dict.fromkeys(range(24), 0)
    for zone, stores in by_zone.items():
        rows = client.query(LOCAL_HOURS, parameters={**params, "tz": zone, "stores": stores}).result_rows
        for hour, count in rows:
            hours[int(hour)] += int(count)
    return hours
