-- Put a stopped run (and its stopped child workflows) back to work from its last checkpoint.
-- Only %(from_statuses)s qualify, checked again here so a concurrent change cannot slip
-- through. Children wait with not_before = infinity: no worker claims them on their own, the
-- parent's next attempt takes each one over when it reaches that child step.
WITH RECURSIVE tree AS (
    SELECT id, 0 AS depth FROM {schema}.workflows WHERE id = %(id)s
    UNION ALL
    SELECT c.id, t.depth + 1 FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
), requeued AS (
    UPDATE {schema}.workflows w
    SET status = 'ENQUEUED', attempts = 0, executor = NULL, attempt_token = NULL,
        not_before = CASE WHEN tree.depth = 0 THEN %(now)s::timestamptz
                          ELSE 'infinity'::timestamptz END,
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
