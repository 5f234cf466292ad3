-- Per queue: waiting, scheduled and running top-level runs (from the small workflows_active
-- index), limits and held slots, live workers serving it, and runs finished in the last
-- minute (a range scan of workflows_finished). Queues with runs but no declaration appear too.
WITH active AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'ENQUEUED' AND not_before <= %(now)s) AS waiting,
           count(*) FILTER (WHERE status = 'ENQUEUED' AND not_before > %(now)s) AS scheduled,
           count(*) FILTER (WHERE status = 'RUNNING') AS running,
           min(not_before) FILTER (WHERE status = 'ENQUEUED' AND not_before <= %(now)s)
               AS oldest_ready_at
    FROM {schema}.workflows
    WHERE status IN ('ENQUEUED', 'RUNNING') AND parent_id IS NULL
    GROUP BY queue
), recent AS (
    SELECT queue, count(*) AS finished,
           count(*) FILTER (WHERE status IN ('ERROR', 'DEAD')) AS failed
    FROM {schema}.workflows
    WHERE finished_at IS NOT NULL AND finished_at > %(now)s::timestamptz - interval '1 minute'
    GROUP BY queue
), names AS (
    SELECT name FROM {schema}.queues
    UNION SELECT queue FROM active
    UNION SELECT queue FROM recent
)
SELECT n.name AS queue,
       coalesce(a.waiting, 0) AS waiting,
       coalesce(a.scheduled, 0) AS scheduled,
       coalesce(a.running, 0) AS running,
       q.concurrency, q.worker_concurrency, q.rate_limit, q.rate_period_s,
       (SELECT count(*) FROM {schema}.queue_slots s
        WHERE s.queue = n.name AND s.holder IS NOT NULL) AS slots_held,
       extract(epoch FROM %(now)s::timestamptz - a.oldest_ready_at)::float8 AS oldest_waiting_s,
       coalesce(r.finished, 0) AS finished_last_minute,
       coalesce(r.failed, 0) AS failed_last_minute,
       (SELECT count(*) FROM {schema}.workers k
        WHERE n.name = ANY (k.queues)
          AND k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s)) AS workers
FROM names n
LEFT JOIN {schema}.queues q ON q.name = n.name
LEFT JOIN active a ON a.queue = n.name
LEFT JOIN recent r ON r.queue = n.name
ORDER BY n.name
