SELECT coalesce(max(step_number), 0) AS last_step, count(*) AS steps
FROM {schema}.steps WHERE workflow_id = %(id)s
