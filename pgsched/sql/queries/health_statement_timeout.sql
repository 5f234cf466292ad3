-- Bound every statement of a health or metrics request, so a locked table or a slow server
-- makes the probe fail fast instead of piling up request threads. Transaction-scoped.
SELECT set_config('statement_timeout', %(ms)s, true)
