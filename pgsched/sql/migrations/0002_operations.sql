-- Operating on runs: indexes for listing, queue statistics and pruning, and views that answer
-- the questions operators ask. Views read the database clock (now()): they are for people
-- and dashboards, not for scheduling decisions.

-- `workflows list --name`, newest first. Status and queue filters walk workflows_created:
-- they are dense, and every index on this table is paid for on each enqueue, claim and finish.
CREATE INDEX workflows_name_created ON {schema}.workflows (name, created_at);
-- Prune, failures in the last hour and per-queue throughput all range-scan finish times.
CREATE INDEX workflows_finished ON {schema}.workflows (finished_at)
    WHERE finished_at IS NOT NULL;
-- Queue statistics read only waiting and running top-level runs, from this small index.
CREATE INDEX workflows_active ON {schema}.workflows (queue, status, not_before)
    WHERE status IN ('ENQUEUED', 'RUNNING') AND parent_id IS NULL;
-- Cancel, resume and retry walk a run's child workflows.
CREATE INDEX workflows_parent ON {schema}.workflows (parent_id) WHERE parent_id IS NOT NULL;
-- The slowest-steps view looks at recent checkpoints only.
CREATE INDEX steps_finished ON {schema}.steps (finished_at);

-- How many runs each queue has in each status (a full count: it reads every run).
CREATE VIEW {schema}.runs_by_status AS
SELECT queue, status, count(*) AS runs, min(created_at) AS oldest_created_at,
       max(created_at) AS newest_created_at
FROM {schema}.workflows
GROUP BY queue, status;

-- Runs marked RUNNING whose worker is gone or has not heartbeaten for 30 seconds. Workers
-- take such runs over after PGSCHED_TAKEOVER_TIMEOUT; rows that stay here mean no live worker
-- runs the takeover loop.
CREATE VIEW {schema}.stuck_runs AS
SELECT w.id, w.name, w.queue, w.executor, w.attempts, w.started_at,
       k.heartbeat_at AS executor_heartbeat_at,
       CASE WHEN k.id IS NULL THEN 'worker row missing'
            ELSE 'heartbeat older than 30s' END AS reason
FROM {schema}.workflows w
LEFT JOIN {schema}.workers k ON k.id = w.executor
WHERE w.status = 'RUNNING' AND w.executor IS NOT NULL
  AND (k.id IS NULL OR k.heartbeat_at < now() - interval '30 seconds');

-- Steps by name over the last 24 hours, slowest (95th percentile) first.
CREATE VIEW {schema}.slowest_steps AS
SELECT s.name, s.kind, count(*) AS executions,
       avg(extract(epoch FROM s.finished_at - s.started_at))::float8 AS avg_s,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM s.finished_at - s.started_at)) AS p95_s,
       max(extract(epoch FROM s.finished_at - s.started_at))::float8 AS max_s,
       sum(s.attempts - 1) AS retries
FROM {schema}.steps s
WHERE s.finished_at > now() - interval '24 hours'
GROUP BY s.name, s.kind
ORDER BY p95_s DESC;

-- Runs that failed for good (ERROR or dead-lettered) in the last hour, newest first.
CREATE VIEW {schema}.recent_failures AS
SELECT id, name, queue, status, attempts, max_attempts, error ->> 'type' AS error_type,
       error ->> 'message' AS error_message, finished_at
FROM {schema}.workflows
WHERE finished_at > now() - interval '1 hour' AND status IN ('ERROR', 'DEAD')
ORDER BY finished_at DESC;

-- Waiting top-level runs that no live worker (heartbeat within 30 seconds) can start: none has
-- the workflow's code registered, or none with the code serves the run's queue.
CREATE VIEW {schema}.waiting_for_worker AS
SELECT w.id, w.name, w.queue, w.not_before, w.created_at,
       CASE WHEN EXISTS (SELECT 1 FROM {schema}.workers k
                         WHERE w.name = ANY (k.workflows)
                           AND k.heartbeat_at > now() - interval '30 seconds')
            THEN 'no live worker with this workflow serves the queue'
            ELSE 'no live worker has this workflow''s code' END AS reason
FROM {schema}.workflows w
WHERE w.status = 'ENQUEUED' AND w.parent_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM {schema}.workers k
                  WHERE w.name = ANY (k.workflows) AND w.queue = ANY (k.queues)
                    AND k.heartbeat_at > now() - interval '30 seconds');
