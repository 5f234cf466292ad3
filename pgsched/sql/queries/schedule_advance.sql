-- Move the high-water mark forward (greatest() never goes back, and ignores a NULL) and count
-- what this pass did. Runs in the transaction that inserted the ticks.
UPDATE {schema}.schedules
SET last_tick = greatest(last_tick, %(last_tick)s::timestamptz),
    next_tick = %(next_tick)s,
    ticks_fired = ticks_fired + %(fired)s,
    ticks_collapsed = ticks_collapsed + %(collapsed)s,
    ticks_missed = ticks_missed + %(missed)s,
    ticks_skipped = ticks_skipped + %(skipped)s,
    last_lateness_s = coalesce(%(lateness_s)s, last_lateness_s),
    last_seen_at = %(now)s
WHERE name = %(name)s
