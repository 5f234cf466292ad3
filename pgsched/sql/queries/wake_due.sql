-- Wake parked runs whose wait is over by time: a sleep that ended or a recv that timed out
-- (lifecycle.wake_due). WAITING -> ENQUEUED, due now, with a NOTIFY per queue so an idle
-- worker claims it at once; the woken run replays to its wait and goes on from there.
-- An index probe on workflows_wake however many runs wait; SKIP LOCKED lets the wakers of
-- several workers share a burst instead of queueing behind each other. Also answers when the
-- next parked run comes due, so the alarm loop sleeps until then.
WITH due AS (
    SELECT id FROM {schema}.workflows
    WHERE status = 'WAITING' AND parent_id IS NULL AND wake_at <= %(now)s
    ORDER BY wake_at
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
), woken AS (
    UPDATE {schema}.workflows w
    SET status = 'ENQUEUED', not_before = %(now)s, wake_at = NULL, wait_run = NULL,
        wait_topic = NULL, updated_at = %(now)s
    FROM due
    WHERE w.id = due.id
    RETURNING w.id, w.queue
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM woken) q
)
SELECT (SELECT count(*) FROM woken) AS woken,
       (SELECT count(*) FROM notified) AS queues,
       (SELECT wake_at FROM {schema}.workflows
        WHERE status = 'WAITING' AND parent_id IS NULL AND wake_at > %(now)s
        ORDER BY wake_at LIMIT 1) AS next_wake
