-- Take the oldest unread message of a run on a topic (pgsched.recv), in the transaction
-- that also writes the recv's checkpoint and holds the run's fence: the message is marked
-- read by that step exactly when the step's result is stored, so it is received once.
WITH next AS (
    SELECT seq FROM {schema}.run_messages
    WHERE workflow_id = %(id)s AND topic = %(topic)s AND consumed_step IS NULL
    ORDER BY seq
    LIMIT 1
    FOR UPDATE
)
UPDATE {schema}.run_messages m SET consumed_step = %(step)s
FROM next WHERE m.seq = next.seq
RETURNING m.payload
