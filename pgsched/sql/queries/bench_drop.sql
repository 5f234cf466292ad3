-- pgsched bench: drop its throwaway schema.
DROP SCHEMA IF EXISTS {schema} CASCADE
