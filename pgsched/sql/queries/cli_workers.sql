-- Worker processes with their heartbeat age on the database clock (the clock heartbeats are
-- written with), how many top-level runs each holds now, and its connections: those open now
-- under its id (its application_name) on this server, and the most it may open, its pool's
-- size plus those it opens outside the pool, as the worker published them when it registered
-- (fleet_settings 'connections/<id>', see pgsched/db/fleet_settings.py; NULL from a release
-- that published none). Silent workers (no heartbeat within %(live_s)s seconds) only with
-- %(all)s.
SELECT k.id, k.hostname, k.pid, k.app, k.version, k.queues, k.concurrency, k.stopping,
       k.started_at,
       k.heartbeat_at,
       extract(epoch FROM clock_timestamp() - k.heartbeat_at)::float8 AS heartbeat_age_s,
       k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s) AS live,
       (SELECT count(*) FROM {schema}.workflows w
        WHERE w.status = 'RUNNING' AND w.executor = k.id AND w.parent_id IS NULL) AS running,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.application_name = k.id)
           AS connections,
       c.pool_max, c.dedicated_connections,
       c.pool_max + c.dedicated_connections AS max_connections
FROM {schema}.workers k
LEFT JOIN LATERAL (
    SELECT (s.value::jsonb ->> 'pool')::int AS pool_max,
           (s.value::jsonb ->> 'dedicated')::int AS dedicated_connections
    FROM {schema}.fleet_settings s
    WHERE s.name = 'connections/' || k.id
) c ON true
WHERE %(all)s OR k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s)
ORDER BY k.started_at, k.id
