-- The runs list filtered to ENQUEUED or RUNNING, newest first: reads the workflows_active
-- index (waiting and running runs only), so its cost follows the backlog, not the history.
SELECT id, name, status, queue, priority, attempts, max_attempts, parent_id, forked_from,
       schedule_name, scheduled_at, executor, error ->> 'type' AS error_type,
       not_before, created_at, started_at, finished_at, updated_at
FROM {schema}.workflows
WHERE status IN ('ENQUEUED', 'RUNNING')
  AND status = %(status)s::text
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(id_prefix)s::text IS NULL OR starts_with(id, %(id_prefix)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s
