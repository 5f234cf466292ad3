-- The messages sent to a run, oldest first, and which recv step took each (null: unread).
SELECT seq, topic, payload, sent_at, consumed_step FROM {schema}.run_messages
WHERE workflow_id = %(id)s
ORDER BY seq
LIMIT 100
