-- Which of these queues have a run ready to start? One cheap index probe per queue.
SELECT q.name
FROM unnest(%(queues)s::text[]) AS q(name)
WHERE EXISTS (
    SELECT 1 FROM {schema}.workflows w
    WHERE w.queue = q.name AND w.status = 'ENQUEUED' AND w.not_before <= %(now)s
      AND w.name = ANY(%(names)s::text[])
)
