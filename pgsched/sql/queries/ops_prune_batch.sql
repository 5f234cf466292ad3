-- Delete one batch of finished runs older than the cutoff (their steps cascade). Small
-- batches, each its own transaction, keep row locks short; SKIP LOCKED never waits on a row
-- another session holds. A child run is kept while its parent is still unfinished.
WITH victims AS (
    SELECT w.id FROM {schema}.workflows w
    WHERE w.finished_at IS NOT NULL AND w.finished_at < %(cutoff)s
      AND w.status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD')
      -- A scalar subquery, not NOT EXISTS: the planner may turn an anti-join into a hashed
      -- scan of every active run, where this is one primary-key probe per candidate.
      AND (w.parent_id IS NULL OR coalesce(
          (SELECT p.status FROM {schema}.workflows p WHERE p.id = w.parent_id), 'GONE')
          NOT IN ('ENQUEUED', 'RUNNING', 'WAITING'))
    ORDER BY w.finished_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM {schema}.workflows w USING victims v WHERE w.id = v.id
    RETURNING w.id
)
SELECT count(*) AS deleted FROM deleted
