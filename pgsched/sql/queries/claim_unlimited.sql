-- Claim up to %(limit)s ready runs of a queue with neither a fleet-wide concurrency limit nor
-- a rate limit: no slot rows to take and no starts to count, so none of claim.sql's slot and
-- budget work (about a fifth of that statement's cost, which a drain pays once a round).
-- %(suspect)s picks ordinary runs (false) or runs recovered from a crashed worker (true),
-- which are claimed one at a time by a worker running nothing else (lifecycle.py).
-- A run that already ran under a code version (App.version) is claimed only by a worker of
-- that version, or by any once no live worker has it (the live_versions parameter): a resumed
-- or woken workflow replays on the code that wrote its checkpoints while that code runs.
-- Order: priority, then due time, then FIFO, as claim.sql (the key order of workflows_dequeue).
WITH ready AS MATERIALIZED (
    SELECT id FROM {schema}.workflows
    WHERE queue = %(queue)s AND suspect = %(suspect)s AND status = 'ENQUEUED'
      AND not_before <= %(now)s AND name = ANY(%(names)s::text[])
      AND (app_version IS NULL OR app_version = %(version)s
           OR app_version <> ALL (%(live_versions)s::text[]))
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
    app_version = coalesce(w.app_version, %(version)s),
    started_at = %(now)s,
    updated_at = %(now)s
FROM ready r
WHERE w.id = r.id
RETURNING w.id, w.name, w.queue, w.inputs, w.attempts, w.max_attempts, w.attempt_token,
          w.timeout_s, w.scheduled_at, w.isolated, w.not_before, w.trace_context,
          EXISTS (SELECT 1 FROM {schema}.steps s WHERE s.workflow_id = w.id) AS has_steps
