SELECT step_number, name, kind, output, error, child_id
FROM {schema}.steps WHERE workflow_id = %(id)s ORDER BY step_number
