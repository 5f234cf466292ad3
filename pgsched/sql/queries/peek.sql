-- Per queue: is a run ready to start, and when does the next run not yet due come due?
-- An idle worker sleeps until that time instead of polling for delayed runs and retries;
-- it is asked for even when a run is ready, or a worker claiming that one would forget it.
-- `suspects`: ready runs recovered from a crashed worker, which are claimed one at a time.
-- A queue with nothing waiting is not returned.
SELECT q.name,
       bool_or(w.not_before <= %(now)s AND NOT w.suspect) AS ready,
       bool_or(w.not_before <= %(now)s AND w.suspect) AS suspects,
       min(w.not_before) FILTER (WHERE w.not_before > %(now)s) AS next_due
FROM unnest(%(queues)s::text[]) AS q(name)
JOIN {schema}.workflows w
  ON w.queue = q.name AND w.status = 'ENQUEUED' AND w.name = ANY(%(names)s::text[])
GROUP BY q.name
