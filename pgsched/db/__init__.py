"""The database layer: connections, SQL files, migrations and the embedded server.

It knows nothing of workflows: it hands out connections and named SQL statements.
"""

from pgsched.db.database import Database
from pgsched.db.redact import mask_url
from pgsched.db.sqlfiles import query

__all__ = ["Database", "mask_url", "query"]
