-- Serialize the rate-limited claims of one queue until this transaction ends. This must be a
-- statement of its own: a statement's snapshot is taken before it starts waiting for the
-- lock, so a count in the same statement could miss the starts of the previous lock holder.
SELECT pg_advisory_xact_lock(hashtextextended('pgsched.rate:' || %(schema)s || ':' || %(queue)s, 0))
    IS NULL AS locked
