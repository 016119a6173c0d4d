"""ClickHouse side of the manager's insights: references, rates, weekly trend, failure causes.

Each query reads the latest state (`FINAL`) and binds every filter as a server-side parameter.
Definitions (reference, came back, order value) are in `consumers.insights`.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver import Client

from consumers.insights import Reference, per_hundred

WINDOW = ("failed_at >= fromUnixTimestamp64Milli({since:Int64}) AND failed_at < fromUnixTimestamp64Milli({until:Int64})"
          " AND ({store:String} = '' OR store_id = {store:String})")

# One row per (customer, scope): scope is the store when {per_store:UInt8} = 1, else '*'.
# Journeys are grouped over all time (a return may fall after the window); references in the window.
REFERENCES = """
WITH
journeys AS (
    SELECT assumeNotNull(customer_id) AS customer, journey_id, min(occurred_at) AS started,
           argMin(ifNull(store_id, ''), occurred_at) AS store,
           sumIf(toFloat64OrZero(attrs['amount']), type = 'PAYMENT_SUCCEEDED') AS paid,
           max(toFloat64OrZero(attrs['total'])) AS total,
           maxIf(toInt32OrNull(attrs['score']), type = 'FEEDBACK_SUBMITTED') AS feedback
    FROM journey.touchpoints FINAL WHERE customer_id IS NOT NULL
    GROUP BY customer, journey_id
),
history AS (
    SELECT customer, groupArray(started) AS starts, groupArray(journey_id) AS ids FROM journeys GROUP BY customer
),
failures AS (
    SELECT assumeNotNull(customer_id) AS customer, if({per_store:UInt8} = 1, ifNull(store_id, ''), '*') AS scope,
           min(failed_at) AS ref_at, argMin(journey_id, failed_at) AS ref_journey,
           argMin(status = 'resolved', failed_at) AS resolved,
           argMin(time_to_first_response_s, failed_at) AS first_response_s,
           argMin(time_to_resolve_s, failed_at) AS resolve_s,
           argMin(compensation_amount, failed_at) AS compensation,
           argMin(post_recovery_score, failed_at) AS score
    FROM journey.incidents FINAL
    WHERE customer_id IS NOT NULL AND status != 'withdrawn' AND """ + WINDOW + """
    GROUP BY customer, scope
),
clean AS (
    SELECT customer, if({per_store:UInt8} = 1, store, '*') AS scope, min(started) AS ref_at,
           argMin(journey_id, started) AS ref_journey, argMin(feedback, started) AS score
    FROM journeys
    WHERE started >= fromUnixTimestamp64Milli({since:Int64}) AND started < fromUnixTimestamp64Milli({until:Int64})
      AND ({store:String} = '' OR store = {store:String})
      AND (customer, scope) NOT IN (SELECT customer, scope FROM failures)
    GROUP BY customer, scope
),
refs AS (
    SELECT customer, scope, 1 AS failed, resolved, first_response_s, resolve_s, compensation, score,
           ref_at, ref_journey FROM failures
    UNION ALL
    SELECT customer, scope, 0, 0, NULL, NULL, NULL, score, ref_at, ref_journey FROM clean
)
SELECT r.customer, r.scope, r.failed, r.resolved, r.first_response_s, r.resolve_s, r.compensation,
       if(j.paid > 0, j.paid, if(j.total > 0, j.total, NULL)) AS order_value, r.score,
       r.ref_at + INTERVAL 30 DAY <= fromUnixTimestamp64Milli({newest:Int64}) AS eligible_30,
       arrayExists((s, i) -> s > r.ref_at AND s <= r.ref_at + INTERVAL 30 DAY AND i != r.ref_journey,
                   h.starts, h.ids) AS back_30,
       r.ref_at + INTERVAL 90 DAY <= fromUnixTimestamp64Milli({newest:Int64}) AS eligible_90,
       arrayExists((s, i) -> s > r.ref_at AND s <= r.ref_at + INTERVAL 90 DAY AND i != r.ref_journey,
                   h.starts, h.ids) AS back_90
