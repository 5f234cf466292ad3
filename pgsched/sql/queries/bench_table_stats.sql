-- pgsched bench --soak: what the run left behind in each table: live and dead tuples, how
-- often (auto)vacuum ran, and the size of the table and of its indexes.
SELECT c.relname AS "table",
       coalesce(s.n_live_tup, 0) AS live_tuples,
       coalesce(s.n_dead_tup, 0) AS dead_tuples,
       coalesce(s.autovacuum_count, 0) AS autovacuums,
       coalesce(s.vacuum_count, 0) AS vacuums,
       coalesce(s.autoanalyze_count, 0) AS autoanalyzes,
       coalesce(s.n_tup_hot_upd, 0) AS hot_updates,
       coalesce(s.n_tup_upd, 0) AS updates,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relname IN ('workflows', 'steps', 'queue_slots')
ORDER BY c.relname
