-- Wake idle workers for runs whose inserts have already committed (pgsched.wakeups): one
-- NOTIFY per payload (queues.wake_payload), in a transaction that writes nothing else, so its
-- commit waits for no WAL flush and holds PostgreSQL's NOTIFY commit lock only briefly.
SELECT count(pg_notify(%(channel)s, payload)) AS sent
FROM unnest(%(payloads)s::text[]) AS payload
