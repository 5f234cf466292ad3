-- Runs finished and failed per queue and minute over the last hour, for the queues page's
-- chart: a range scan of the workflows_finished index over one hour's finishes, whatever
-- the size of the table. minute 0 is the current minute, 59 the oldest.
SELECT queue,
       floor(extract(epoch FROM %(now)s::timestamptz - finished_at) / 60)::int AS minute,
       count(*) AS finished,
       count(*) FILTER (WHERE status IN ('ERROR', 'DEAD')) AS failed
FROM {schema}.workflows
WHERE finished_at IS NOT NULL
  AND finished_at > %(now)s::timestamptz - interval '1 hour'
  AND finished_at <= %(now)s::timestamptz
  AND parent_id IS NULL
GROUP BY 1, 2
