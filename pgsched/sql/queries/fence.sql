-- Lock the run for this transaction if, and only if, this claim still owns it.
SELECT id FROM {schema}.workflows
WHERE id = %(id)s AND attempt_token = %(token)s AND status = 'RUNNING'
FOR NO KEY UPDATE
