-- Only one worker prunes at a time; the others skip this round instead of waiting.
SELECT pg_try_advisory_xact_lock(hashtextextended('pgsched.prune:' || %(schema)s, 0)) AS locked
