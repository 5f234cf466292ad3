WITH pruned AS (
    DELETE FROM {schema}.queue_starts WHERE queue = %(queue)s AND started_at <= %(window_start)s
)
INSERT INTO {schema}.queue_starts (queue, started_at)
SELECT %(queue)s, %(now)s FROM generate_series(1, %(count)s)
