-- pgsched bench: top-level runs of one queue still waiting or running (workflows_active).
SELECT count(*) FROM {schema}.workflows
WHERE queue = %(queue)s AND status IN ('ENQUEUED', 'RUNNING') AND parent_id IS NULL
