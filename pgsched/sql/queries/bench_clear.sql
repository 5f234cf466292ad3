-- pgsched bench: empty the queue between measurements. TRUNCATE, not DELETE: dead rows left at
-- the head of the dequeue index would slow the next measurement's claims.
TRUNCATE {schema}.workflows CASCADE
