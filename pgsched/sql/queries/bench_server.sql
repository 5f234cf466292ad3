-- pgsched bench: the server and the commit durability the numbers were measured with.
SELECT current_setting('server_version') AS server_version, current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit
