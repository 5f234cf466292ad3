-- Claim up to %(limit)s ready runs of one queue.
-- With a fleet-wide limit (%(limited)s) each run also takes a free slot row; slots and runs
-- are both locked with SKIP LOCKED, so concurrent claimers never wait on each other and can
-- never hold more runs than there are slots.
-- With a rate limit (%(rate_limit)s not null) the caller has already taken the queue's
-- advisory lock in an earlier statement of this transaction (rate_window.sql), so the count
-- below runs on a snapshot that sees every start committed by the previous lock holder.
-- %(suspect)s: ordinary runs (false) or, one at a time, runs recovered from a crashed worker
-- (true; see lifecycle.py).
-- A run that already ran under a code version (App.version) is claimed only by a worker of
-- that version, or by any once no live worker has it (the live_versions parameter): a resumed
-- or woken workflow replays on the code that wrote its checkpoints while that code runs.
-- Order: priority, then due time, then FIFO: the key order of workflows_dequeue, so `ready`
-- reads only the runs it takes, however many delayed runs wait (migration 0005).
WITH budget AS MATERIALIZED (
    SELECT CASE WHEN %(rate_limit)s::int IS NULL THEN %(limit)s::int
                ELSE greatest(0, least(%(limit)s::int, %(rate_limit)s::int - (
                    SELECT count(*) FROM {schema}.queue_starts
                    WHERE queue = %(queue)s AND started_at > %(window_start)s)::int))
           END AS n
), free_slots AS MATERIALIZED (
    SELECT slot FROM {schema}.queue_slots
    WHERE %(limited)s AND queue = %(queue)s AND holder IS NULL
      AND slot < (SELECT concurrency FROM {schema}.queues WHERE name = %(queue)s)
    ORDER BY slot
    LIMIT (SELECT n FROM budget)
    FOR UPDATE SKIP LOCKED
), numbered_slots AS MATERIALIZED (
    SELECT slot, row_number() OVER (ORDER BY slot) AS n FROM free_slots
), ready AS MATERIALIZED (
    SELECT id, priority, not_before, seq FROM {schema}.workflows
    WHERE queue = %(queue)s AND suspect = %(suspect)s AND status = 'ENQUEUED'
      AND not_before <= %(now)s AND name = ANY(%(names)s::text[])
      AND (app_version IS NULL OR app_version = %(version)s
           OR app_version <> ALL (%(live_versions)s::text[]))
    ORDER BY priority DESC, not_before, seq
    LIMIT CASE WHEN %(limited)s THEN (SELECT count(*) FROM numbered_slots)
               ELSE (SELECT n FROM budget) END
    FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT r.id, s.slot
    FROM (SELECT id, row_number() OVER (ORDER BY priority DESC, not_before, seq) AS n
          FROM ready) AS r
    LEFT JOIN numbered_slots s ON s.n = r.n
    -- Never more than `ready` holds: it only tells the planner so. Without it the planner
    -- estimates `ready` (whose LIMIT it cannot evaluate) at a tenth of the table, and on a
    -- table of millions the estimate crosses jit_above_cost: 40 ms of JIT compilation for a
    -- statement that runs in a fraction of a millisecond.
    LIMIT %(limit)s
), taken_slots AS (
    UPDATE {schema}.queue_slots qs SET holder = p.id
    FROM picked p
    WHERE %(limited)s AND qs.queue = %(queue)s AND qs.slot = p.slot
), recorded_starts AS (
    INSERT INTO {schema}.queue_starts (queue, started_at)
    SELECT %(queue)s, %(now)s FROM picked WHERE %(rate_limit)s::int IS NOT NULL
), pruned_starts AS (
    -- Keep a whole extra period: a claimer whose clock read is a little older than ours
    -- still finds every start its own window needs.
    DELETE FROM {schema}.queue_starts
    WHERE %(rate_limit)s::int IS NOT NULL AND queue = %(queue)s
      AND started_at <= %(prune_before)s
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
FROM picked p
WHERE w.id = p.id
RETURNING w.id, w.name, w.queue, w.inputs, w.attempts, w.max_attempts, w.attempt_token,
          w.timeout_s, w.scheduled_at, w.isolated, w.not_before, w.trace_context,
          EXISTS (SELECT 1 FROM {schema}.steps s WHERE s.workflow_id = w.id) AS has_steps
