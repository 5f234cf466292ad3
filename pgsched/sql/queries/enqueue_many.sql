-- Insert a batch of runs in one statement; returns how many were inserted (a duplicate id
-- inserts nothing), not their ids: sending 10,000 ids back costs more than the insert.
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, queue, priority, dedup_key, inputs, max_attempts, timeout_s,
         not_before, created_at, updated_at)
    SELECT b.id, b.name, 'ENQUEUED', %(queue)s, b.priority, b.dedup_key, b.inputs,
           b.max_attempts, b.timeout_s, b.not_before, %(now)s, %(now)s
    FROM unnest(%(ids)s::text[], %(names)s::text[], %(priorities)s::int[],
                %(dedup_keys)s::text[], %(inputs)s::jsonb[], %(max_attempts)s::int[],
                %(timeouts)s::float8[], %(not_befores)s::timestamptz[])
         AS b(id, name, priority, dedup_key, inputs, max_attempts, timeout_s, not_before)
    ON CONFLICT DO NOTHING
    RETURNING id
), wake AS (
    SELECT pg_notify(%(channel)s, %(queue)s) FROM (SELECT 1 FROM ins LIMIT 1) AS any_row
)
SELECT count(*) AS inserted, (SELECT count(*) FROM wake) AS woken FROM ins
