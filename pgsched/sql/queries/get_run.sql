SELECT id, name, status, queue, output, error, attempts, max_attempts, dedup_key
FROM {schema}.workflows
WHERE id = %(id)s