FROM refs AS r
LEFT JOIN history AS h ON h.customer = r.customer
LEFT JOIN journeys AS j ON j.customer = r.customer AND j.journey_id = r.ref_journey
"""

NEWEST = "SELECT toUnixTimestamp64Milli(max(occurred_at)), count() > 0 FROM journey.touchpoints"
NEWEST_INCIDENT = "SELECT toUnixTimestamp64Milli(max(failed_at)), count() > 0 FROM journey.incidents"


def newest_ms(client: Client, table: str = "touchpoints") -> int | None:
    """Event time of the newest touchpoint (or incident); None when the table is empty."""
    value, any_rows = client.query(NEWEST if table == "touchpoints" else NEWEST_INCIDENT).result_rows[0]
    return int(value) if any_rows else None


def references(client: Client, params: dict[str, Any], per_store: bool, newest: int) -> list[Reference]:
    """Reference rows (see `consumers.insights`) for the window in `params`."""
    rows = client.query(REFERENCES, parameters={**params, "per_store": int(per_store), "newest": newest}).result_rows
    return [Reference(customer=r[0], store=r[1], failed=bool(r[2]), resolved=bool(r[3]), first_response_s=r[4],
                      resolve_s=r[5], compensation=r[6], order_value=r[7], score=r[8],
                      returned_30d=bool(r[10]) if r[9] else None, returned_90d=bool(r[12]) if r[11] else None)
            for r in rows]


JOURNEYS_BY = """
SELECT {key}, count() FROM (
    SELECT journey_id, min(occurred_at) AS started, argMin(ifNull(store_id, ''), occurred_at) AS store
    FROM journey.touchpoints FINAL
    WHERE occurred_at >= fromUnixTimestamp64Milli({since:Int64}) - INTERVAL 1 DAY
      AND occurred_at < fromUnixTimestamp64Milli({until:Int64})
    GROUP BY journey_id)
WHERE started >= fromUnixTimestamp64Milli({since:Int64}) AND started < fromUnixTimestamp64Milli({until:Int64})
  AND ({store:String} = '' OR store = {store:String})
GROUP BY 1
"""
INCIDENTS_BY = """
SELECT {key}, count() FROM journey.incidents FINAL WHERE status != 'withdrawn' AND """ + WINDOW + " GROUP BY 1"
WEEK = "toString(toStartOfWeek({col}, 1))"  # weeks start on Monday


def rates(client: Client, params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Incidents per 100 journeys by store, by rule and by week (a journey counts where it started)."""
    def counts(sql: str, key: str) -> dict[str, int]:
        return {str(k): int(n) for k, n in client.query(sql.replace("{key}", key), parameters=params).result_rows}

    def journeys(key: str) -> dict[str, int]:
        return counts(JOURNEYS_BY, key)

    def incidents(key: str) -> dict[str, int]:
        return counts(INCIDENTS_BY, key)

    total_journeys = sum(journeys("'*'").values())
    by_store_j, by_store_i = journeys("store"), incidents("ifNull(store_id, '')")
    by_week_j, by_week_i = journeys(WEEK.format(col="started")), incidents(WEEK.format(col="failed_at"))
    by_rule_i = incidents("rule")
    return {
        "by_store": sorted(({"store": s, "journeys": by_store_j.get(s, 0), "incidents": by_store_i.get(s, 0),
                             "per_100_journeys": per_hundred(by_store_i.get(s, 0), by_store_j.get(s, 0))}
                            for s in set(by_store_j) | set(by_store_i)),
                           key=lambda r: (-(r["per_100_journeys"] or 0), r["store"])),
        "by_rule": sorted(({"rule": r, "incidents": n, "per_100_journeys": per_hundred(n, total_journeys)}
                           for r, n in by_rule_i.items()), key=lambda r: -r["incidents"]),
        "by_week": [{"week": w, "journeys": by_week_j.get(w, 0), "incidents": by_week_i.get(w, 0),
                     "per_100_journeys": per_hundred(by_week_i.get(w, 0), by_week_j.get(w, 0))}
                    for w in sorted(set(by_week_j) | set(by_week_i))],
        "journeys": total_journeys,
    }


