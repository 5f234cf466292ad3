SELECT id, name, status FROM {schema}.workflows WHERE parent_id = %(id)s ORDER BY id
