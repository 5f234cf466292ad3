INSERT INTO {schema}.workers (id, hostname, pid, app, queues, workflows, concurrency,
                             queue_limits, version, app_version)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(app)s, %(queues)s, %(workflows)s, %(concurrency)s,
        %(queue_limits)s, %(version)s, %(app_version)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp(), stopping = false
