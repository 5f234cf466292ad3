-- The top-level runs the database says this worker is running. After a claim round whose
-- COMMIT was lost with the connection, the worker may not know some of them.
SELECT id FROM {schema}.workflows
WHERE status = 'RUNNING' AND executor = %(worker)s AND parent_id IS NULL
