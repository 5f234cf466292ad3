-- Per queue: is a run ready to start, and when does the next run not yet due come due?
-- An idle worker sleeps until that time instead of polling for delayed runs and retries;
-- it is asked for even when a run is ready, or a worker claiming that one would forget it.
-- `suspects`: ready runs recovered from a crashed worker, which are claimed one at a time.
-- A queue with nothing waiting is not returned.
-- Each answer is one index probe that stops at the first match, never an aggregate of the
-- backlog: a worker peeks on every idle poll, and a queue may hold millions of waiting runs.
-- Ready runs and the next due time are read by due time (workflows_active), the few
-- suspects from their own part of workflows_dequeue. ORDER BY ... LIMIT 1 rather than
-- EXISTS: the planner may answer an EXISTS with a table scan it expects to stop early.
SELECT q.name, r.ready IS NOT NULL AS ready, s.suspects IS NOT NULL AS suspects,
       d.next_due
FROM unnest(%(queues)s::text[]) AS q(name)
LEFT JOIN LATERAL (
    SELECT true AS ready FROM {schema}.workflows w
    WHERE w.queue = q.name AND w.status = 'ENQUEUED' AND w.not_before <= %(now)s
      AND NOT w.suspect AND w.name = ANY(%(names)s::text[])
    ORDER BY w.not_before
    LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT true AS suspects FROM {schema}.workflows w
    WHERE w.queue = q.name AND w.suspect AND w.status = 'ENQUEUED'
      AND w.not_before <= %(now)s AND w.name = ANY(%(names)s::text[])
    LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT w.not_before AS next_due FROM {schema}.workflows w
    WHERE w.queue = q.name AND w.status = 'ENQUEUED' AND w.not_before > %(now)s
      AND w.name = ANY(%(names)s::text[])
    ORDER BY w.not_before
    LIMIT 1
) d ON true
WHERE r.ready OR s.suspects OR d.next_due IS NOT NULL
