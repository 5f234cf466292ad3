-- pgsched bench: the table of the commit-ceiling measurement (one bare row per transaction).
CREATE TABLE IF NOT EXISTS {schema}.bench_ceiling (id bigint)
