-- The hourly rollup leaves withdrawn incidents out (#17): paged at a deadline, then an on-time
-- fulfilment arrived within the allowed lateness -- nothing failed. They are counted apart
-- (`journey report`: SELECT count() ... WHERE status = 'withdrawn').
CREATE OR REPLACE VIEW journey.incidents_hourly AS
SELECT
    toStartOfHour(failed_at)                            AS hour,
    ifNull(store_id, '')                                AS store_id,
    ifNull(channel, '')                                 AS channel,
    rule,
    count()                                             AS incidents,
    countIf(status = 'resolved')                        AS resolved,
    quantiles(0.5, 0.9, 0.99)(time_to_acknowledge_s)    AS tta_p50_p90_p99,
    quantiles(0.5, 0.9, 0.99)(time_to_first_response_s) AS ttfr_p50_p90_p99,
    quantiles(0.5, 0.9, 0.99)(time_to_resolve_s)        AS ttr_p50_p90_p99,
    1 - avg(sla_acknowledge_breached OR sla_first_response_breached OR sla_resolve_breached) AS sla_compliance,
    avg(compensation_amount IS NOT NULL)                AS share_compensated,
    avgIf(recovered, recovered IS NOT NULL)             AS share_recovered
FROM journey.incidents FINAL
WHERE status != 'withdrawn'
GROUP BY hour, store_id, channel, rule
