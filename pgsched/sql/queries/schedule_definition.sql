-- The stored definition and high-water mark of one schedule, locked (as a pass locks it), so
-- a deploy that changes the expression decides where the mark goes against a mark that
-- cannot move meanwhile.
SELECT expression, timezone, last_tick, created_at
FROM {schema}.schedules
WHERE name = %(name)s
FOR UPDATE
