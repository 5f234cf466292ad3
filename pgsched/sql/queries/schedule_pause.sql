UPDATE {schema}.schedules SET paused = %(paused)s, updated_at = %(now)s
WHERE name = %(name)s
RETURNING name
