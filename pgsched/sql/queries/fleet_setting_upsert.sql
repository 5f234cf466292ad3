-- Publish one setting for SQL to read (see migration 0004); a no-op when it is unchanged.
INSERT INTO {schema}.fleet_settings AS s (name, value, updated_at)
VALUES (%(name)s, %(value)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
WHERE s.value IS DISTINCT FROM EXCLUDED.value
