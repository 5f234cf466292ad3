SELECT id FROM {schema}.workflows
WHERE queue = %(queue)s AND dedup_key = %(dedup_key)s AND status IN ('ENQUEUED', 'RUNNING')
