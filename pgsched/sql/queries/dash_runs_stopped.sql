-- The runs list filtered to one stopped status (ERROR, DEAD or CANCELLED), newest first: an
-- ordered walk of workflows_stopped (the literal IN list lets a generic plan use that partial
-- index). The other filters are optional, as in ops_list.
SELECT id, name, status, queue, priority, attempts, max_attempts, parent_id, forked_from,
       schedule_name, scheduled_at, executor, error ->> 'type' AS error_type,
       not_before, created_at, started_at, finished_at, updated_at
FROM {schema}.workflows
WHERE status IN ('ERROR', 'DEAD', 'CANCELLED')
  AND status = %(status)s::text
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(id_prefix)s::text IS NULL OR starts_with(id, %(id_prefix)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s
