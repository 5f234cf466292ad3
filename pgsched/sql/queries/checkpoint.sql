-- Write a step's checkpoint, fenced by the attempt token in the same statement.
WITH owner AS MATERIALIZED (
    SELECT id FROM {schema}.workflows
    WHERE id = %(id)s AND attempt_token = %(token)s AND status = 'RUNNING'
    FOR NO KEY UPDATE
)
INSERT INTO {schema}.steps
    (workflow_id, step_number, name, kind, output, error, attempts, child_id, started_at,
     finished_at)
SELECT id, %(step_number)s, %(name)s, %(kind)s, %(output)s, %(error)s, %(attempts)s,
       %(child_id)s, %(started_at)s, %(now)s
FROM owner
RETURNING step_number
