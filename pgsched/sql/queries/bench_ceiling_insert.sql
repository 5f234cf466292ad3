-- pgsched bench: the cheapest durable write there is, the yardstick for one-transaction work.
INSERT INTO {schema}.bench_ceiling (id) VALUES (1)
