-- One schedule with what explains its ticks: its latest run, and the workers whose code
-- defines it (liveness on the database clock, as heartbeats are written).
SELECT s.name, s.expression, s.timezone, s.queue, s.catch_up, s.overlap, s.paused,
       s.last_tick, s.next_tick, s.ticks_fired, s.ticks_collapsed, s.ticks_missed,
       s.ticks_skipped, s.last_lateness_s, s.last_seen_at, s.created_at, s.updated_at,
       r.id AS last_run_id, r.status AS last_run_status, r.scheduled_at AS last_run_scheduled_at,
       r.started_at AS last_run_started_at, r.finished_at AS last_run_finished_at,
       r.max_attempts AS last_run_max_attempts, r.error ->> 'type' AS last_run_error_type,
       r.error ->> 'message' AS last_run_error,
       (SELECT count(*) FROM {schema}.workers k
        WHERE s.name = ANY (k.workflows)
          AND k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s))
           AS live_workers
FROM {schema}.schedules s
LEFT JOIN LATERAL (SELECT * FROM {schema}.workflows w WHERE w.schedule_name = s.name
                   ORDER BY w.scheduled_at DESC LIMIT 1) r ON true
WHERE s.name = %(name)s
