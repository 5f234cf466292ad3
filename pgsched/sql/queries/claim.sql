-- Claim up to %(limit)s ready runs of one queue.
-- With a fleet-wide limit (%(limited)s) each run also takes a free slot row; slots and runs
-- are both locked with SKIP LOCKED, so concurrent claimers never wait on each other and can
-- never hold more runs than there are slots.
WITH free_slots AS MATERIALIZED (
    SELECT slot FROM {schema}.queue_slots
    WHERE %(limited)s AND queue = %(queue)s AND holder IS NULL
      AND slot < (SELECT concurrency FROM {schema}.queues WHERE name = %(queue)s)
    ORDER BY slot
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), numbered_slots AS MATERIALIZED (
    SELECT slot, row_number() OVER (ORDER BY slot) AS n FROM free_slots
), ready AS MATERIALIZED (
    SELECT id, priority, seq FROM {schema}.workflows
    WHERE queue = %(queue)s AND status = 'ENQUEUED' AND not_before <= %(now)s
      AND name = ANY(%(names)s::text[])
    ORDER BY priority DESC, seq
    LIMIT CASE WHEN %(limited)s THEN (SELECT count(*) FROM numbered_slots) ELSE %(limit)s END
    FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT r.id, s.slot
    FROM (SELECT id, row_number() OVER (ORDER BY priority DESC, seq) AS n FROM ready) AS r
    LEFT JOIN numbered_slots s ON s.n = r.n
), taken_slots AS (
    UPDATE {schema}.queue_slots qs SET holder = p.id
    FROM picked p
    WHERE qs.queue = %(queue)s AND qs.slot = p.slot
)
UPDATE {schema}.workflows w
SET status = 'RUNNING',
    attempts = w.attempts + 1,
    executor = %(worker)s,
    attempt_token = gen_random_uuid(),
    started_at = %(now)s,
    updated_at = %(now)s
FROM picked p
WHERE w.id = p.id
RETURNING w.id, w.name, w.queue, w.inputs, w.attempts, w.max_attempts, w.attempt_token,
          w.timeout_s, w.scheduled_at,
          EXISTS (SELECT 1 FROM {schema}.steps s WHERE s.workflow_id = w.id) AS has_steps
