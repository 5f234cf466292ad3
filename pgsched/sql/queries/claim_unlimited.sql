-- Claim up to %(limit)s ready runs of a queue with neither a fleet-wide concurrency limit nor
-- a rate limit: no slot rows to take and no starts to count, so none of claim.sql's slot and
-- budget work (about a fifth of that statement's cost, which a drain pays once a round).
-- %(suspect)s picks ordinary runs (false) or runs recovered from a crashed worker (true),
-- which are claimed one at a time by a worker running nothing else (lifecycle.py).
-- Order: priority, then due time, then FIFO, as claim.sql (the key order of workflows_dequeue).
WITH ready AS MATERIALIZED (
    SELECT id FROM {schema}.workflows
    WHERE queue = %(queue)s AND suspect = %(suspect)s AND status = 'ENQUEUED'
      AND not_before <= %(now)s AND name = ANY(%(names)s::text[])
    ORDER BY priority DESC, not_before, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.workflows w
SET status = 'RUNNING',
    attempts = w.attempts + 1,
    executor = %(worker)s,
    attempt_token = gen_random_uuid(),
    isolated = %(suspect)s,
    started_at = %(now)s,
    updated_at = %(now)s
FROM ready r
WHERE w.id = r.id
RETURNING w.id, w.name, w.queue, w.inputs, w.attempts, w.max_attempts, w.attempt_token,
          w.timeout_s, w.scheduled_at, w.isolated,
          EXISTS (SELECT 1 FROM {schema}.steps s WHERE s.workflow_id = w.id) AS has_steps
