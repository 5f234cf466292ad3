-- The events a run published (pgsched.set_event), for `workflows show` and the dashboard.
SELECT key, value, updated_at FROM {schema}.run_events
WHERE workflow_id = %(id)s
ORDER BY key
