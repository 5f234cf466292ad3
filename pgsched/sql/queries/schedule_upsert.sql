-- Register or update a schedule as this deploy defines it. The high-water mark (last_tick)
-- and the counters are never touched here, so a changed expression cannot repeat a tick.
INSERT INTO {schema}.schedules
    (name, expression, timezone, queue, catch_up, overlap, last_seen_at, created_at, updated_at)
VALUES (%(name)s, %(expression)s, %(timezone)s, %(queue)s, %(catch_up)s, %(overlap)s, %(now)s,
        %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE
SET expression = EXCLUDED.expression, timezone = EXCLUDED.timezone, queue = EXCLUDED.queue,
    catch_up = EXCLUDED.catch_up, overlap = EXCLUDED.overlap,
    last_seen_at = EXCLUDED.last_seen_at,
    updated_at = CASE WHEN (schedules.expression, schedules.timezone, schedules.queue,
                            schedules.catch_up, schedules.overlap)
                           IS DISTINCT FROM (EXCLUDED.expression, EXCLUDED.timezone,
                            EXCLUDED.queue, EXCLUDED.catch_up, EXCLUDED.overlap)
                      THEN EXCLUDED.updated_at ELSE schedules.updated_at END
