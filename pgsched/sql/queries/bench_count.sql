-- pgsched bench: runs of one queue in one status.
SELECT count(*) FROM {schema}.workflows WHERE queue = %(queue)s AND status = %(status)s
