-- Insert a batch of runs in one statement; returns how many were inserted, not their ids:
-- sending 10,000 ids back costs more than the insert. The ids are fresh and a batch carries no
-- dedup keys, so there is no ON CONFLICT: its speculative insertion doubled the server's cost.
-- Arrays arrive in binary format: no per-element quoting on either side.
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, queue, priority, inputs, max_attempts, timeout_s, not_before,
         created_at, updated_at, trace_context)
    SELECT b.id, b.name, 'ENQUEUED', %(queue)s, b.priority, b.inputs, b.max_attempts,
           b.timeout_s, b.not_before, %(now)s, %(now)s, %(trace_context)s
    FROM unnest(%(ids)b::text[], %(names)b::text[], %(priorities)b::int[],
                %(inputs)b::jsonb[], %(max_attempts)b::int[], %(timeouts)b::float8[],
                %(not_befores)b::timestamptz[])
         AS b(id, name, priority, inputs, max_attempts, timeout_s, not_before)
    RETURNING 1
), wake AS (
    SELECT pg_notify(%(channel)s, %(wake)s) FROM (SELECT 1 FROM ins LIMIT 1) AS any_row
)
SELECT count(*) AS inserted, (SELECT count(*) FROM wake) AS woken FROM ins
