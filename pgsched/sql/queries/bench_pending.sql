-- pgsched bench --soak: does one queue still have a run waiting or running? One probe of
-- workflows_active that stops at the first live entry: polled four times a second while a
-- slice drains, it must not cost more as the backlog or the dead entries grow.
SELECT EXISTS (SELECT 1 FROM {schema}.workflows
               WHERE queue = %(queue)s AND status IN ('ENQUEUED', 'RUNNING')) AS pending
