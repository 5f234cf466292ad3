-- Record a queue's limits and make exactly `concurrency` slot rows exist. Surplus free slots
-- are dropped; a surplus slot still held is dropped when its run releases it (see release).
WITH upsert AS (
    INSERT INTO {schema}.queues (name, concurrency, worker_concurrency, rate_limit, rate_period_s,
                                 updated_at)
    VALUES (%(name)s, %(concurrency)s, %(worker_concurrency)s, %(rate_limit)s, %(rate_period_s)s,
            %(now)s)
    ON CONFLICT (name) DO UPDATE
    SET concurrency = EXCLUDED.concurrency, worker_concurrency = EXCLUDED.worker_concurrency,
        rate_limit = EXCLUDED.rate_limit, rate_period_s = EXCLUDED.rate_period_s,
        updated_at = EXCLUDED.updated_at
    RETURNING name
), added AS (
    INSERT INTO {schema}.queue_slots (queue, slot)
    SELECT (SELECT name FROM upsert), n
    FROM generate_series(0, coalesce(%(concurrency)s, 0) - 1) AS n
    ON CONFLICT DO NOTHING
)
DELETE FROM {schema}.queue_slots
WHERE queue = %(name)s AND slot >= coalesce(%(concurrency)s, 0) AND holder IS NULL
