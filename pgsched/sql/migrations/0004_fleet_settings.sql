-- Settings that SQL needs to read: the operator views judged a worker dead after a hard-coded
-- 30 s of silence, whatever PGSCHED_TAKEOVER_TIMEOUT said. A worker upserts its own value at
-- start (the fleet is expected to share one); the views read it through takeover_timeout().
CREATE TABLE {schema}.fleet_settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.fleet_settings (name, value) VALUES ('takeover_timeout_s', '30');

-- The silence after which a worker counts as dead (30 s until a worker has published its own).
CREATE FUNCTION {schema}.takeover_timeout() RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT make_interval(secs => coalesce(
        (SELECT value::float8 FROM {schema}.fleet_settings WHERE name = 'takeover_timeout_s'),
        30))
$$;

-- Runs marked RUNNING whose worker is gone or has been silent longer than the takeover
-- timeout. Workers take such runs over; rows that stay here mean no live worker runs the
-- takeover loop.
CREATE OR REPLACE VIEW {schema}.stuck_runs AS
SELECT w.id, w.name, w.queue, w.executor, w.attempts, w.started_at,
       k.heartbeat_at AS executor_heartbeat_at,
       CASE WHEN k.id IS NULL THEN 'worker row missing'
            ELSE 'heartbeat older than '
                 || trim_scale(extract(epoch FROM {schema}.takeover_timeout())::numeric)::text
                 || 's' END AS reason
FROM {schema}.workflows w
LEFT JOIN {schema}.workers k ON k.id = w.executor
WHERE w.status = 'RUNNING' AND w.executor IS NOT NULL
  AND (k.id IS NULL OR k.heartbeat_at < now() - {schema}.takeover_timeout());

-- Waiting top-level runs that no live worker (heard from within the takeover timeout) can
-- start: none has the workflow's code registered, or none with the code serves the queue.
CREATE OR REPLACE VIEW {schema}.waiting_for_worker AS
SELECT w.id, w.name, w.queue, w.not_before, w.created_at,
       CASE WHEN EXISTS (SELECT 1 FROM {schema}.workers k
                         WHERE w.name = ANY (k.workflows)
                           AND k.heartbeat_at > now() - {schema}.takeover_timeout())
            THEN 'no live worker with this workflow serves the queue'
            ELSE 'no live worker has this workflow''s code' END AS reason
FROM {schema}.workflows w
WHERE w.status = 'ENQUEUED' AND w.parent_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM {schema}.workers k
                  WHERE w.name = ANY (k.workflows) AND w.queue = ANY (k.queues)
                    AND k.heartbeat_at > now() - {schema}.takeover_timeout());
