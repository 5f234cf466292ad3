-- Worker processes with their heartbeat age on the database clock (the clock heartbeats are
-- written with) and how many top-level runs each holds now. Silent workers (no heartbeat
-- within %(live_s)s seconds) only with %(all)s.
SELECT k.id, k.hostname, k.pid, k.app, k.version, k.queues, k.concurrency, k.stopping,
       k.started_at,
       k.heartbeat_at,
       extract(epoch FROM clock_timestamp() - k.heartbeat_at)::float8 AS heartbeat_age_s,
       k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s) AS live,
       (SELECT count(*) FROM {schema}.workflows w
        WHERE w.status = 'RUNNING' AND w.executor = k.id AND w.parent_id IS NULL) AS running
FROM {schema}.workers k
WHERE %(all)s OR k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s)
ORDER BY k.started_at, k.id
