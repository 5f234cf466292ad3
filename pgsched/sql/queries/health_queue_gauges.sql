-- Depth and oldest wait of each of %(queues)s, for /metrics. One probe of the partial
-- dequeue index per queue: only waiting rows are read, so the cost follows the backlog and
-- never the history. "Waiting" means ready to start (not_before has passed); rows held back
-- by a retry backoff or a later start time are counted apart, as "delayed".
SELECT q.name AS queue, s.waiting, s.delayed, s.oldest_s
FROM unnest(%(queues)s::text[]) AS q(name)
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE w.not_before <= %(now)s) AS waiting,
           count(*) FILTER (WHERE w.not_before > %(now)s) AS delayed,
           coalesce(extract(epoch FROM %(now)s - min(w.not_before)
                                FILTER (WHERE w.not_before <= %(now)s)), 0)::double precision
               AS oldest_s
    FROM {schema}.workflows w
    WHERE w.queue = q.name AND w.status = 'ENQUEUED'
) AS s
ORDER BY q.name
