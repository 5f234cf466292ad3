-- Liveness uses the database clock: workers on different machines compare against one clock.
UPDATE {schema}.workers SET heartbeat_at = clock_timestamp(), stopping = %(stopping)s
WHERE id = %(id)s
RETURNING id
