"""A small Flask app that enqueues a job in the same transaction as its own write.

`POST /signups` inserts the user and enqueues the welcome email on the SAME psycopg
connection and transaction (`emails.enqueue(..., conn=conn)`): if the insert fails and the
transaction rolls back, the job never existed; if it commits, a worker will send the email.
This is the transactional outbox pattern without an outbox table. The web process creates its
table on its first request, so it runs on a fresh database.

Run it: `pgsched worker examples/webapp.py & flask --app examples/webapp.py run`
then sign someone up: `curl -f -X POST localhost:5000/signups -d '{"email": "ada@example.com"}'`
and the worker's log shows the welcome email.
"""

from __future__ import annotations

import functools

import psycopg
from flask import Flask, jsonify, request
from loguru import logger

import pgsched

app = pgsched.App("signups")
emails = app.queue("emails", concurrency=10)
web = Flask(__name__)


@app.workflow()
def send_welcome_email(user_id: int, address: str) -> str:
    logger.info("welcome email to {} (user {})", address, user_id)
    return f"welcomed:{address}"


@app.transaction()
def create_tables(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS web_users (id serial PRIMARY KEY, email text UNIQUE NOT NULL)"
    )


@functools.cache
def tables_ready() -> bool:
    """Create the table once per web process (importing this module never connects)."""
    create_tables()
    return True


@web.post("/signups")
def signup():  # type: ignore[no-untyped-def]
    address = request.get_json(force=True).get("email", "")
    if "@" not in address:
        return jsonify(error="a valid email is required"), 400
    tables_ready()
    with psycopg.connect(app.db.url) as conn:  # commits on success, rolls back on error
        try:
            user_id = conn.execute(
                "INSERT INTO web_users (email) VALUES (%s) RETURNING id", (address,)
            ).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            conn.rollback()
            return jsonify(error="already signed up"), 409
        job = emails.enqueue(send_welcome_email, user_id, address, conn=conn)
    return jsonify(user_id=user_id, job=job.workflow_id), 201
