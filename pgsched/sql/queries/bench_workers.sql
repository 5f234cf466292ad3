-- pgsched bench: registered workers.
SELECT count(*) FROM {schema}.workers
