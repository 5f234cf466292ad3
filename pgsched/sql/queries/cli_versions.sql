-- Unfinished runs per code version (App.version; null: not started yet), beside the live
-- workers of each version: what a deploy must keep running until its runs are done.
-- Reads only unfinished runs: the partial indexes of ENQUEUED, RUNNING and WAITING rows.
WITH unfinished AS (
    SELECT app_version, status FROM {schema}.workflows WHERE status = 'ENQUEUED'
    UNION ALL
    SELECT app_version, status FROM {schema}.workflows WHERE status = 'RUNNING'
    UNION ALL
    SELECT app_version, status FROM {schema}.workflows WHERE status = 'WAITING'
), runs AS (
    SELECT coalesce(app_version, '') AS version,
           count(*) FILTER (WHERE status = 'ENQUEUED') AS enqueued,
           count(*) FILTER (WHERE status = 'RUNNING') AS running,
           count(*) FILTER (WHERE status = 'WAITING') AS waiting
    FROM unfinished GROUP BY 1
), live AS (
    SELECT app_version AS version, count(*) AS workers FROM {schema}.workers
    WHERE app_version IS NOT NULL GROUP BY app_version
)
SELECT nullif(coalesce(r.version, l.version), '') AS version,
       coalesce(r.enqueued, 0) AS enqueued, coalesce(r.running, 0) AS running,
       coalesce(r.waiting, 0) AS waiting, coalesce(l.workers, 0) AS workers
FROM runs r FULL JOIN live l ON l.version = r.version
ORDER BY version NULLS FIRST
