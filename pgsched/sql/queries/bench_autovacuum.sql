-- pgsched bench --soak: the server's autovacuum settings, which decide how dead tuples fare.
SELECT current_setting('autovacuum') AS autovacuum,
       current_setting('autovacuum_naptime') AS naptime,
       current_setting('autovacuum_vacuum_scale_factor') AS vacuum_scale_factor,
       current_setting('autovacuum_vacuum_threshold') AS vacuum_threshold,
       current_setting('autovacuum_vacuum_cost_limit') AS vacuum_cost_limit
