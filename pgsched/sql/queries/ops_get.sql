SELECT id, name, status, queue, priority, dedup_key, inputs, output, error, attempts,
       max_attempts, timeout_s, not_before, scheduled_at, schedule_name, parent_id, forked_from,
       executor, created_at, started_at, finished_at, updated_at, wake_at, wait_run, wait_topic,
       app_version
FROM {schema}.workflows
WHERE id = %(id)s
