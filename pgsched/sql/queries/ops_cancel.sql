-- Cancel a run and its unfinished child workflows in one statement. Clearing the attempt
-- token fences the worker that runs it: its next checkpoint fails (it stops at that step
-- boundary) and its final result is ignored. Held queue slots are freed at once.
WITH RECURSIVE tree AS (
    SELECT id FROM {schema}.workflows WHERE id = %(id)s
    UNION ALL
    SELECT c.id FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
), cancelled AS (
    UPDATE {schema}.workflows w
    SET status = 'CANCELLED', executor = NULL, attempt_token = NULL,
        finished_at = %(now)s, updated_at = %(now)s
    FROM tree
    WHERE w.id = tree.id AND w.status IN ('ENQUEUED', 'RUNNING')
    RETURNING w.id
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM cancelled)
)
SELECT id FROM cancelled
