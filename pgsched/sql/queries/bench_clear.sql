-- pgsched bench: empty the queue between measurements.
DELETE FROM {schema}.workflows
