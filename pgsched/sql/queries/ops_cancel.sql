-- Cancel a run and its unfinished descendants in one statement. Clearing the attempt token
-- fences the worker that runs it: its next checkpoint fails (it stops at that step boundary)
-- and its final result is ignored. A running run keeps its executor and queue slot until
-- that worker's thread returns (finish.sql releases them then, takeover.sql if the worker
-- died), so a queue's concurrency counts code that is still executing.
WITH RECURSIVE tree AS (
    SELECT id FROM {schema}.workflows WHERE id = %(id)s
    UNION ALL
    SELECT c.id FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
)
UPDATE {schema}.workflows w
SET status = 'CANCELLED', attempt_token = NULL, suspect = false, isolated = false,
    finished_at = %(now)s, updated_at = %(now)s
FROM tree
WHERE w.id = tree.id AND w.status IN ('ENQUEUED', 'RUNNING', 'WAITING')
RETURNING w.id
