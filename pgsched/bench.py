"""``pgsched bench``: what one client and one worker achieve on this database.

Everything runs in a throwaway schema that is dropped at the end, with the commit settings
the server already has (they are read and reported, never changed). The worker is a real
``pgsched worker`` subprocess: the numbers include its LISTEN wake-ups, its batched
finish-and-claim rounds and its durable commits, exactly as in production.

Statements and round trips are counted by a byte-level proxy between a second worker and the
server (``Proxy``): it counts the protocol messages that carry a statement (simple ``Query`` and
extended ``Execute``, BEGIN and COMMIT included). That works on any server, where
``pg_stat_statements`` is usually not loaded and ``pg_stat_database`` counts the transactions
of every client of the database, not of one worker.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

import pgsched
from pgsched.app import App
from pgsched.bench_compare import stop_processes
from pgsched.errors import PgschedError
from pgsched.settings import Settings, load_settings

BENCH_QUEUES = ("drain", "latency", "counted", "cpu", "express")

#: How long each CPU-bound job of the ``cpu`` queue computes: several of the interpreter's
#: switch intervals (5 ms), as real work would.
BURN_MS = 20.0

#: Where the latency beside CPU-bound jobs is measured: the worker processes of each
#: placement, by the queues each one serves.
CPU_PLACEMENTS: dict[str, tuple[str, ...]] = {
    "same_worker": ("cpu,express",),
    "own_worker": ("cpu", "express"),
}

#: How the bench tells its worker processes the fleet-wide ``concurrency`` of its ``limited``
#: queue: half of what the largest fleet could run (16 for four workers of concurrency 8), so
#: that the limit, not the fleet, is what bounds that queue's drain.
LIMIT_ENV = "PGSCHED_BENCH_LIMIT"

#: The reference machine pgsched's targets were set on: its bare ``pgbench`` one-row INSERT
#: rate, and the targets there. Machines differ several-fold in commit and round-trip cost
#: (this project's CI machines run the same INSERT at 1,100-5,100/s from one machine and
#: hour to the next), so the bench measures this machine's own ceiling in the same run and
#: scales the targets by it.
REFERENCE_CEILING = 6_800.0
TARGETS = {"single_enqueue_per_s": 4_000.0, "batch_enqueue_per_s": 80_000.0,
           "drain_per_s": 5_000.0}

#: How ``pgbench`` is pointed at the bench's database: libpq's environment, so that a password
#: never appears on a command line.
_LIBPQ_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
              "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
_app: App | None = None


def noop() -> None:
    """The job whose cost is pgsched's alone."""


def stamp() -> float:
    """Returns when it started, by the same wall clock the enqueuer reads."""
    return time.time()


def burn(ms: float) -> int:
    """A CPU-bound job: pure-Python arithmetic for ``ms`` milliseconds, holding the GIL the
    way such code does. Returns the iterations, so the work cannot be skipped."""
    end = time.perf_counter() + ms / 1000
    iterations = 0
    while time.perf_counter() < end:
        sum(range(200))
        iterations += 1
    return iterations


def latency_summary(samples: list[float]) -> dict[str, float]:
    """Median and 99th percentile of latency samples (ms), and how many there were."""
    if not samples:
        return {"p50": float("nan"), "p99": float("nan"), "samples": 0}
    cuts = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 \
        else [samples[0]] * 99
    return {"p50": statistics.median(samples), "p99": cuts[98], "samples": len(samples)}


def build_app(settings: Settings | None = None, limited: int | None = None) -> App:
    app = App("pgsched-bench", settings=settings)
    for name in BENCH_QUEUES:
        app.queue(name)
    app.queue("limited", concurrency=limited or int(os.environ.get(LIMIT_ENV, "16")))
    app.workflow(name="bench.noop")(noop)
    app.workflow(name="bench.stamp")(stamp)
    app.workflow(name="bench.burn")(burn)
    return app


