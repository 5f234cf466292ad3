-- Register or update a schedule as this deploy defines it. The counters are never touched
-- here. The high-water mark (last_tick) only moves forward: when a deploy changes the
-- expression or zone, it moves to the `changed_mark` parameter (scheduler.py: just before
-- the first pending tick both expressions share, else the deploy), so the new expression
-- neither "catches up" ticks it never had nor drops a tick due under both, and no tick at or
-- below the mark can run again.
INSERT INTO {schema}.schedules
    (name, expression, timezone, queue, catch_up, overlap, next_tick, last_seen_at,
     created_at, updated_at)
VALUES (%(name)s, %(expression)s, %(timezone)s, %(queue)s, %(catch_up)s, %(overlap)s,
        %(next_tick)s, %(now)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE
SET expression = EXCLUDED.expression, timezone = EXCLUDED.timezone, queue = EXCLUDED.queue,
    catch_up = EXCLUDED.catch_up, overlap = EXCLUDED.overlap,
    last_seen_at = EXCLUDED.last_seen_at,
    last_tick = CASE WHEN (schedules.expression, schedules.timezone)
                          IS DISTINCT FROM (EXCLUDED.expression, EXCLUDED.timezone)
                     THEN greatest(schedules.last_tick, %(changed_mark)s::timestamptz)
                     ELSE schedules.last_tick END,
    next_tick = CASE WHEN (schedules.expression, schedules.timezone)
                          IS DISTINCT FROM (EXCLUDED.expression, EXCLUDED.timezone)
                          OR schedules.next_tick IS NULL
                     THEN EXCLUDED.next_tick ELSE schedules.next_tick END,
    updated_at = CASE WHEN (schedules.expression, schedules.timezone, schedules.queue,
                            schedules.catch_up, schedules.overlap)
                           IS DISTINCT FROM (EXCLUDED.expression, EXCLUDED.timezone,
                            EXCLUDED.queue, EXCLUDED.catch_up, EXCLUDED.overlap)
                      THEN EXCLUDED.updated_at ELSE schedules.updated_at END
