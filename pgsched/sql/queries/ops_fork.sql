-- A new run with the source's name and inputs that replays the checkpoints of steps before
-- %(from_step)s and runs the rest with the code deployed now. Its dedup key and schedule
-- are not copied: a fork is a deliberate extra run, outside dedup and overlap rules.
WITH source AS (
    SELECT * FROM {schema}.workflows WHERE id = %(id)s
), forked AS (
    INSERT INTO {schema}.workflows
        (id, name, status, queue, priority, inputs, max_attempts, timeout_s, not_before,
         scheduled_at, forked_from, created_at, updated_at)
    SELECT %(new_id)s, name, 'ENQUEUED', coalesce(%(queue)s::text, queue), priority, inputs,
           max_attempts, timeout_s, %(now)s, scheduled_at, id, %(now)s, %(now)s
    FROM source
    RETURNING id, queue
), copied AS (
    INSERT INTO {schema}.steps
        (workflow_id, step_number, name, kind, output, error, attempts, child_id, started_at,
         finished_at)
    SELECT (SELECT id FROM forked), step_number, name, kind, output, error, attempts, child_id,
           started_at, finished_at
    FROM {schema}.steps
    WHERE workflow_id = %(id)s AND step_number < %(from_step)s
      AND EXISTS (SELECT 1 FROM forked)
    RETURNING step_number
), wake AS (
    SELECT pg_notify(%(channel)s, queue) FROM forked
)
SELECT id, queue, (SELECT count(*) FROM copied) AS copied_steps,
       (SELECT count(*) FROM wake) AS woken
FROM forked
