-- Insert a batch of a schedule's ticks in one statement, under the schedule's row lock
-- (schedule_lock.sql). A tick whose run exists (another worker inserted it) inserts nothing;
-- the ids of the inserted runs come back. Idle workers are woken once for the batch.
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, queue, priority, inputs, max_attempts, not_before, scheduled_at,
         schedule_name, created_at, updated_at)
    SELECT t.id, %(name)s, 'ENQUEUED', %(queue)s, 0, t.inputs, %(max_attempts)s, t.tick,
           t.tick, %(name)s, %(now)s, %(now)s
    FROM unnest(%(ids)s::text[], %(inputs)s::jsonb[], %(ticks)s::timestamptz[])
         AS t(id, inputs, tick)
    ORDER BY t.tick
    ON CONFLICT DO NOTHING
    RETURNING id, scheduled_at
), wake AS (
    SELECT pg_notify(%(channel)s, %(wake)s) FROM (SELECT 1 FROM ins LIMIT 1) AS any_row
)
SELECT id, (SELECT count(*) FROM wake) AS woken FROM ins ORDER BY scheduled_at
