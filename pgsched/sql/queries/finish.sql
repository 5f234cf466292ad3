-- Record what became of a batch of runs whose threads returned (lifecycle.send_finish).
--
-- An outcome is written only where its attempt token still matches and the run is RUNNING:
-- a late writer (taken over, cancelled, timed out) is fenced out. A written outcome releases
-- the run's queue slot and executor, except a timeout's (release = false): the thread still
-- runs, so the slot stays held until that thread returns and its id comes back in %(returned)s.
-- %(returned)s lists every run whose thread has returned: those this worker no longer owns
-- (cancelled or timed out while running) give back their executor and slot here.
--
-- Descendants follow the run's outcome, in the same statement: a run that failed for good or
-- was cancelled (ERROR, DEAD, CANCELLED) cancels its unfinished descendants, so a timed-out
-- parent's child stops at its next step boundary; a run going back to its queue for a retry
-- puts its unfinished or failed descendants in WAITING, so its next attempt re-runs them.
--
-- WAITING parks the run (pgsched.sleep / pgsched.recv): it gives back its executor, slot and
-- attempt (waiting is not a failed try) and keeps what ends its wait: wake_at, wait_run,
-- wait_topic. Every other outcome clears those.
--
-- An outcome whose attempt wrote checkpoints that the database no longer has (commits lost in
-- a failover to an asynchronous replica) is not recorded as given: the run goes back to its
-- queue, attempt refunded, to redo the lost steps from the checkpoints that survived.
WITH RECURSIVE given AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::uuid[], %(statuses)s::text[],
                         %(outputs)s::jsonb[], %(errors)s::jsonb[],
                         %(not_befores)s::timestamptz[], %(releases)s::boolean[],
                         %(checkpoints)s::int[], %(wake_ats)s::timestamptz[],
                         %(wait_runs)s::text[], %(wait_topics)s::text[])
        AS o(id, token, status, output, error, not_before, release, checkpoints, wake_at,
             wait_run, wait_topic)
), outcome AS (
    SELECT g.*, g.checkpoints > 0 AND (SELECT count(*) FROM {schema}.steps s
                                      WHERE s.workflow_id = g.id) < g.checkpoints AS lost
    FROM given g
), updated AS (
    UPDATE {schema}.workflows w
    SET status = CASE WHEN o.lost THEN 'ENQUEUED' ELSE o.status END,
        output = CASE WHEN o.lost THEN NULL ELSE o.output END,
        error = CASE WHEN o.lost THEN jsonb_build_object(
                    'type', 'CheckpointLost',
                    'message', format('%%s checkpoint(s) written by attempt %%s are missing '
                                      '(lost in a database failover?); redoing them',
                                      o.checkpoints, w.attempts))
                ELSE o.error END,
        attempts = CASE WHEN o.lost OR o.status = 'WAITING' THEN greatest(w.attempts - 1, 0)
                        ELSE w.attempts END,
        not_before = CASE WHEN o.lost THEN %(now)s ELSE coalesce(o.not_before, w.not_before) END,
        finished_at = CASE WHEN o.lost OR o.status IN ('ENQUEUED', 'WAITING') THEN NULL
                           ELSE %(now)s END,
        wake_at = CASE WHEN o.lost THEN NULL ELSE o.wake_at END,
        wait_run = CASE WHEN o.lost THEN NULL ELSE o.wait_run END,
        wait_topic = CASE WHEN o.lost THEN NULL ELSE o.wait_topic END,
        executor = CASE WHEN o.release THEN NULL ELSE w.executor END,
        attempt_token = NULL,
        suspect = CASE WHEN o.status = 'ENQUEUED' THEN w.suspect ELSE false END,
        isolated = false,
        updated_at = %(now)s
    FROM outcome o
    WHERE w.id = o.id AND w.attempt_token = o.token AND w.status = 'RUNNING'
    RETURNING w.id, w.status, w.queue, o.release OR o.lost AS release, o.lost
), tree AS (
    SELECT u.id, u.status AS root_status, 0 AS depth FROM updated u
    WHERE u.status IN ('ENQUEUED', 'ERROR', 'DEAD', 'CANCELLED')
    UNION ALL
    SELECT c.id, t.root_status, t.depth + 1
    FROM {schema}.workflows c JOIN tree t ON c.parent_id = t.id
), descendants AS (
    UPDATE {schema}.workflows w
    SET status = CASE WHEN t.root_status = 'ENQUEUED' THEN 'WAITING' ELSE 'CANCELLED' END,
        finished_at = CASE WHEN t.root_status = 'ENQUEUED' THEN NULL ELSE %(now)s END,
        attempt_token = NULL,
        updated_at = %(now)s
    FROM tree t
    WHERE w.id = t.id AND t.depth > 0
      AND w.status = ANY (CASE WHEN t.root_status = 'ENQUEUED'
                               THEN ARRAY['ENQUEUED', 'RUNNING', 'ERROR', 'DEAD', 'CANCELLED']
                               ELSE ARRAY['ENQUEUED', 'RUNNING', 'WAITING'] END)
), released AS (
    -- Found by id alone: the executor index also holds an entry for every row version this
    -- worker claimed since the last vacuum, and a plan that read it (for `executor = ...`)
    -- read all of those on every round of a drain. IS NOT DISTINCT FROM is `=` here (the
    -- worker id is never NULL) in a form that index cannot serve.
    UPDATE {schema}.workflows w
    SET executor = NULL, updated_at = %(now)s
    WHERE w.id = ANY (%(returned)s::text[]) AND w.executor IS NOT DISTINCT FROM %(worker)s
      AND w.status <> 'RUNNING'
    RETURNING w.id
), freed AS (
    UPDATE {schema}.queue_slots SET holder = NULL
    WHERE holder IN (SELECT id FROM updated WHERE release UNION ALL SELECT id FROM released)
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM updated WHERE lost
)
SELECT id, (SELECT count(*) FROM wake) AS woken FROM updated
