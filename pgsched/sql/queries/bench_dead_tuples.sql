-- pgsched bench --soak: dead tuples in workflows after a slice (statistics lag by ~1 s).
SELECT coalesce(n_dead_tup, 0) AS dead FROM pg_stat_user_tables
WHERE schemaname = %(schema)s AND relname = 'workflows'
