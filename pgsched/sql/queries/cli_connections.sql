-- pgsched's sessions in this database that carry no worker id, by application_name: the
-- workers' health checks, the CLI (this very session among them) and the processes that
-- enqueue or serve the dashboard.
SELECT application_name, count(*) AS connections
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name IN ('pgsched', 'pgsched-cli', 'pgsched-health')
GROUP BY application_name
ORDER BY application_name
