SELECT name, expression, timezone, queue, catch_up, overlap, paused, last_tick, next_tick,
       ticks_fired, ticks_collapsed, ticks_missed, ticks_skipped, last_lateness_s,
       last_seen_at, created_at, updated_at
FROM {schema}.schedules
ORDER BY name
