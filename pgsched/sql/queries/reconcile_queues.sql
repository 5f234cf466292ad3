-- Give every queue that live workers declare the strictest of their declarations: the
-- smallest concurrency, worker_concurrency and rate-limit count, the longest rate period (no
-- limit only where no live worker asks for one). Slot rows follow the concurrency: missing
-- ones are added, free surplus ones dropped (a held surplus slot is never claimed again, see
-- claim.sql, and is dropped by the next reconcile after its run releases it).
-- Run at worker start and stop and by the takeover loop, so a worker of an old release
-- starting mid-deploy can neither lift a limit nor strand capacity.
WITH declared AS (
    SELECT d.key AS name,
           (d.value ->> 'concurrency')::int AS concurrency,
           (d.value ->> 'worker_concurrency')::int AS worker_concurrency,
           (d.value ->> 'rate_limit')::int AS rate_limit,
           (d.value ->> 'rate_period_s')::float8 AS rate_period_s
    FROM {schema}.workers k, jsonb_each(k.queue_limits) d
), effective AS (
    SELECT name, min(concurrency) AS concurrency, min(worker_concurrency) AS worker_concurrency,
           min(rate_limit) AS rate_limit,
           max(rate_period_s) FILTER (WHERE rate_limit IS NOT NULL) AS rate_period_s
    FROM declared GROUP BY name
), changed AS (
    UPDATE {schema}.queues q
    SET concurrency = e.concurrency, worker_concurrency = e.worker_concurrency,
        rate_limit = e.rate_limit, rate_period_s = e.rate_period_s, updated_at = %(now)s
    FROM effective e
    WHERE q.name = e.name
      AND (q.concurrency, q.worker_concurrency, q.rate_limit, q.rate_period_s)
          IS DISTINCT FROM (e.concurrency, e.worker_concurrency, e.rate_limit, e.rate_period_s)
    RETURNING q.name, q.concurrency
), added AS (
    INSERT INTO {schema}.queue_slots (queue, slot)
    SELECT c.name, n FROM changed c, generate_series(0, coalesce(c.concurrency, 0) - 1) AS n
    ON CONFLICT DO NOTHING
), dropped AS (
    DELETE FROM {schema}.queue_slots s USING effective e
    WHERE s.queue = e.name AND s.slot >= coalesce(e.concurrency, 0) AND s.holder IS NULL
)
SELECT name, concurrency FROM changed
