"""The process side of ``pgsched bench --producers/--workers/--compare``.

Producers are separate processes (one interpreter each, as eight web workers would be), and
so are pgqueuer's workers; this module is what those processes run
(``python -m pgsched.bench_compare ...``), plus the parent's handle on pgqueuer: its schema
in the bench's throwaway schema, its single enqueue, drain and start latency, all through
its async API on asyncpg (the path its users take). pgqueuer is optional (the ``bench``
extra); nothing here imports it unless asked to.

A producer first does one untimed enqueue (its pool, its waker, pgqueuer's connection), says
``ready``, waits for ``go`` on stdin, enqueues its share one at a time, and prints when it
started and ended, so that the parent times all producers over one common span: the rate is
all jobs over the span from the first start to the last end.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: pgqueuer's entrypoint for the bench's no-op job.
NOOP = "noop"
#: pgqueuer's entrypoint whose job prints when it started (start latency).
STAMP = "stamp"


def pgqueuer_available() -> bool:
    try:
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


# -- the producer and worker processes ---------------------------------------------------------


def _produce_pgsched(count: int) -> tuple[float, float]:
    from pgsched.bench import build_app

    queue = build_app().get_queue("drain")
    queue.enqueue("bench.noop")
    _ready()
    started = time.time()
    for _ in range(count):
        queue.enqueue("bench.noop")
    return started, time.time()


async def _produce_pgqueuer(count: int) -> tuple[float, float]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(os.environ["PGSCHED_DATABASE_URL"])
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue(NOOP, None)
    await asyncio.get_running_loop().run_in_executor(None, _ready)
    started = time.time()
    for _ in range(count):
        await queries.enqueue(NOOP, None)
    ended = time.time()
    await conn.close()
    return started, ended


def _ready() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


async def _pgqueuer_worker(concurrency: int) -> None:
    """A pgqueuer worker: no-op jobs, and stamp jobs that print their start time."""
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(os.environ["PGSCHED_DATABASE_URL"])
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint(NOOP)
    async def noop(job: Any) -> None:
        """Nothing."""

    @manager.entrypoint(STAMP)
    async def stamp(job: Any) -> None:
        print(f"started {job.payload.decode()} {time.time()!r}", flush=True)

    # The parent holds our stdin: when it goes away (even killed), so do we.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    print("ready", flush=True)
    # pgqueuer wants max_concurrent_tasks at least twice its batch size.
    await manager.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency)


def main(argv: list[str]) -> None:
    command, kind_or_n, *rest = argv
    if command == "produce":
        count = int(rest[0])
        if kind_or_n == "pgsched":
            started, ended = _produce_pgsched(count)
        else:
            started, ended = asyncio.run(_produce_pgqueuer(count))
        print(json.dumps({"started": started, "ended": ended}), flush=True)
    elif command == "pgqueuer-worker":
        asyncio.run(_pgqueuer_worker(int(kind_or_n)))
    else:
        raise SystemExit(f"unknown command {command!r}")


# -- the parent's side -------------------------------------------------------------------------


def run_producers(kind: str, processes: int, count: int, env: dict[str, str],
                  cwd: str) -> float:
    """Jobs per second of ``processes`` producer processes enqueueing ``count`` each."""
    procs = [subprocess.Popen(
        [sys.executable, "-m", "pgsched.bench_compare", "produce", kind, str(count)],
        env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        for proc in procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"a {kind} producer failed to start: "
                                   f"{(proc.stderr.read() if proc.stderr else '')[-2000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        spans = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"a {kind} producer failed: {err[-2000:]}")
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    span = max(s["ended"] for s in spans) - min(s["started"] for s in spans)
    return processes * count / span


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """Ask every worker process to stop (SIGTERM: it hands back what it runs), then kill
    any still running 15 s later."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


