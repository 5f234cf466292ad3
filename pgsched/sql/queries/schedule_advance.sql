-- Move the high-water mark forward (never back) and count what this pass did.
UPDATE {schema}.schedules
SET last_tick = CASE WHEN last_tick IS NULL OR %(last_tick)s::timestamptz > last_tick
                     THEN %(last_tick)s::timestamptz ELSE last_tick END,
    next_tick = %(next_tick)s,
    ticks_fired = ticks_fired + %(fired)s,
    ticks_collapsed = ticks_collapsed + %(collapsed)s,
    ticks_missed = ticks_missed + %(missed)s,
    ticks_skipped = ticks_skipped + %(skipped)s,
    last_lateness_s = coalesce(%(lateness_s)s, last_lateness_s),
    last_seen_at = %(now)s
WHERE name = %(name)s
