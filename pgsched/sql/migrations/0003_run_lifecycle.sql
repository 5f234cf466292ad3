-- Run lifecycle (pgsched/lifecycle.py owns every status change).
--
-- WAITING: a run that holds no worker thread and no queue slot while it waits. Today that is
-- a child workflow whose parent is not running: the parent's next attempt takes it over when
-- it reaches that child step. Before this version such children were parked as ENQUEUED with
-- not_before = 'infinity', a status encoded in a magic value that psycopg cannot load back.
ALTER TABLE {schema}.workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE {schema}.workflows ADD CONSTRAINT workflows_status_check CHECK (status IN
    ('ENQUEUED', 'RUNNING', 'WAITING', 'SUCCESS', 'ERROR', 'CANCELLED', 'DEAD'));
UPDATE {schema}.workflows SET status = 'WAITING', not_before = coalesce(started_at, created_at)
WHERE not_before = 'infinity';
ALTER TABLE {schema}.workflows ADD CONSTRAINT workflows_not_before_finite
    CHECK (isfinite(not_before));

-- Crash isolation. A run recovered from a worker that died is a suspect: one of the runs that
-- worker held may have crashed the process (os.abort(), a segfault, the OOM killer), and a
-- takeover cannot tell which. A suspect's attempt is refunded and it is claimed alone
-- (`isolated`), by a worker running nothing else; only a crash during an isolated attempt is
-- charged, so a poison pill reaches DEAD and its neighbours never do.
ALTER TABLE {schema}.workflows ADD COLUMN suspect boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.workflows ADD COLUMN isolated boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.workflows ADD COLUMN crashes integer NOT NULL DEFAULT 0;

-- Each live worker's own declaration of the queues it serves. During a rolling deploy two
-- releases may declare a queue differently; the queue applies the strictest declaration of
-- the live workers (reconcile_queues.sql), so a limit holds while any live worker's code asks
-- for it, and goes away only when the last such worker does.
ALTER TABLE {schema}.workers ADD COLUMN queue_limits jsonb NOT NULL DEFAULT jsonb_build_object();

-- Which pgsched each worker runs, for `pgsched workers` during a rolling upgrade.
ALTER TABLE {schema}.workers ADD COLUMN version text;

-- Takeover looks for every run a lapsed worker still holds: RUNNING ones, and finished ones
-- whose thread may still run (executor kept until it returns). Rows with an executor are few
-- at any time, so this index stays small while the table grows.
DROP INDEX {schema}.workflows_running;
CREATE INDEX workflows_executor ON {schema}.workflows (executor) WHERE executor IS NOT NULL;
