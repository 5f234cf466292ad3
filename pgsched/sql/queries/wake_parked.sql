-- Runs parked by the finish just sent in this transaction whose wait is already over: their
-- message arrived while they were still RUNNING, or their wake time passed meanwhile
-- (lifecycle.send_finish). WAITING -> ENQUEUED, due now.
--
-- A statement of its own, after the finish: the finish's UPDATE locked each parked run, so
-- every sender that had locked it first (message_root.sql) has committed, and this
-- statement's snapshot sees its message; a sender that locks it later waits for this
-- transaction and then finds the run WAITING and wakes it itself. No wake-up is lost.
WITH woken AS (
    UPDATE {schema}.workflows w
    SET status = 'ENQUEUED', not_before = %(now)s, wake_at = NULL, wait_run = NULL,
        wait_topic = NULL, updated_at = %(now)s
    WHERE w.id = ANY (%(ids)s::text[]) AND w.status = 'WAITING' AND w.parent_id IS NULL
      AND (w.wake_at <= %(now)s
           OR EXISTS (SELECT 1 FROM {schema}.run_messages m
                      WHERE m.workflow_id = w.wait_run AND m.topic = w.wait_topic
                        AND m.consumed_step IS NULL))
    RETURNING w.id, w.queue
)
SELECT id, pg_notify(%(channel)s, queue) FROM woken
