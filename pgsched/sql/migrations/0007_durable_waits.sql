-- Durable waits, messages, events and code versions (lifecycle.py: park and wake).
--
-- A run parked by pgsched.sleep or pgsched.recv is WAITING with no executor, no attempt token
-- and no queue slot: it holds nothing until it wakes. What ends the wait is on the row:
-- wake_at (a sleep's end or a recv's timeout; null: only a message wakes it) and, for a recv,
-- wait_run/wait_topic (the run whose recv waits: the run itself or one of its inline
-- children). Only a top-level run is woken: it replays to the wait, its children with it.
ALTER TABLE {schema}.workflows
    ADD COLUMN wake_at timestamptz CHECK (isfinite(wake_at)),
    ADD COLUMN wait_run text,
    ADD COLUMN wait_topic text,
    -- The code version (App.version) of the worker that first ran the run: a resumed or
    -- woken run goes to a worker of that version while one is alive.
    ADD COLUMN app_version text;

-- The waker's pass finds due sleepers with an index probe, however many runs wait.
CREATE INDEX workflows_wake ON {schema}.workflows (wake_at)
    WHERE status = 'WAITING' AND parent_id IS NULL AND wake_at IS NOT NULL;

-- Parked runs and waiting children, for `pgsched workflows versions` and the dashboard.
CREATE INDEX workflows_waiting ON {schema}.workflows (app_version) WHERE status = 'WAITING';

ALTER TABLE {schema}.workers ADD COLUMN app_version text;

ALTER TABLE {schema}.steps DROP CONSTRAINT steps_kind_check;
ALTER TABLE {schema}.steps ADD CONSTRAINT steps_kind_check
    CHECK (kind IN ('step', 'transaction', 'child', 'sleep', 'recv', 'send', 'event'));

-- Messages to a run (app.send / pgsched.send), consumed by pgsched.recv in send order per
-- (run, topic). A consumed message keeps its row, marked with the step that took it, so a
-- run's history shows what it received; it goes with its run when history is pruned.
CREATE TABLE {schema}.run_messages (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id     text NOT NULL REFERENCES {schema}.workflows (id) ON DELETE CASCADE,
    topic           text NOT NULL,
    payload         jsonb,
    idempotency_key text,
    sent_at         timestamptz NOT NULL,
    consumed_step   integer
);
CREATE UNIQUE INDEX run_messages_idempotency
    ON {schema}.run_messages (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX run_messages_pending ON {schema}.run_messages (workflow_id, topic, seq)
    WHERE consumed_step IS NULL;

-- Events a run publishes (pgsched.set_event), read from anywhere (app.get_event): the last
-- value set for a key wins.
CREATE TABLE {schema}.run_events (
    workflow_id text NOT NULL REFERENCES {schema}.workflows (id) ON DELETE CASCADE,
    key         text NOT NULL,
    value       jsonb,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, key)
);
