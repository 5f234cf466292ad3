-- Runs matching the optional filters (a NULL parameter means "any"), newest first. Each filter
-- has an index ending in created_at, so a page costs a short index walk, not a table scan.
SELECT id, name, status, queue, priority, attempts, max_attempts, parent_id, forked_from,
       schedule_name, scheduled_at, executor, error ->> 'type' AS error_type,
       not_before, created_at, started_at, finished_at, updated_at
FROM {schema}.workflows
WHERE (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
  AND (%(id_prefix)s::text IS NULL OR starts_with(id, %(id_prefix)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s
