-- The dashboard's "failed runs" and "cancelled runs" lists: newest first per status, an
-- ordered index walk however much history the table holds. Its predicate keeps a successful
-- run out of it at every step (enqueue, claim, finish), so the hot path writes nothing more;
-- only a run that fails or is cancelled adds one entry.
CREATE INDEX workflows_stopped ON {schema}.workflows (status, created_at, id)
    WHERE status IN ('ERROR', 'DEAD', 'CANCELLED');
