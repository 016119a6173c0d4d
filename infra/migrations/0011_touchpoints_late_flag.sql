-- The touchpoint row's lateness flag (#17): seconds behind the watermark when the worker read it,
-- NULL when it was within the allowed lateness. An ALIAS (computed when read; `SELECT *` leaves it
-- out): `SELECT count() FROM journey.touchpoints FINAL WHERE late_by_s IS NOT NULL`.
ALTER TABLE journey.touchpoints ADD COLUMN IF NOT EXISTS late_by_s Nullable(Float64)
    ALIAS joinGetOrNull('journey.late_touchpoints', 'late_by_s', event_id)
