-- Serialize the fleet on one schedule for the length of a short tick transaction. `busy`
-- (overlap="skip") is a probe of workflows_schedule_active, whatever the size of the history.
SELECT name, paused, last_tick, created_at,
       EXISTS (SELECT 1 FROM {schema}.workflows w
               WHERE w.schedule_name = s.name AND w.status IN ('ENQUEUED', 'RUNNING')) AS busy
FROM {schema}.schedules s
WHERE name = %(name)s
FOR UPDATE
