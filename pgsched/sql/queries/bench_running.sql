-- pgsched bench: how many runs of a queue are RUNNING now (one consistent snapshot).
SELECT count(*) FROM {schema}.workflows WHERE queue = %(queue)s AND status = 'RUNNING'