def __getattr__(name: str) -> Any:
    """``pgsched worker pgsched.bench:app`` builds the app from the environment it runs in."""
    global _app
    if name == "app":
        if _app is None:
            _app = build_app()
        return _app
    raise AttributeError(name)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system and measurement: the median and the range over the rounds."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rounds:
        for system, measured in row.items():
            for key, value in measured.items():
                if value is not None:
                    values.setdefault(system, {}).setdefault(key, []).append(float(value))
    return {system: {key: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                     for key, v in measured.items()}
            for system, measured in values.items()}


class Peak:
    """The largest value a one-number query returns, read over and over on a connection of
    its own (a thread) while the block runs."""

    def __init__(self, url: str, query: str, params: dict[str, Any]) -> None:
        self.url, self.query, self.params = url, query, params
        self.most = 0
        self.snapshots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-peak", daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                (value,) = conn.execute(self.query, self.params).fetchone() or (0,)
                self.most = max(self.most, int(value))
                self.snapshots += 1
                self._stop.wait(0.002)


# -- the counting proxy ------------------------------------------------------------------------


@dataclass
class Counts:
    statements: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> int:
        with self.lock:
            return self.statements


class Proxy:
    """Forwards connections to the server and counts what clients send.

    A client message is a type byte and a length (the startup packet, which has no type
    byte, comes first). ``Q`` (simple query) and ``E`` (execute) each run one statement;
    BEGIN and COMMIT count too.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        socket_dir = dict(parse_qsl(parts.query)).get("host", parts.hostname or "127.0.0.1")
        port = parts.port or 5432
        # A URL may name a Unix socket directory (the embedded server's does) in ``host=``.
        self.upstream: str | tuple[str, int] = (
            f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else (socket_dir, port)
        )
        self.counts = Counts()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="bench-proxy").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if isinstance(self.upstream, str):
                server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.connect(self.upstream)
            else:
                server = socket.create_connection(self.upstream)
                server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        buffer = b""
        started = False
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                sink.close()
                return
            if not from_client:
                sink.sendall(data)
                continue
            buffer += data
            while True:
                if not started:
                    if len(buffer) < 4 or len(buffer) < struct.unpack("!I", buffer[:4])[0]:
                        break
                    buffer = buffer[struct.unpack("!I", buffer[:4])[0]:]
                    started = True
                    continue
                if len(buffer) < 5:
                    break
                kind = buffer[:1]
                length = struct.unpack("!I", buffer[1:5])[0]
                if len(buffer) < 1 + length:
                    break
                buffer = buffer[1 + length:]
                if kind in (b"Q", b"E"):
                    with self.counts.lock:
                        self.counts.statements += 1
            sink.sendall(data)

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "sslmode")]
        query = urlencode([*kept, ("sslmode", "disable"), ("gssencmode", "disable")])
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}", query=query))

    def close(self) -> None:
        self.closed = True
        self.sock.close()


# -- the benchmark -----------------------------------------------------------------------------


@dataclass
class BenchConfig:
    jobs: int = 10_000
    concurrency: int = 8
    latency_samples: int = 200
    idle_seconds: float = 10.0
    #: Producer processes for the scaling measurement (0: skip it).
    producers: int = 0
    #: Drain by 1, 2, 4, ... up to this many worker processes (0: skip it).
    workers: int = 0
    #: "pgqueuer": the same scaling measurements on pgqueuer, interleaved round by round.
    compare: str | None = None
    rounds: int = 1

    @property
    def producer_jobs(self) -> int:
        """Jobs per producer process: each runs for a second or more at typical rates."""
        return min(self.jobs, 2_000)

    @property
    def scaling(self) -> bool:
        return bool(self.producers or self.workers or self.compare)

#: The directory that holds the imported ``pgsched`` package (site-packages, or a source tree).
PACKAGE_HOME = str(Path(pgsched.__file__).resolve().parent.parent)


class Bench:
    def __init__(self, database_url: str | None, config: BenchConfig) -> None:
        self.config = config
        self.schema = f"pgsched_bench_{uuid.uuid4().hex[:10]}"
        self.settings = load_settings(database_url=database_url, PGSCHED_SCHEMA=self.schema)
        self.limited = max(1, config.workers * config.concurrency // 2)
        self.app = build_app(self.settings, self.limited)
        self.workers: list[subprocess.Popen] = []
        #: Extra environment for the worker subprocesses (the soak turns on /metrics).
        self.worker_env: dict[str, str] = {LIMIT_ENV: str(self.limited)}

    @property
    def url(self) -> str:
        return self.app.db.url

    def _env(self, url: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PGSCHED_") or key in ("PGSCHED_LOG_LEVEL",)}
        env.update({"PGSCHED_DATABASE_URL": url, "PGSCHED_SCHEMA": self.schema,
                    "PGSCHED_LOG_LEVEL": "WARNING"})
        env.update(self.worker_env)
        return env

    def _worker(self, url: str, queues: str, concurrency: int) -> subprocess.Popen:
        # `python -m` puts its working directory first on sys.path; started in the caller's
        # directory, a `pgsched/` folder there (a clone's parent) would shadow the package.
        # Starting in the folder that holds the package this process runs makes the worker
        # import this very pgsched.
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "worker", "pgsched.bench:app", "--queues", queues,
             "--concurrency", str(concurrency)],
            env=self._env(url), cwd=PACKAGE_HOME, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.workers.append(proc)
        return proc

    def _scalar(self, query: str, params: dict[str, Any] | None = None) -> Any:
        with self.app.db.connection() as conn:
            row = conn.execute(query, params).fetchone()
        return next(iter(row.values())) if row else None

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str,
              interval: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for proc in self.workers:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise PgschedError(f"a bench worker exited ({proc.returncode}): {err[-2000:]}")
            if time.monotonic() > deadline:
                raise PgschedError(f"bench timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    def _unfinished(self, queue: str) -> int:
        return int(self._scalar(self.app.db.sql("bench_count"), {"queue": queue}))

    def _running(self, queue: str) -> int:
        return int(self._scalar(self.app.db.sql("bench_running"), {"queue": queue}))

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            for proc in self.workers:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            self.app.close()
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(self.app.db.sql("bench_drop"))

    def _run(self) -> dict[str, Any]:
        from pgsched.bench_compare import pgqueuer_available

        cfg = self.config
        if cfg.compare == "pgqueuer" and not pgqueuer_available():
            raise PgschedError("--compare pgqueuer needs pgqueuer and asyncpg: "
                               "pip install 'pgsched[bench]'")
        self.app.migrate()
        with self.app.db.connection() as conn:
            server = conn.execute(self.app.db.sql("bench_server")).fetchone()
        result: dict[str, Any] = {"server": server, "schema": self.schema, "jobs": cfg.jobs,
                                  "concurrency": cfg.concurrency}
        # The ceiling is measured on both sides of the single enqueues, the measurement it
        # bounds most tightly, so that drift in the machine's speed shows and averages out.
        before = self._ceiling()
        result["single_enqueue_per_s"] = self._single_enqueue()
        after = self._ceiling()
        result["ceiling"] = self._ceiling_summary(before, after)
        result["batch_enqueue_per_s"] = self._batch_enqueue()
        self._worker(self.url, "drain,latency", cfg.concurrency)
        self._wait(lambda: self._workers() >= 1, 60, "the worker to register", 0.05)
        result["drain_per_s"] = self._drain("drain", cfg.jobs)
        result["latency_ms"] = self._latency()
        result["latency_under_load_ms"] = self._latency_under_load()
        result.update(self._counted())
        result["latency_beside_cpu_ms"] = self._latency_beside_cpu()
        result["cpu_job_ms"] = BURN_MS
        if cfg.scaling:
            result["scaling"] = self._scaling()
        ceiling = result["ceiling"]["per_s"]
        result["versus_ceiling"] = {key: result[key] / ceiling for key in TARGETS}
        result["scaled_targets"] = {key: target * ceiling / REFERENCE_CEILING
                                    for key, target in TARGETS.items()}
        return result

    def _ceiling(self) -> dict[str, float | None]:
        """This machine's rate of one-row INSERTs, one transaction each, from one client:
        through psycopg as pgsched itself connects, and through ``pgbench`` (the yardstick
        the targets were set with) when it is installed."""
        insert = self.app.db.sql("bench_ceiling_insert")
        with self.app.db.connection(autocommit=True) as conn:
            conn.execute(self.app.db.sql("bench_ceiling_table"))
            count = min(self.config.jobs, 2000)
            started = time.perf_counter()
            for _ in range(count):
                conn.execute(insert, prepare=True)
            driver = count / (time.perf_counter() - started)
        return {"psycopg": driver, "pgbench": self._pgbench(insert)}

    def _pgbench(self, statement: str, clients: int = 1, *, prepared: bool = False
                 ) -> float | None:
        binary = shutil.which("pgbench")
        if binary is None:
            return None
        env = dict(os.environ)
        env.update({_LIBPQ_ENV[key]: str(value) for key, value in conninfo_to_dict(self.url).items()
                    if key in _LIBPQ_ENV and value is not None})
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write(statement + ";\n")
            script.flush()
            proc = subprocess.run([binary, "-n", "-c", str(clients), "-j", str(clients),
                                   "-M", "prepared" if prepared else "simple",
                                   "-T", "3", "-f", script.name],
                                  env=env, capture_output=True, text=True, timeout=60)
        match = re.search(r"tps = ([0-9.]+)", proc.stdout)
        return float(match.group(1)) if proc.returncode == 0 and match else None

    @staticmethod
    def _ceiling_summary(before: dict[str, float | None],
                         after: dict[str, float | None]) -> dict[str, Any]:
        """pgbench's rate when both samples have it, else psycopg's: the mean of the two."""
        tool = "pgbench" if before["pgbench"] and after["pgbench"] else "psycopg"
        samples = [float(before[tool] or 0), float(after[tool] or 0)]
        return {"tool": tool, "per_s": statistics.mean(samples), "samples": samples,
                "psycopg_per_s": statistics.mean([float(before["psycopg"] or 0),
                                                  float(after["psycopg"] or 0)])}

    def _workers(self) -> int:
        return int(self._scalar(self.app.db.sql("bench_workers")))

    def _single_enqueue(self) -> float:
        queue = self.app.get_queue("drain")
        count = min(self.config.jobs, 5000)
        queue.enqueue("bench.noop")  # opens the pool and migrates outside the timing
        started = time.perf_counter()
        for _ in range(count):
            queue.enqueue("bench.noop")
        elapsed = time.perf_counter() - started
        self._clear()
        return count / elapsed

    def _batch_enqueue(self) -> float:
        queue = self.app.get_queue("drain")
        items = [("bench.noop", (), {})] * self.config.jobs
        started = time.perf_counter()
        for chunk in range(0, len(items), 10_000):
            queue.enqueue_many(items[chunk:chunk + 10_000])
        elapsed = time.perf_counter() - started
        self._clear()
        return len(items) / elapsed

    def _clear(self) -> None:
        with self.app.db.connection() as conn:
            conn.execute(self.app.db.sql("bench_clear"))

    def _drain(self, queue_name: str, jobs: int) -> float:
        queue = self.app.get_queue(queue_name)
        items = [("bench.noop", (), {})] * jobs
        for chunk in range(0, jobs, 10_000):
            queue.enqueue_many(items[chunk:chunk + 10_000])
        committed = time.time()
        # The rate comes from the last finish time, not from when this loop notices: the
        # loop only needs to be cheap (an index read, four times a second).
        self._wait(lambda: self._unfinished(queue_name) == 0, 600, f"{jobs} jobs to finish",
                   0.25)
        last = self._scalar(self.app.db.sql("bench_last_finish"), {"queue": queue_name})
        return jobs / max(1e-9, last.timestamp() - committed)

    def _latency(self) -> dict[str, float]:
        queue = self.app.get_queue("latency")
        samples: list[float] = []
        for _ in range(self.config.latency_samples):
            time.sleep(0.02)  # the worker is idle again, waiting on its LISTEN connection
            handle = queue.enqueue("bench.stamp")
            committed = time.time()
            started = handle.result(timeout=30, poll=0.005)
            samples.append((started - committed) * 1000)
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return {"p50": statistics.median(samples), "p95": cuts[94], "p99": cuts[98],
                "max": max(samples)}

    def _latency_under_load(self) -> dict[str, float]:
        """Enqueue-to-start on the idle ``latency`` queue while the same worker drains a
        backlog of ``jobs`` no-op runs on ``drain``: only samples taken while the backlog
        lasted count."""
        backlog = self.app.get_queue("drain")
        items = [("bench.noop", (), {})] * self.config.jobs
        for chunk in range(0, len(items), 10_000):
            backlog.enqueue_many(items[chunk:chunk + 10_000])
        queue = self.app.get_queue("latency")
        samples: list[float] = []
        while len(samples) < self.config.latency_samples:
            time.sleep(0.005)
            handle = queue.enqueue("bench.stamp")
            committed = time.time()
            started = handle.result(timeout=30, poll=0.002)
            if self._unfinished("drain") == 0:
                break
            samples.append((started - committed) * 1000)
        self._wait(lambda: self._unfinished("drain") == 0, 600, "the backlog to drain", 0.1)
        return latency_summary(samples)

    def _latency_beside_cpu(self) -> dict[str, dict[str, float]]:
        """Enqueue-to-start of no-op jobs on the idle ``express`` queue while the ``cpu``
        queue keeps ``concurrency`` CPU-bound jobs running, with ``express`` served by the
        same worker process as ``cpu``, and by a worker process of its own.

        A worker runs its jobs in threads of one process, and pure-Python CPU work holds the
        GIL that the worker's claim loop, its LISTEN thread and every other job need too: a
        light job waits for it at each of those steps, up to several switch intervals each.
        On a worker of its own the light queue shares only the machine's cores. This is the
        measurement behind the README's advice to give latency-sensitive queues their own
        workers. (A shorter switch interval in the worker was tried and not adopted: at 1 ms
        it halved that tail but cost CPU-bound jobs a third of their throughput.)"""
        self._stop_workers()
        found: dict[str, dict[str, float]] = {}
        for placement, fleet in CPU_PLACEMENTS.items():
            for queues in fleet:
                self._worker(self.url, queues, self.config.concurrency)
            self._wait(lambda n=len(fleet): self._workers() >= n, 60,
                       f"{len(fleet)} worker(s)", 0.05)
            try:
                found[placement] = latency_summary(self._starts_beside_cpu())
            finally:
                self._stop_workers()
                self._clear()
        return found

    def _starts_beside_cpu(self) -> list[float]:
        """Start ``latency_samples`` light jobs one after another (each once the previous one
        has started) while the CPU-bound backlog never runs dry: it is topped up before it
        could. Returns each one's enqueue-to-start in ms."""
        concurrency = self.config.concurrency
        cpu, express = self.app.get_queue("cpu"), self.app.get_queue("express")
        backlog = [("bench.burn", (BURN_MS,), {})] * (4 * concurrency)
        cpu.enqueue_many(backlog)
        self._wait(lambda: self._running("cpu") >= concurrency, 60,
                   f"{concurrency} CPU-bound jobs to run", 0.01)
        samples: list[float] = []
        while len(samples) < self.config.latency_samples:
            if self._unfinished("cpu") < 2 * concurrency:
                cpu.enqueue_many(backlog)
            handle = express.enqueue("bench.stamp")
            committed = time.time()
            started = handle.result(timeout=60, poll=0.002)
            samples.append((started - committed) * 1000)
        return samples

    # -- scaling: producer and worker processes, and pgqueuer beside ------------------------

    def _scaling(self) -> dict[str, Any]:
        """Round by round, pgsched then pgqueuer (the order swapped every round, so neither
        always runs on a warmer machine): producers 1 and N with ``pgbench -c 1`` and
        ``-c N`` as ceilings, drain by 1, 2, 4... worker processes, and pgqueuer's single
        enqueue and idle start latency."""
        from pgsched.bench_compare import Pgqueuer

        cfg = self.config
        other = None
        if cfg.compare == "pgqueuer":
            other = Pgqueuer(self.url, self.schema, self._env(self.url), PACKAGE_HOME)
            other.install()
        self._stop_workers()
        rounds: list[dict[str, Any]] = []
        for number in range(cfg.rounds):
            row: dict[str, Any] = {"ceiling": self._scaling_ceiling()}
            sides = [("pgsched", self._pgsched_round), ("pgqueuer", other)]
            if number % 2:
                sides.reverse()
            for name, side in sides:
                if side is None:
                    continue
                row[name] = side() if name == "pgsched" else self._pgqueuer_round(side)
            rounds.append(row)
        return {"rounds": rounds, "producers": cfg.producers, "workers": self._fleet_sizes(),
                "producer_jobs": cfg.producer_jobs, "compare": cfg.compare,
                "summary": summarize(rounds)}

    def _fleet_sizes(self) -> list[int]:
        sizes, size = [], 1
        while size <= self.config.workers:
            sizes.append(size)
            size *= 2
        if self.config.workers and sizes[-1] != self.config.workers:
            sizes.append(self.config.workers)
        return sizes

    def _scaling_ceiling(self) -> dict[str, float | None]:
        """``pgbench`` running the bare one-row INSERT, and running pgsched's own enqueue
        statement prepared, as pgsched sends it (what a producer's Python adds is the gap
        between that and the producer), from 1 client and from ``--producers``."""
        insert = self.app.db.sql("bench_ceiling_insert")
        enqueue = self._enqueue_statement()
        clients = [1, self.config.producers] if self.config.producers else [1]
        ceiling: dict[str, float | None] = {}
        for n in clients:
            ceiling[f"pgbench_c{n}"] = self._pgbench(insert, n)
            ceiling[f"pgbench_enqueue_c{n}"] = self._pgbench(enqueue, n, prepared=True)
        self._clear()
        return ceiling

    def _enqueue_statement(self) -> str:
        """The statement ``enqueue`` sends for a no-op run, its parameters written in as
        literals, each execution with a fresh id: a script ``pgbench`` can run."""
        params = self.app.get_queue("drain")._enqueue_params("bench.noop", (), {})
        with psycopg.connect(self.url) as conn:
            text = psycopg.ClientCursor(conn).mogrify(self.app.db.sql("enqueue_insert"), params)
        return text.replace(f"'{params['id']}'", "gen_random_uuid()::text")

    def _stop_workers(self) -> None:
        stop_processes(self.workers)
        self.workers = []
        with self.app.db.connection() as conn:
            conn.execute(self.app.db.sql("bench_forget_workers"))

    def _pgsched_round(self) -> dict[str, Any]:
        from pgsched.bench_compare import run_producers

        cfg = self.config
        out: dict[str, Any] = {}
        env = self._env(self.url)
        if cfg.producers:
            out["producers_1_per_s"] = run_producers("pgsched", 1, cfg.producer_jobs, env,
                                                     PACKAGE_HOME)
            self._clear()
            out[f"producers_{cfg.producers}_per_s"] = run_producers(
                "pgsched", cfg.producers, cfg.producer_jobs, env, PACKAGE_HOME)
            self._clear()
        for size in self._fleet_sizes():
            for _ in range(size):
                self._worker(self.url, "drain", cfg.concurrency)
            self._wait(lambda n=size: self._workers() >= n, 60, f"{size} worker(s)", 0.05)
            out[f"drain_{size}_workers_per_s"] = self._drain("drain", cfg.jobs)
            self._stop_workers()
            self._clear()
        if cfg.workers > 1:
            out.update(self._limited_drain(cfg.workers))
        if cfg.compare:
            out["single_enqueue_per_s"] = self._single_enqueue()
            self._worker(self.url, "drain,latency", cfg.concurrency)
            self._wait(lambda: self._workers() >= 1, 60, "the worker to register", 0.05)
            latency = self._latency()
            out["start_p50_ms"], out["start_p99_ms"] = latency["p50"], latency["p99"]
            self._stop_workers()
            self._clear()
        return out

    def _limited_drain(self, size: int) -> dict[str, Any]:
        """Drain ``--jobs`` no-op runs of the ``limited`` queue (fleet-wide concurrency half
        of the fleet's) by ``size`` workers: the rate, to set beside the unlimited queue's,
        and the most runs RUNNING in any snapshot taken meanwhile, which must not exceed the
        limit. Snapshots, not the runs' start and finish times: those come from several
        processes' clocks, which can put a slot's hand-off between two workers in the wrong
        order."""
        for _ in range(size):
            self._worker(self.url, "limited", self.config.concurrency)
        self._wait(lambda: self._workers() >= size, 60, f"{size} worker(s)", 0.05)
        with Peak(self.url, self.app.db.sql("bench_running"), {"queue": "limited"}) as peak:
            rate = self._drain("limited", self.config.jobs)
        self._stop_workers()
        self._clear()
        return {f"drain_{size}_workers_limited_per_s": rate, "limited_max_running": peak.most,
                "limited_snapshots": peak.snapshots, "limited_concurrency": self.limited}

    def _pgqueuer_round(self, other: Any) -> dict[str, Any]:
        from pgsched.bench_compare import run_producers

        cfg = self.config
        out: dict[str, Any] = {}
        if cfg.producers:
            out["producers_1_per_s"] = run_producers("pgqueuer", 1, cfg.producer_jobs,
                                                     other.env, PACKAGE_HOME)
            other.clear()
            out[f"producers_{cfg.producers}_per_s"] = run_producers(
                "pgqueuer", cfg.producers, cfg.producer_jobs, other.env, PACKAGE_HOME)
            other.clear()
        for size in self._fleet_sizes():
            other.start_workers(size, cfg.concurrency)
            try:
                out[f"drain_{size}_workers_per_s"] = other.drain(cfg.jobs)
            finally:
                other.stop_workers()
            other.clear()
        out["single_enqueue_per_s"] = other.single_enqueue(min(cfg.jobs, 5000))
        other.start_workers(1, cfg.concurrency)
        try:
            samples = other.latency(cfg.latency_samples)
        finally:
            other.stop_workers()
        other.clear()
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        out["start_p50_ms"], out["start_p99_ms"] = statistics.median(samples), cuts[98]
        return out

    def _counted(self) -> dict[str, Any]:
        """Idle statements per second, then statements per drained job, of a
        second worker whose every connection goes through the counting proxy."""
        proxy = Proxy(self.url)
        try:
            self._worker(proxy.url(self.url), "counted", self.config.concurrency)
            self._wait(lambda: self._workers() >= 2, 60, "the counted worker to register", 0.05)
            time.sleep(2.0)  # let start-up (migrate, declare, first poll) pass
            before = proxy.counts.snapshot()
            time.sleep(self.config.idle_seconds)
            after = proxy.counts.snapshot()
            idle = (after - before) / self.config.idle_seconds
            jobs = min(self.config.jobs, 2000)
            before = proxy.counts.snapshot()
            self._drain("counted", jobs)
            after = proxy.counts.snapshot()
        finally:
            proxy.close()
        return {
            "idle_statements_per_s": idle,
            "idle_seconds": self.config.idle_seconds,
            "statements_per_job": (after - before) / jobs,
        }

