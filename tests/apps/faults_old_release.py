"""The previous release of ``faults_app`` during a rolling deploy: same app, same workflow, but
its code still declares the ``deploy`` queue without the ``concurrency=2`` the new release added.
"""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("faults")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])

deploy = app.queue("deploy")


@app.workflow()
def deploy_span(index: int, seconds: float) -> int:
    started = time.time()
    try:
        time.sleep(seconds)  # simulated work between the recorded start and end
    finally:
        with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {}.intervals (job, pid, started, ended) "
                        "VALUES (%s, %s, %s, %s)").format(SCHEMA),
                (index, os.getpid(), started, time.time()),
            )
    return index
