-- Free queue slots whose holder neither runs nor has a thread that may still run it. Every
-- transition releases its slot itself (lifecycle.py); this repairs what a crash between
-- releases or an older release of pgsched left behind, so capacity is never stranded.
-- Run in REPEATABLE READ: a slot claimed concurrently makes it fail instead of freeing it.
UPDATE {schema}.queue_slots qs SET holder = NULL
WHERE qs.holder IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {schema}.workflows w
                  WHERE w.id = qs.holder AND (w.status = 'RUNNING' OR w.executor IS NOT NULL))
RETURNING qs.queue, qs.slot
