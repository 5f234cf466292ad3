-- Per queue: is a run ready to start, and if not, when does the next waiting one come due?
-- An idle worker sleeps until that time instead of polling for delayed runs and retries.
-- A queue with nothing waiting is not returned.
SELECT q.name,
       bool_or(w.not_before <= %(now)s) AS ready,
       min(w.not_before) AS next_due
FROM unnest(%(queues)s::text[]) AS q(name)
JOIN {schema}.workflows w
  ON w.queue = q.name AND w.status = 'ENQUEUED' AND w.name = ANY(%(names)s::text[])
GROUP BY q.name
