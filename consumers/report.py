"""The recovery picture from ClickHouse (`journey report`, `journey customer`).

Every filter is a server-side query parameter ({name:Type}), never spliced into SQL text.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver import Client

from consumers import insight_queries
from consumers.insights import recovery_paradox
from infra.base.errors import JourneyError
from streams.domain.config import load_detection_config

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# a withdrawn incident never failed (an on-time fulfilment reported late): left out of every
# figure, and counted apart (`withdrawn`)
_FILTER = "status != 'withdrawn' AND " + insight_queries.WINDOW
WITHDRAWN = "SELECT count() FROM journey.incidents FINAL WHERE status = 'withdrawn' AND " + insight_queries.WINDOW

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


def parse_date_ms(text: str, option: str, end: bool = False) -> int:
    """'2018-03-01' or '2018-03-01T12:00' (UTC unless it names an offset) -> epoch ms.

    A bare date given as an end (`--to`) means the end of that day, so `--to 2018-03-31` includes it.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise JourneyError(f"{option} {text!r}: use a date such as 2018-03-01 or 2018-03-01T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(text.strip()) == 10:
        moment += timedelta(days=1)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Window:
    """The report's time range [since_ms, until_ms) in failure time, and an optional store."""

    since_ms: int
    until_ms: int
    store: str | None = None

    def params(self) -> dict[str, Any]:
        return {"since": self.since_ms, "until": self.until_ms, "store": self.store or ""}

    def describe(self) -> str:
        return f"{_utc(self.since_ms)} to {_utc(self.until_ms)} UTC" + (f", store {self.store}" if self.store else "")


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def report_window(since: str | None, date_from: str | None, date_to: str | None, store: str | None,
                  newest_ms: int | None, at_newest: bool, now_ms: int | None = None) -> Window:
    """The window the CLI options name: --from/--to dates win over --since; --since counts back from
    now, or from the newest data with `at_newest` (a backfill of old data)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    anchor = now_ms
    if at_newest:
        if newest_ms is None:
            raise JourneyError("--at-newest: ClickHouse holds no touchpoints yet")
        anchor = newest_ms + 1
    until = parse_date_ms(date_to, "--to", end=True) if date_to else anchor
    if date_from:
        start = parse_date_ms(date_from, "--from")
    else:
        start = until - parse_duration_s(since or "7d", "--since") * 1000
    if start >= until:
        raise JourneyError(f"the report would start {_utc(start)} UTC, not before its end {_utc(until)} UTC: "
                           "check --from/--to")
    return Window(start, until, store)


def recovery_report(client: Client, window: Window, zones: dict[str, str] | None = None,
                    rules_file: Path | None = None, sla_goal: float = 0.9) -> dict[str, Any]:
    """Incidents by rule and SERVQUAL dimension, recovery latencies, SLA, compensation, worst stores,
    incidents by each store's local hour of the day; and the manager's insights under stable keys:
    `recovery_paradox`, `trend`, `rates`, `causes` (see `consumers.insights`)."""
    params = window.params()
    since_ms, store = window.since_ms, window.store
    rules = [dict(zip(RULE_COLUMNS, row, strict=True)) for row in client.query(BY_RULE, parameters=params).result_rows]
    servqual = {row[0]: row[1] for row in client.query(BY_SERVQUAL, parameters=params).result_rows}
    stores = [{"store": r[0], "incidents": r[1], "sla_compliance": r[2], "ttr_p50_s": r[3]}
              for r in client.query(WORST_STORES, parameters=params).result_rows]
    newest = insight_queries.newest_ms(client)
    overall = insight_queries.references(client, params, False, newest) if newest else []
    per_store = insight_queries.references(client, params, True, newest) if newest else []
    paradox = recovery_paradox(overall, per_store)
    return {"since_ms": since_ms, "until_ms": window.until_ms, "store": store, "newest_data_ms": newest,
            "total_incidents": sum(r["incidents"] for r in rules),
            "withdrawn": int(client.query(WITHDRAWN, parameters=params).result_rows[0][0]),
            "by_rule": rules, "by_servqual": servqual, "worst_stores": stores,
            "by_local_hour": incidents_by_local_hour(client, window, zones or {}),
            "targets": sla_targets(rules_file), "sla_goal": sla_goal,
            "recovery_paradox": paradox, "trend": insight_queries.trend(client, params),
            "rates": insight_queries.rates(client, params),
            "causes": insight_queries.causes(client, params, zones or {})}


def sla_targets(rules_file: Path | None) -> dict[str, dict[str, float]]:
    """Each rule's default SLA targets in seconds (acknowledge, first response, resolve)."""
    config = load_detection_config(rules_file)
    return {name: asdict(rule.sla) for name, rule in sorted(config.rules.items())}


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


def incidents_by_local_hour(client: Client, window: Window, zones: dict[str, str]) -> dict[int, int]:
    """Incidents per hour of the day in each store's own time zone (stores not configured: UTC)."""
    params: dict[str, Any] = window.params()
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
