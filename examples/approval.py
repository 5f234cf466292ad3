"""Expense approval: a workflow that waits days for a human decision without holding a worker.

`expense` submits a claim, publishes its stage, and waits for a message on the "approval"
topic. While it waits it is a WAITING row with a wake time: no worker thread, no connection,
no queue slot, and it survives restarts and deploys. A decision sent from the web app wakes
it at once; with no decision in 7 days it escalates and waits 2 more. An approved claim is
paid after a one-hour cooling-off sleep.

Run it: `pgsched worker examples/approval.py & flask --app examples/approval.py run`
then open claim 7: `curl -f -X POST localhost:5000/claims/7` and the worker's log shows it
submitted for approval. `curl localhost:5000/claims/7` shows its stage, and
`curl -X POST localhost:5000/claims/7/decision -H 'Content-Type: application/json'
-H 'Idempotency-Key: review-1' -d '{"approved": true}'` approves it.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, jsonify, request
from loguru import logger

import pgsched

app = pgsched.App("approval")
web = Flask(__name__)

#: What the steps did, in order (a real app would write to its database or call a service).
ledger: list[str] = []


@app.step()
def submit(claim_id: int) -> None:
    ledger.append(f"submitted {claim_id}")
    logger.info("claim {} submitted for approval", claim_id)


@app.step()
def escalate(claim_id: int) -> None:
    ledger.append(f"escalated {claim_id}")
    logger.info("claim {} had no decision in 7 days: escalated to a director", claim_id)


@app.step()
def pay(claim_id: int) -> None:
    ledger.append(f"paid {claim_id}")
    logger.info("claim {} paid", claim_id)


@app.workflow()
def expense(claim_id: int) -> str:
    submit(claim_id)
    pgsched.set_event("stage", "awaiting approval")
    decision = pgsched.recv("approval", timeout=timedelta(days=7))
    if decision is None:
        escalate(claim_id)
        pgsched.set_event("stage", "escalated")
        decision = pgsched.recv("approval", timeout=timedelta(days=2))
    if not decision or not decision.get("approved"):
        pgsched.set_event("stage", "rejected")
        return "rejected"
    pgsched.set_event("stage", "approved, paying after a cooling-off hour")
    pgsched.sleep(timedelta(hours=1))
    pay(claim_id)
    pgsched.set_event("stage", "paid")
    return "paid"


def run_id(claim_id: int) -> str:
    return f"expense-{claim_id}"


@web.post("/claims/<int:claim_id>")
def open_claim(claim_id: int):
    handle = app.start(expense, claim_id, workflow_id=run_id(claim_id))  # idempotent
    return jsonify(run=handle.workflow_id), 201


@web.get("/claims/<int:claim_id>")
def claim_stage(claim_id: int):
    return jsonify(stage=app.get_event(run_id(claim_id), "stage", timeout=5))


@web.post("/claims/<int:claim_id>/decision")
def decide(claim_id: int):
    # A retried request with the same Idempotency-Key delivers the decision once.
    app.send(run_id(claim_id), request.get_json(), topic="approval",
             idempotency_key=request.headers.get("Idempotency-Key"))
    return jsonify(sent=True), 202
