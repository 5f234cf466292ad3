-- pgsched bench --soak: dead tuples and sizes of workflows after a slice (the statistics
-- behind n_dead_tup lag by about a second).
SELECT coalesce(s.n_dead_tup, 0) AS dead_tuples,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relname = 'workflows'
