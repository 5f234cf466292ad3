-- Forget the connection maxima of workers that are gone (deregistered, or taken over and
-- removed): one entry per worker row, however many workers a fleet has started.
DELETE FROM {schema}.fleet_settings s
WHERE starts_with(s.name, 'connections/')
  AND NOT EXISTS (SELECT 1 FROM {schema}.workers k WHERE s.name = 'connections/' || k.id)
