-- What a worker's claims follow, read in one statement at each of its polls:
-- * each queue's limits as the database holds them (one row per queue in %(names)s that has
--   a definition): claims follow these, not a worker's copy, so workers of two releases (a
--   rolling deploy) apply one definition and strand no capacity;
-- * the code versions (App.version) of the live workers, on every row (one row with a null
--   name when no queue has a definition): runs started under one of them wait for a worker
--   of that version (claim.sql). Live: a heartbeat within the takeover timeout.
SELECT q.name, q.concurrency, q.worker_concurrency, q.rate_limit, q.rate_period_s, v.versions
FROM (SELECT coalesce(array_agg(DISTINCT app_version) FILTER (WHERE app_version IS NOT NULL),
                      ARRAY[]::text[]) AS versions
      FROM {schema}.workers
      WHERE heartbeat_at > %(now)s - make_interval(secs => %(timeout_s)s)) v
LEFT JOIN {schema}.queues q ON q.name = ANY(%(names)s::text[])
