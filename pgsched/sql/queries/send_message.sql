-- Deliver a message to a run (lifecycle.send_message), after message_root.sql locked its
-- top-level run in this transaction. Only an unfinished run takes messages: one sent to a
-- finished run would never be read, so the caller reports it instead. A repeated
-- idempotency key delivers nothing more. If the recipient's top-level run is parked waiting
-- for this run and topic, it is woken in the same statement (WAITING -> ENQUEUED).
WITH target AS (
    SELECT id, status FROM {schema}.workflows WHERE id = %(id)s
), sent AS (
    INSERT INTO {schema}.run_messages (workflow_id, topic, payload, idempotency_key, sent_at)
    SELECT id, %(topic)s, %(payload)s, %(key)s, %(now)s FROM target
    WHERE status IN ('ENQUEUED', 'RUNNING', 'WAITING')
    ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING seq
), woken AS (
    UPDATE {schema}.workflows r
    SET status = 'ENQUEUED', not_before = %(now)s, wake_at = NULL, wait_run = NULL,
        wait_topic = NULL, updated_at = %(now)s
    WHERE r.id = %(root)s AND r.status = 'WAITING' AND r.parent_id IS NULL
      AND r.wait_run = %(id)s AND r.wait_topic = %(topic)s AND EXISTS (SELECT 1 FROM sent)
    RETURNING r.queue
)
SELECT (SELECT status FROM target) AS status,
       (SELECT seq FROM sent) AS seq,
       (SELECT count(*) FROM (SELECT pg_notify(%(channel)s, queue) FROM woken) n) AS woken
