-- pgsched bench: forget the workers a measurement stopped, so the next one counts only its own
-- fleet as it registers (a stopped worker deregisters itself; this covers one that could not).
DELETE FROM {schema}.workers
