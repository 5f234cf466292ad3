-- Create a child run owned by its parent's worker, or take over the one an earlier attempt of
-- the parent created. Returns the child's state; a finished child is returned as it is.
INSERT INTO {schema}.workflows AS w
    (id, name, status, queue, inputs, attempts, max_attempts, not_before, parent_id, executor,
     attempt_token, created_at, started_at, updated_at)
VALUES
    (%(id)s, %(name)s, 'RUNNING', %(queue)s, %(inputs)s, 1, %(max_attempts)s, %(now)s,
     %(parent_id)s, %(worker)s, gen_random_uuid(), %(now)s, %(now)s, %(now)s)
ON CONFLICT (id) DO UPDATE
SET status = 'RUNNING', executor = EXCLUDED.executor, attempt_token = EXCLUDED.attempt_token,
    finished_at = NULL,
    attempts = w.attempts + 1, updated_at = EXCLUDED.updated_at
WHERE w.status IN ('ENQUEUED', 'RUNNING', 'WAITING')
RETURNING id, status, attempt_token, output, error,
          EXISTS (SELECT 1 FROM {schema}.steps s WHERE s.workflow_id = w.id) AS has_steps
