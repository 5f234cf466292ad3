SELECT step_number, name, kind, output, error, attempts, child_id, started_at, finished_at,
       extract(epoch FROM finished_at - started_at)::float8 AS duration_s
FROM {schema}.steps
WHERE workflow_id = %(id)s
ORDER BY step_number
