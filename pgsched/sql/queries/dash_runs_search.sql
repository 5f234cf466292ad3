-- The runs page filtered by what no index serves without slowing every enqueue and status
-- change (a queue alone, an id prefix, either with a status): read the newest %(scan)s runs
-- created before the cursor, through workflows_created, and keep those that match. However
-- large the history, one page reads at most %(scan)s runs; the next page goes on from where
-- this one stopped (data.py). Rows of kind 'run' are the matches, newest first; the one row
-- of kind 'end' is the oldest run read, with how many were read (fewer than %(scan)s: the
-- history is exhausted); a row of kind 'exact' is the run whose id is the whole prefix, found
-- through the primary key on the first page, so a pasted id finds an old run at once.
-- The cursor is (%(before_at)s, %(before_id)s), the order's key: runs created in the same
-- microsecond are neither skipped nor shown twice.
WITH scanned AS MATERIALIZED (
    SELECT id, name, status, queue, priority, attempts, max_attempts, parent_id, forked_from,
           schedule_name, scheduled_at, executor, error ->> 'type' AS error_type,
           not_before, created_at, started_at, finished_at, updated_at
    FROM {schema}.workflows
    WHERE created_at <= coalesce(%(before_at)s::timestamptz, 'infinity')
      AND (%(before_at)s::timestamptz IS NULL
           OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan)s
)
(SELECT 'run' AS kind, 0::bigint AS scanned, s.*
 FROM scanned s
 WHERE (%(status)s::text IS NULL OR s.status = %(status)s::text)
   AND (%(queue)s::text IS NULL OR s.queue = %(queue)s::text)
   AND (%(id_prefix)s::text IS NULL OR starts_with(s.id, %(id_prefix)s::text))
 ORDER BY s.created_at DESC, s.id DESC
 LIMIT %(limit)s)
UNION ALL
(SELECT 'end', (SELECT count(*) FROM scanned), s.*
 FROM scanned s
 ORDER BY s.created_at, s.id
 LIMIT 1)
UNION ALL
(SELECT 'exact', 0, w.id, w.name, w.status, w.queue, w.priority, w.attempts, w.max_attempts,
        w.parent_id, w.forked_from, w.schedule_name, w.scheduled_at, w.executor,
        w.error ->> 'type', w.not_before, w.created_at, w.started_at, w.finished_at,
        w.updated_at
 FROM {schema}.workflows w
 WHERE %(before_at)s::timestamptz IS NULL AND w.id = %(id_prefix)s::text
   AND (%(status)s::text IS NULL OR w.status = %(status)s::text)
   AND (%(queue)s::text IS NULL OR w.queue = %(queue)s::text))
