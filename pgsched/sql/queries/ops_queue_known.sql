SELECT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s) AS known
