-- Publish an event of a run (pgsched.set_event): the last value set for a key wins. The
-- NOTIFY (payload: the run id) wakes app.get_event callers waiting on this run.
WITH stored AS (
    INSERT INTO {schema}.run_events (workflow_id, key, value, updated_at)
    VALUES (%(id)s, %(key)s, %(value)s, %(now)s)
    ON CONFLICT (workflow_id, key)
    DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
    RETURNING workflow_id
)
SELECT pg_notify(%(channel)s, workflow_id) FROM stored
