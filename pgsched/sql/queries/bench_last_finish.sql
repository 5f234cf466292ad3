-- pgsched bench: when the last run of a drained queue finished.
SELECT max(finished_at) FROM {schema}.workflows WHERE queue = %(queue)s
