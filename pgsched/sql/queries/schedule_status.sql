-- "Why didn't my job run?": one row per schedule (or only %(name)s), with its definition,
-- counters, its most recent run and a verdict in plain words. %(now)s is the caller's clock.
SELECT s.name, s.expression, s.timezone, s.queue, s.catch_up, s.overlap, s.paused,
       s.last_tick, s.next_tick, s.last_seen_at,
       s.ticks_fired, s.ticks_collapsed, s.ticks_missed, s.ticks_skipped, s.last_lateness_s,
       r.id AS last_run_id, r.status AS last_run_status, r.scheduled_at AS last_run_scheduled_at,
       extract(epoch FROM r.started_at - r.scheduled_at) AS last_run_start_delay_s,
       r.error ->> 'message' AS last_run_error,
       CASE
           WHEN s.paused THEN 'paused: ticks are skipped until `pgsched schedules resume '
                              || s.name || '`'
           WHEN s.next_tick < %(now)s::timestamptz - interval '5 minutes'
               THEN 'overdue: no running worker defines this schedule (removed from the code, '
                    || 'or no worker is up); last seen ' || coalesce(s.last_seen_at::text, 'never')
           WHEN r.status = 'ENQUEUED'
               THEN 'waiting: the last tick is queued on ' || r.queue
                    || ' (queue limits or no worker serving it)'
           WHEN r.status = 'RUNNING' THEN 'running since ' || r.started_at::text
           WHEN r.status IN ('ERROR', 'DEAD', 'CANCELLED')
               THEN 'failed: the last run ended ' || r.status
                    || coalesce(': ' || (r.error ->> 'message'), '')
           WHEN r.id IS NULL AND s.ticks_skipped > 0 THEN 'skipped: paused or overlapping'
           WHEN r.id IS NULL AND s.ticks_missed > 0 THEN 'missed: ticks fell in downtime'
           WHEN r.id IS NULL THEN 'not due yet: first tick at ' || coalesce(s.next_tick::text, '?')
           ELSE 'ok'
       END AS verdict
FROM {schema}.schedules s
LEFT JOIN LATERAL (
    SELECT w.id, w.status, w.queue, w.scheduled_at, w.started_at, w.error
    FROM {schema}.workflows w
    WHERE w.schedule_name = s.name
    ORDER BY w.scheduled_at DESC
    LIMIT 1
) r ON true
WHERE %(name)s::text IS NULL OR s.name = %(name)s::text
ORDER BY s.name
