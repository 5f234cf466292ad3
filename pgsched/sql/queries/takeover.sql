-- Take over the runs of workers whose lease lapsed (heartbeat older than the takeover timeout
-- on the database clock, or worker row gone), free what they held and forget them. The caller
-- never takes over its own runs: a worker that was paused or cut off learns it lost its lease
-- from its own heartbeat, not by re-queueing work it still runs.
--
-- A lapsed worker may have died because of one of its runs (os.abort(), a segfault, OOM), and
-- nothing here can tell which. So a top-level run taken over after an ordinary attempt is a
-- suspect: its attempt is refunded and it is claimed alone next time (claim*.sql with
-- suspect = true). A run that was already isolated when its worker died is charged the
-- attempt, and dead-lettered once it has used them all: a poison pill reaches DEAD, and the
-- runs that shared a worker with it never do.
-- A child runs inline in its parent's thread: it waits (WAITING) for the parent's next
-- attempt to take it over (start_child.sql). The new attempt token (NULL until the next
-- claim) fences the lapsed worker's late writes.
-- Runs that finished while a lapsed worker's thread still ran them (cancelled, timed out)
-- kept that worker as executor and their slot: both are released here too.
WITH dead AS (
    DELETE FROM {schema}.workers
    WHERE heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
      AND id <> %(worker)s
    RETURNING id
), lapsed AS (
    SELECT w.id, w.status FROM {schema}.workflows w
    WHERE w.executor IS NOT NULL AND w.executor <> %(worker)s
      AND (w.executor IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {schema}.workers k WHERE k.id = w.executor))
    FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE {schema}.workflows w
    SET status = CASE WHEN w.parent_id IS NOT NULL THEN 'WAITING'
                      WHEN w.isolated AND w.attempts >= w.max_attempts THEN 'DEAD'
                      ELSE 'ENQUEUED' END,
        error = CASE WHEN w.parent_id IS NULL AND w.isolated AND w.attempts >= w.max_attempts
                     THEN jsonb_build_object(
                         'type', 'WorkerCrashed',
                         'message', format('its worker %%s died during attempt %%s of %%s, '
                                           'each time with only this run on it',
                                           w.executor, w.attempts, w.max_attempts))
                     ELSE w.error END,
        finished_at = CASE WHEN w.parent_id IS NULL AND w.isolated
                                AND w.attempts >= w.max_attempts THEN %(now)s END,
        attempts = CASE WHEN w.parent_id IS NULL AND NOT w.isolated
                        THEN greatest(w.attempts - 1, 0) ELSE w.attempts END,
        crashes = w.crashes + 1,
        suspect = w.parent_id IS NULL,
        isolated = false,
        not_before = %(now)s,
        executor = NULL,
        attempt_token = NULL,
        updated_at = %(now)s
    FROM lapsed l
    WHERE w.id = l.id AND l.status = 'RUNNING'
    RETURNING w.id, w.queue, w.status, w.parent_id
), released AS (
    UPDATE {schema}.workflows w SET executor = NULL, updated_at = %(now)s
    FROM lapsed l
    WHERE w.id = l.id AND l.status <> 'RUNNING'
    RETURNING w.id
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM requeued UNION ALL SELECT id FROM released)
), wake AS (
    SELECT pg_notify(%(channel)s, queue || '!') FROM requeued
    WHERE status = 'ENQUEUED' AND parent_id IS NULL
)
SELECT r.id, r.status, (SELECT count(*) FROM dead) AS dead_workers,
       (SELECT count(*) FROM wake) AS woken
FROM requeued r WHERE r.parent_id IS NULL
