-- Put a stopped run back to work from its last checkpoint, and its stopped descendants in
-- WAITING: no worker claims those on their own, the run's next attempt takes each one over
-- when it reaches that child step. Only %(from_statuses)s qualify, checked again here so a
-- concurrent change cannot slip through.
WITH RECURSIVE tree AS (
    SELECT id, 0 AS depth FROM {schema}.workflows WHERE id = %(id)s
    UNION ALL
    SELECT c.id, t.depth + 1 FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
), requeued AS (
    UPDATE {schema}.workflows w
    SET status = CASE WHEN tree.depth = 0 THEN 'ENQUEUED' ELSE 'WAITING' END,
        attempts = 0, attempt_token = NULL, suspect = false, isolated = false,
        not_before = CASE WHEN tree.depth = 0 THEN %(now)s::timestamptz ELSE w.not_before END,
        finished_at = NULL, updated_at = %(now)s
    FROM tree
    WHERE w.id = tree.id
      AND w.status = ANY (CASE WHEN tree.depth = 0 THEN %(from_statuses)s::text[]
                               ELSE ARRAY['CANCELLED', 'ERROR', 'DEAD'] END)
    RETURNING w.id, w.queue, tree.depth
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM requeued WHERE depth = 0
)
SELECT id, depth, (SELECT count(*) FROM wake) AS woken FROM requeued
