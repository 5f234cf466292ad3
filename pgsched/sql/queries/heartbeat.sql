-- Liveness uses the database clock: workers on different machines compare against one clock.
-- The database's time comes back too: the worker measures its clock's offset from it.
UPDATE {schema}.workers SET heartbeat_at = clock_timestamp(), stopping = %(stopping)s
WHERE id = %(id)s
RETURNING id, clock_timestamp() AS db_now
