-- Serialize rate-limited claims of one queue and count the starts inside its window.
SELECT pg_advisory_xact_lock(hashtextextended('pgsched.rate:' || %(queue)s, 0)) IS NULL AS locked,
       (SELECT count(*) FROM {schema}.queue_starts
        WHERE queue = %(queue)s AND started_at > %(window_start)s) AS started
