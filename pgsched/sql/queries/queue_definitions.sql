-- The queues' limits as the database holds them: claims follow these, not a worker's copy,
-- so workers of two releases (a rolling deploy) apply one definition and strand no capacity.
SELECT name, concurrency, worker_concurrency, rate_limit, rate_period_s
FROM {schema}.queues WHERE name = ANY(%(names)s::text[])
