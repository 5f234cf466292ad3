-- Hot paths that stay index probes on a table of millions (finished history, delayed runs).
--
-- Claim: ready runs of a queue, highest priority first, then by due time (not_before: the
-- enqueue time of an undelayed run), then FIFO. `suspect` is a key column, not a predicate:
-- the claim passes it as a parameter, and a generic plan of a prepared statement can only
-- use an index whose predicate holds for every parameter value. With not_before in the key,
-- the ready runs of a priority are a prefix of its entries, so a claim reads the runs it
-- takes and never walks the delayed ones (the old index, ordered by seq, walked every
-- delayed entry ahead of the first ready one). Same number of indexes: it replaces
-- workflows_dequeue, so an enqueue pays no more than before.
DROP INDEX {schema}.workflows_dequeue;
CREATE INDEX workflows_dequeue ON {schema}.workflows
    (queue, suspect, priority DESC, not_before, seq)
    WHERE status = 'ENQUEUED';

-- Peek ("is a run ready, and when is the next one due?") and queue statistics: waiting and
-- running runs by queue and due time. Children are waiting runs too (a worker must wake for
-- a delayed child), so the index now holds them; statistics filter top-level runs on the
-- included parent_id without visiting the table.
DROP INDEX {schema}.workflows_active;
CREATE INDEX workflows_active ON {schema}.workflows (queue, status, not_before)
    INCLUDE (parent_id)
    WHERE status IN ('ENQUEUED', 'RUNNING');

-- overlap="skip": does the schedule have a run waiting or running? An index probe on the
-- few unfinished cron runs, under the schedule's row lock, instead of reading its history.
-- A run that is not a cron tick has no entry, so an ordinary enqueue does not pay for it.
CREATE INDEX workflows_schedule_active ON {schema}.workflows (schedule_name)
    WHERE status IN ('ENQUEUED', 'RUNNING') AND schedule_name IS NOT NULL;

-- Autovacuum for a queue table. Every job leaves three dead row versions in workflows (the
-- claim and the finish are never HOT updates: status is in the predicates of the partial
-- indexes, so each update adds entries to every index; a fillfactor would buy nothing), and
-- the dead entries collect at the head of workflows_dequeue and workflows_active, where every
-- claim and peek starts. The default trigger (20% of the table dead) waits for 2,000,000 dead
-- versions in a table that keeps 10,000,000 runs of history; 2% keeps the queue's indexes
-- clean whatever the retention. The soak (README, Benchmark) measures the result.
ALTER TABLE {schema}.workflows SET (autovacuum_vacuum_scale_factor = 0.02,
                                    autovacuum_vacuum_threshold = 1000,
                                    autovacuum_analyze_scale_factor = 0.02);
