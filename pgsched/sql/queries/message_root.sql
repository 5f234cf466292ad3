-- Lock the top-level run of a message's recipient (the recipient itself unless it is an
-- inline child) for the sender's transaction, before the message is written: a run being
-- parked at the same moment is then either parked before the message is written (and woken
-- by send_message.sql) or sees the message when it parks (wake_parked.sql).
WITH RECURSIVE chain AS (
    SELECT id, parent_id FROM {schema}.workflows WHERE id = %(id)s
    UNION ALL
    SELECT p.id, p.parent_id FROM {schema}.workflows p JOIN chain c ON p.id = c.parent_id
)
SELECT w.id FROM {schema}.workflows w
WHERE w.id = (SELECT id FROM chain WHERE parent_id IS NULL)
FOR NO KEY UPDATE
