-- Give back the runs of workers whose heartbeat lapsed (or whose row is gone), free their
-- slots and forget the dead workers. A run out of attempts is dead-lettered, not retried
-- (children are judged with their parent).
-- The new attempt token (NULL until the next claim) fences the dead worker's late writes.
WITH dead AS (
    DELETE FROM {schema}.workers
    WHERE heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
    RETURNING id
), orphans AS (
    SELECT w.id FROM {schema}.workflows w
    WHERE w.status = 'RUNNING' AND w.executor IS NOT NULL
      AND (w.executor IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {schema}.workers k WHERE k.id = w.executor))
    FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE {schema}.workflows w
    SET status = CASE WHEN w.parent_id IS NULL AND w.attempts >= w.max_attempts
                      THEN 'DEAD' ELSE 'ENQUEUED' END,
        error = CASE WHEN w.parent_id IS NULL AND w.attempts >= w.max_attempts
                     THEN jsonb_build_object(
                         'type', 'MaxAttemptsExceeded',
                         'message', format('worker %%s stopped heartbeating during attempt %%s of %%s',
                                           w.executor, w.attempts, w.max_attempts))
                     ELSE w.error END,
        finished_at = CASE WHEN w.parent_id IS NULL AND w.attempts >= w.max_attempts
                           THEN %(now)s END,
        -- A child runs inline in its parent's thread: park it until the parent's next
        -- attempt takes it over (start_child.sql), instead of running it on its own.
        not_before = CASE WHEN w.parent_id IS NULL THEN %(now)s ELSE 'infinity' END,
        executor = NULL,
        attempt_token = NULL,
        updated_at = %(now)s
    FROM orphans o
    WHERE w.id = o.id
    RETURNING w.id, w.queue, w.status
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM requeued)
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM requeued WHERE status = 'ENQUEUED'
)
SELECT r.id, r.status, (SELECT count(*) FROM dead) AS dead_workers,
       (SELECT count(*) FROM wake) AS woken
FROM requeued r
