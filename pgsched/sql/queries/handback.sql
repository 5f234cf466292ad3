-- A stopping worker returns the runs it could not finish within its grace period. The
-- attempt is not counted against the run, and clearing the token fences the abandoned threads.
WITH returned AS (
    UPDATE {schema}.workflows
    SET status = 'ENQUEUED', executor = NULL, attempt_token = NULL,
        attempts = greatest(attempts - 1, 0), not_before = %(now)s, updated_at = %(now)s
    WHERE status = 'RUNNING' AND executor = %(worker)s AND id = ANY(%(ids)s::text[])
    RETURNING id, queue
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM returned)
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM returned
)
SELECT id, (SELECT count(*) FROM wake) AS woken FROM returned
