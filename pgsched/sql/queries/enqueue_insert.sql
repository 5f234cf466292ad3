-- Insert one run on a connection of pgsched's own, in its own transaction; a duplicate id or a
-- taken dedup key inserts nothing. No NOTIFY here: PostgreSQL serializes the durable commits
-- of notifying transactions, so producers would take turns at the WAL flush. The workers are
-- woken after the commit, from a write-free transaction (pgsched.wakeups, wake.sql).
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
