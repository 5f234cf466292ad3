-- Whether a live worker (heartbeat within %(live_s)s seconds) has this workflow's code, and
-- whether one serves this queue.
SELECT EXISTS (SELECT 1 FROM {schema}.workers k
               WHERE %(name)s = ANY (k.workflows)
                 AND k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s))
           AS has_code,
       EXISTS (SELECT 1 FROM {schema}.workers k
               WHERE %(queue)s = ANY (k.queues) AND %(name)s = ANY (k.workflows)
                 AND k.heartbeat_at > clock_timestamp() - make_interval(secs => %(live_s)s))
           AS serves_queue
