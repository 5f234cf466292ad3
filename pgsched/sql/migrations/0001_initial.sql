-- Runs: one row per cron tick, queued job or direct start. The id is the workflow id.
CREATE TABLE {schema}.workflows (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    status        text NOT NULL CHECK (status IN
                    ('ENQUEUED', 'RUNNING', 'SUCCESS', 'ERROR', 'CANCELLED', 'DEAD')),
    queue         text NOT NULL,
    priority      integer NOT NULL DEFAULT 0,
    dedup_key     text,
    inputs        jsonb NOT NULL,
    output        jsonb,
    error         jsonb,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
    timeout_s     double precision,
    not_before    timestamptz NOT NULL,
    scheduled_at  timestamptz,
    schedule_name text,
    parent_id     text,
    forked_from   text,
    executor      text,
    attempt_token uuid,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL
);

-- Dequeue: highest priority first, FIFO within a priority, waiting rows only.
CREATE INDEX workflows_dequeue ON {schema}.workflows (queue, priority DESC, seq)
    WHERE status = 'ENQUEUED';
-- A dedup key is taken while its job waits or runs, and free once it finishes.
CREATE UNIQUE INDEX workflows_dedup ON {schema}.workflows (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('ENQUEUED', 'RUNNING');
-- Takeover and "stuck runs" look up running rows by executor.
CREATE INDEX workflows_running ON {schema}.workflows (executor) WHERE status = 'RUNNING';
CREATE INDEX workflows_created ON {schema}.workflows (created_at);
CREATE INDEX workflows_schedule ON {schema}.workflows (schedule_name, scheduled_at)
    WHERE schedule_name IS NOT NULL;

-- Checkpoints: one row per finished step.
CREATE TABLE {schema}.steps (
    workflow_id text NOT NULL REFERENCES {schema}.workflows (id) ON DELETE CASCADE,
    step_number integer NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('step', 'transaction', 'child')),
    output      jsonb,
    error       jsonb,
    attempts    integer NOT NULL DEFAULT 1,
    child_id    text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, step_number)
);

-- Live worker processes. Heartbeats use the database clock (see pgsched/clock.py).
CREATE TABLE {schema}.workers (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    app          text NOT NULL,
    queues       text[] NOT NULL,
    workflows    text[] NOT NULL,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopping     boolean NOT NULL DEFAULT false
);

-- Queue definitions as the workers last declared them.
CREATE TABLE {schema}.queues (
    name               text PRIMARY KEY,
    concurrency        integer CHECK (concurrency > 0),
    worker_concurrency integer CHECK (worker_concurrency > 0),
    rate_limit         integer CHECK (rate_limit > 0),
    rate_period_s      double precision CHECK (rate_period_s > 0),
    updated_at         timestamptz NOT NULL
);

-- One row per unit of fleet-wide concurrency. A claim locks free slots with SKIP LOCKED and
-- writes the run id into them in the same transaction that marks the run RUNNING, so the
-- limit holds without counting rows in a separate, racy step.
CREATE TABLE {schema}.queue_slots (
    queue  text NOT NULL REFERENCES {schema}.queues (name) ON DELETE CASCADE,
    slot   integer NOT NULL,
    holder text,
    PRIMARY KEY (queue, slot)
);
CREATE INDEX queue_slots_holder ON {schema}.queue_slots (holder) WHERE holder IS NOT NULL;

-- Starts inside the rate-limit window, written by claims that hold the queue's advisory lock.
CREATE TABLE {schema}.queue_starts (
    queue      text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX queue_starts_window ON {schema}.queue_starts (queue, started_at);

-- Cron schedules the workers registered. last_tick is the high-water mark: a tick at or
-- below it is never inserted again.
CREATE TABLE {schema}.schedules (
    name            text PRIMARY KEY,
    expression      text NOT NULL,
    timezone        text NOT NULL,
    queue           text NOT NULL,
    catch_up        text NOT NULL,
    overlap         text NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    last_tick       timestamptz,
    next_tick       timestamptz,
    ticks_fired     bigint NOT NULL DEFAULT 0,
    ticks_collapsed bigint NOT NULL DEFAULT 0,
    ticks_missed    bigint NOT NULL DEFAULT 0,
    ticks_skipped   bigint NOT NULL DEFAULT 0,
    last_lateness_s double precision,
    last_seen_at    timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
