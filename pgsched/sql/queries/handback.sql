-- A stopping worker (or one reconnecting) returns runs it will not finish. The attempt is not
-- counted against the run; clearing the token fences the abandoned threads. Children of a
-- handed-back run wait (WAITING) for its next attempt, which takes them over.
WITH RECURSIVE returned AS (
    UPDATE {schema}.workflows
    SET status = 'ENQUEUED', executor = NULL, attempt_token = NULL, isolated = false,
        attempts = greatest(attempts - 1, 0), not_before = %(now)s, updated_at = %(now)s
    WHERE status = 'RUNNING' AND executor = %(worker)s AND id = ANY(%(ids)s::text[])
    RETURNING id, queue
), tree AS (
    SELECT c.id FROM {schema}.workflows c JOIN returned r ON c.parent_id = r.id
    UNION ALL
    SELECT c.id FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
), children AS (
    UPDATE {schema}.workflows w
    SET status = 'WAITING', executor = NULL, attempt_token = NULL, updated_at = %(now)s
    FROM tree t WHERE w.id = t.id AND w.status IN ('RUNNING', 'ENQUEUED')
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM returned)
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM returned
)
SELECT id, (SELECT count(*) FROM wake) AS woken FROM returned
