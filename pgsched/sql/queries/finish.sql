-- Record the outcome of a batch of runs. A row whose attempt token no longer matches (taken
-- over, cancelled, timed out) is left alone: the late writer is fenced out.
WITH outcome AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::uuid[], %(statuses)s::text[],
                         %(outputs)s::jsonb[], %(errors)s::jsonb[], %(not_befores)s::timestamptz[])
        AS o(id, token, status, output, error, not_before)
), updated AS (
    UPDATE {schema}.workflows w
    SET status = o.status,
        output = o.output,
        error = o.error,
        not_before = coalesce(o.not_before, w.not_before),
        finished_at = CASE WHEN o.status = 'ENQUEUED' THEN NULL ELSE %(now)s END,
        executor = NULL,
        attempt_token = NULL,
        updated_at = %(now)s
    FROM outcome o
    WHERE w.id = o.id AND w.attempt_token = o.token AND w.status = 'RUNNING'
    RETURNING w.id
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM updated)
)
SELECT id FROM updated