class Pgqueuer:
    """pgqueuer 1.x in the bench's throwaway schema, driven through its async API."""

    def __init__(self, url: str, schema: str, env: dict[str, str], cwd: str) -> None:
        self.url = url
        self.schema = schema
        # Its objects go into the throwaway schema; its NOTIFY channel is database-wide, so
        # a prefix keeps it apart from any other pgqueuer on this database.
        self.env = {**env, "PGQUEUER_SCHEMA": schema, "PGQUEUER_PREFIX": f"{schema}_"}
        self.cwd = cwd
        os.environ.update({k: self.env[k] for k in ("PGQUEUER_SCHEMA", "PGQUEUER_PREFIX")})
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Any] = []

    def _run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def _queries(self) -> tuple[Any, Any]:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(self.url)
        return conn, Queries(AsyncpgDriver(conn))

    def install(self) -> None:
        async def install() -> None:
            conn, queries = await self._queries()
            await queries.install(create_schema=False)
            await conn.close()
        self._run(install())

    def clear(self) -> None:
        async def clear() -> None:
            conn, queries = await self._queries()
            await queries.clear_queue()
            await queries.clear_statistics_log()
            await conn.close()
        self._run(clear())

    def single_enqueue(self, count: int) -> float:
        async def enqueue() -> float:
            conn, queries = await self._queries()
            await queries.enqueue(NOOP, None)
            started = time.perf_counter()
            for _ in range(count):
                await queries.enqueue(NOOP, None)
            elapsed = time.perf_counter() - started
            await conn.close()
            return count / elapsed
        rate = float(self._run(enqueue()))
        self.clear()
        return rate

    def start_workers(self, processes: int, concurrency: int) -> None:
        for _ in range(processes):
            # Its log goes to a file: a pipe nobody reads fills up and blocks the worker.
            log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop_workers)
            proc = subprocess.Popen(
                [sys.executable, "-m", "pgsched.bench_compare", "pgqueuer-worker",
                 str(concurrency)],
                env=self.env, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True)
            self.workers.append(proc)
            self.logs.append(log)
            if (proc.stdout.readline() if proc.stdout else "").strip() != "ready":
                self.check_workers()
        time.sleep(1.0)  # its LISTEN and first dequeue
        self.check_workers()

    def check_workers(self) -> None:
        for proc, log in zip(self.workers, self.logs, strict=True):
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"a pgqueuer worker exited ({proc.returncode}): "
                                   f"{log.read()[-2000:]}")

    def stop_workers(self) -> None:
        stop_processes(self.workers)
        for log in self.logs:
            log.close()
        self.workers, self.logs = [], []

    def drain(self, jobs: int) -> float:
        """Jobs per second from the batch's commit until the queue is empty (polled every
        10 ms on one connection: pgqueuer keeps no finish time in its queue table)."""
        async def drain() -> float:
            conn, queries = await self._queries()
            for chunk in range(0, jobs, 10_000):
                size = min(10_000, jobs - chunk)
                await queries.enqueue([NOOP] * size, [None] * size, [0] * size)
            committed = time.time()
            deadline = time.monotonic() + 600
            while sum(s.count for s in await queries.queue_size()) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgqueuer did not drain in 600 s")
                self.check_workers()
                await asyncio.sleep(0.01)
            ended = time.time()
            await conn.close()
            return jobs / (ended - committed)
        return float(self._run(drain()))

    def latency(self, samples: int) -> list[float]:
        """Enqueue-to-start, in ms, of stamp jobs onto its idle worker (the first one)."""
        reader = self.workers[0].stdout
        assert reader is not None

        async def measure() -> list[float]:
            conn, queries = await self._queries()
            result = []
            for index in range(samples):
                await asyncio.sleep(0.02)
                await queries.enqueue(STAMP, str(index).encode())
                committed = time.time()
                line = await asyncio.get_running_loop().run_in_executor(None, reader.readline)
                _, tag, at = line.split()
                if tag != str(index):
                    raise RuntimeError(f"pgqueuer ran stamp {tag} for {index}")
                result.append((float(at) - committed) * 1000)
            await conn.close()
            return result
        return list(self._run(measure()))


if __name__ == "__main__":
    main(sys.argv[1:])
