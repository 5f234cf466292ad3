-- Insert one run in the caller's transaction; a duplicate id or a taken dedup key inserts
-- nothing. The NOTIFY is sent when that transaction commits, which only the caller knows:
-- waking from here is the one safe way (pooled enqueues use enqueue_insert.sql). Wakes workers
-- (the payload is the queue, and for a delayed run its start time: queues.wake_payload).
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, queue, priority, dedup_key, inputs, max_attempts, timeout_s,
         not_before, scheduled_at, schedule_name, parent_id, forked_from, created_at, updated_at,
         trace_context)
    VALUES
        (%(id)s, %(name)s, 'ENQUEUED', %(queue)s, %(priority)s, %(dedup_key)s, %(inputs)s,
         %(max_attempts)s, %(timeout_s)s, %(not_before)s, %(scheduled_at)s, %(schedule_name)s,
         %(parent_id)s, %(forked_from)s, %(now)s, %(now)s, %(trace_context)s)
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT id, pg_notify(%(channel)s, %(wake)s) IS NULL AS notified FROM ins
