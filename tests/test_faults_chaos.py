"""SIGKILL chaos (issue 10, the torture runs): three workers that a small supervisor restarts,
killed at random while they drain workflows with a transaction step, and a poison pill that
crashes whichever process runs it (``os.abort()``, issue 10, fault 6).

Nothing may be lost, no transaction step may commit twice, the pill ends DEAD after its
attempts and no innocent run ends DEAD with it.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.fault_rig import TERMINAL, figures

WORKERS = 3
CHAOS = {
    "PGSCHED_HEARTBEAT_INTERVAL": "0.5",
    "PGSCHED_TAKEOVER_TIMEOUT": "2",
    "PGSCHED_POLL_INTERVAL": "0.5",
    "PGSCHED_POOL_SIZE": "8",
}


class Supervisor:
    """Keeps ``WORKERS`` workers alive, as Kubernetes or systemd would, and kills one at
    random every ``pause`` seconds while told to."""

    def __init__(self, workers, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
        self.workers = workers
        self.env = env
        self.live: list = []
        self.kills = 0
        self.crashes = 0

    def tend(self) -> None:
        for proc in list(self.live):
            if proc.poll() is not None:
                self.live.remove(proc)
                if proc.returncode != -signal.SIGKILL:
                    self.crashes += 1
        while len(self.live) < WORKERS:
            self.live.append(self.workers.start("fault_app.py", "--queues", "drain",
                                                "--concurrency", "4", env=self.env))

    def kill_one(self) -> None:
        victim = random.choice(self.live)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path} ---\n{p.log_path.read_text()[-2000:]}"
                         for p in self.workers.procs[-4:])


@pytest.mark.torture
def test_sigkill_chaos_loses_nothing_and_isolates_the_poison_pill(throwaway, workers,
                                                                  load_app_module) -> None:
    jobs = 3000
    fault = throwaway()
    module = fault.load_app(load_app_module)
    module.drain.enqueue_many([(module.drain_job, (job, 0.01), {}) for job in range(jobs)])
    pill = module.drain.enqueue(module.poison, max_attempts=5)
    supervisor = Supervisor(workers, fault.worker_env(**CHAOS))

    def finished() -> int:
        return fault.sql("SELECT count(*) FROM workflows WHERE status = ANY(%s)",
                         (list(TERMINAL),))[0][0]

    started = time.monotonic()
    deadline = started + 240
    next_kill = started + random.uniform(1.0, 2.5)
    while finished() < jobs + 1:
        assert time.monotonic() < deadline, (
            f"the drain did not finish in 240 s: {fault.statuses()}\n{supervisor.logs()}")
        supervisor.tend()
        if time.monotonic() >= next_kill and finished() < jobs * 0.9:
            supervisor.kill_one()
            next_kill = time.monotonic() + random.uniform(1.0, 2.5)
        time.sleep(0.1)  # the supervisor's tick (the loop has its own deadline)

    result = figures(fault, jobs + 1, time.monotonic() - started)
    innocent_dead = fault.sql("SELECT count(*)::int FROM workflows "
                              "WHERE status = 'DEAD' AND id <> %s", (pill.workflow_id,))[0][0]
    (pill_status,) = fault.sql("SELECT status FROM workflows WHERE id = %s",
                               (pill.workflow_id,))[0]
    print(f"\n[sigkill chaos] {result.line()} kills={supervisor.kills} "
          f"crashes={supervisor.crashes} pill={pill_status} innocent_dead={innocent_dead}")
    assert result.duplicate_effects == 0, result.line()
    assert result.runs_without_effect == 0, result.line()
    assert pill_status == "DEAD", result.line()
    assert innocent_dead == 0, f"{result.line()}\n" + "\n".join(map(str, result.failures))
    assert result.statuses == {"SUCCESS": jobs, "DEAD": 1}, (
        f"{result.line()}\n" + "\n".join(map(str, result.failures)))