TREND = """
SELECT """ + WEEK.format(col="failed_at") + """ AS week, count() AS incidents,
       round(1 - avg(sla_acknowledge_breached), 4), round(1 - avg(sla_first_response_breached), 4),
       round(1 - avg(sla_resolve_breached), 4),
       round(1 - avg(sla_acknowledge_breached OR sla_first_response_breached OR sla_resolve_breached), 4),
       round(quantile(0.5)(time_to_acknowledge_s), 1), round(quantile(0.5)(time_to_first_response_s), 1),
       round(quantile(0.5)(time_to_resolve_s), 1)
FROM journey.incidents FINAL WHERE status != 'withdrawn' AND """ + WINDOW + """
GROUP BY week ORDER BY week
"""
TREND_KEYS = ("week", "incidents", "sla_acknowledge", "sla_first_response", "sla_resolve", "sla_all",
              "median_acknowledge_s", "median_first_response_s", "median_resolve_s")


def trend(client: Client, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Week by week: incidents, share meeting each SLA target, median recovery times."""
    return [dict(zip(TREND_KEYS, row, strict=True)) for row in client.query(TREND, parameters=params).result_rows]


# The cause of a failure: what its triggering event names (item, reason, what it was about),
# else its request id, else the event type.
CAUSES = """
SELECT i.rule AS rule,
       coalesce(nullIf(t.attrs['item'], ''), nullIf(t.attrs['reason'], ''), nullIf(t.attrs['about'], ''),
                if(t.attrs['score'] != '', concat('score ', t.attrs['score']), NULL),
                i.request_id, nullIf(toString(t.type), ''), '-') AS cause,
       ifNull(i.store_id, '') AS store, toHour(i.failed_at, {tz:String}) AS local_hour, count() AS n
FROM (SELECT * FROM journey.incidents FINAL WHERE status != 'withdrawn' AND """ + WINDOW + """
      AND ifNull(store_id, '') IN {stores:Array(String)}) AS i
LEFT JOIN (SELECT event_id, attrs, type FROM journey.touchpoints FINAL
           WHERE occurred_at >= fromUnixTimestamp64Milli({since:Int64}) - INTERVAL 100 DAY
             AND occurred_at < fromUnixTimestamp64Milli({until:Int64})) AS t ON t.event_id = i.trigger_event_id
GROUP BY rule, cause, store, local_hour
"""
STORES_PRESENT = "SELECT DISTINCT ifNull(store_id, '') FROM journey.incidents FINAL WHERE " + WINDOW


def causes(client: Client, params: dict[str, Any], zones: dict[str, str], top: int = 20) -> list[dict[str, Any]]:
    """The most frequent failure causes (rule x item/reason x store), each with its busiest local hour."""
    present = [row[0] for row in client.query(STORES_PRESENT, parameters=params).result_rows]
    by_zone: dict[str, list[str]] = {}
    for store in present:
        by_zone.setdefault(zones.get(store, "UTC"), []).append(store)
    hours: dict[tuple[str, str, str], dict[int, int]] = {}
    for zone, stores in by_zone.items():
        for rule, cause, store, hour, n in client.query(CAUSES, parameters={**params, "tz": zone,
                                                                           "stores": stores}).result_rows:
            hours.setdefault((rule, cause, store), {})[int(hour)] = int(n)
    return top_causes(hours, top)


def top_causes(hours: dict[tuple[str, str, str], dict[int, int]], top: int) -> list[dict[str, Any]]:
    """(rule, cause, store) -> incidents per local hour, as rows: most incidents first, peak hour named."""
    rows = []
    for (rule, cause, store), per_hour in hours.items():
        peak = min(per_hour, key=lambda h: (-per_hour[h], h))
        rows.append({"rule": rule, "cause": cause, "store": store, "incidents": sum(per_hour.values()),
                     "peak_local_hour": peak, "peak_incidents": per_hour[peak],
                     "by_local_hour": [per_hour.get(h, 0) for h in range(24)]})
    rows.sort(key=lambda r: (-r["incidents"], r["rule"], r["cause"], r["store"]))
    return rows[:top]


STORES_IN = """
SELECT DISTINCT ifNull(store_id, '') AS store FROM journey.touchpoints
WHERE occurred_at >= fromUnixTimestamp64Milli({since:Int64}) AND occurred_at < fromUnixTimestamp64Milli({until:Int64})
  AND store != '' ORDER BY store
"""


def stores_in(client: Client, params: dict[str, Any]) -> list[str]:
    """Stores with touchpoints in the window (whatever store the window names): the drill-down's choices."""
    return [row[0] for row in client.query(STORES_IN, parameters=params).result_rows]
