-- Per queue: is a run ready to start, and when does the next run not yet due come due?
-- An idle worker sleeps until that time instead of polling for delayed runs and retries;
-- it is asked for even when a run is ready, or a worker claiming that one would forget it.
-- A queue with nothing waiting is not returned.
SELECT q.name,
       bool_or(w.not_before <= %(now)s) AS ready,
       min(w.not_before) FILTER (WHERE w.not_before > %(now)s) AS next_due
FROM unnest(%(queues)s::text[]) AS q(name)
JOIN {schema}.workflows w
  ON w.queue = q.name AND w.status = 'ENQUEUED' AND w.name = ANY(%(names)s::text[])
GROUP BY q.name
