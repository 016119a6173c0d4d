-- Events the worker read later than the allowed lateness (#17): how far behind its partition's
-- watermark each was, by event id. A Join table (held in memory, kept on disk): few rows (late
-- events are rare), looked up per touchpoint row by `touchpoints.late_by_s` (migration 0011), so
-- the flag is right whichever arrives first and whichever sink path (Avro or Python) wrote the row.
-- ANY: a repeated event id (a re-read batch) keeps the first.
CREATE TABLE IF NOT EXISTS journey.late_touchpoints
(
    event_id  String,
    late_by_s Float64
)
ENGINE = Join(ANY, LEFT, event_id)
