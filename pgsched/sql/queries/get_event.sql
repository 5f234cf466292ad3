-- An event's value (app.get_event), and whether the run exists at all: waiting on a run
-- that does not exist is a mistake to report, not a timeout to sit out.
SELECT EXISTS (SELECT 1 FROM {schema}.workflows WHERE id = %(id)s) AS known,
       e.key IS NOT NULL AS found, e.value
FROM (SELECT 1) AS one
LEFT JOIN {schema}.run_events e ON e.workflow_id = %(id)s AND e.key = %(key)s
