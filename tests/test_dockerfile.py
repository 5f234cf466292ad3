"""Static checks of the Dockerfile (no docker engine needed).

The Dockerfile is parsed into stages and instructions, then checked against the
project metadata (pyproject.toml) and the Helm chart's defaults so the image
the chart pulls by default is the image this Dockerfile builds.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_DIR = ROOT / "helm" / "pgsched"


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    value: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        try:
            parsed = json.loads(self.value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Parse into (global ARG defaults, stages). Handles comments, parser
    directives, backslash continuations and --flags."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, val = flag[2:].partition("=")
            flags[name] = val
            rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(dockerfile) -> Stage:
    return dockerfile[1][-1]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def chart_meta() -> dict:
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())


@pytest.fixture(scope="module")
def chart_values() -> dict:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def stage_args(stage: Stage) -> dict[str, str]:
    out = {}
    for arg in stage.all("ARG"):
        key, _, default = arg.value.partition("=")
        out[key] = default
    return out


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def test_parser_handles_continuations_and_flags():
    text = (
        "# syntax=docker/dockerfile:1\nARG V=1\nFROM python:3.11-slim AS build\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n  # a comment\n  pip install x\n"
        "FROM python:3.11-slim\nUSER 10001:10001\n"
    )
    args, stages = parse_dockerfile(text)
    assert args == {"V": "1"}
    assert [s.name for s in stages] == ["build", None]
    run = stages[0].last("RUN")
    assert run.flags == {"mount": "type=cache,target=/root/.cache"}
    assert run.value.split() == ["pip", "install", "x"]


def test_multi_stage_wheel_build(dockerfile):
    _, stages = dockerfile
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    build = stages[0]
    assert build.name, "the build stage must be named"
    runs = " ".join(r.value for r in build.all("RUN"))
    assert re.search(r"\bpip wheel\b.*\s\.(\s|$)", runs), "build stage must `pip wheel .`"


def test_final_stage_is_python_311_slim(final):
    assert final.base == "python:3.11-slim"
    assert final.name is None or final.name not in ("build",)


def test_final_stage_runs_as_non_root_numeric_user(final, chart_values):
    user = final.last("USER")
    assert user is not None, "final stage has no USER"
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit(), f"USER must be numeric so runAsNonRoot can verify it: {user.value}"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The chart's securityContext runs as the same uid.
    assert chart_values["securityContext"]["runAsUser"] == int(uid)
    assert chart_values["podSecurityContext"]["runAsUser"] == int(uid)
    # USER comes after every RUN, so nothing later runs as root by accident.
    order = [i.keyword for i in final.instructions]
    assert order.index("USER") > max(i for i, k in enumerate(order) if k == "RUN")


def test_entrypoint_is_the_pgsched_console_script(final, pyproject):
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form() == ["pgsched"]
    assert "pgsched" in pyproject["project"]["scripts"]


def test_default_cmd_runs_the_quickstart_the_image_ships(final, chart_values):
    cmd = final.last("CMD")
    assert cmd is not None and cmd.exec_form() == ["worker", "examples/quickstart.py"]
    copies = [shlex.split(c.value) for c in final.all("COPY") if "from" not in c.flags]
    assert any(src == "examples" for *srcs, _ in copies for src in srcs), (
        "final stage must COPY examples/"
    )
    # The chart's default app is the one the image runs by default.
    assert chart_values["app"] == cmd.exec_form()[1]


def test_pgsched_is_installed_offline_from_built_wheels(final, dockerfile):
    _, stages = dockerfile
    build_names = {s.name for s in stages[:-1]}
    installs = [r for r in final.all("RUN") if "pip install" in r.value]
    assert installs, "final stage must pip install the wheel"
    text = " ".join(r.value for r in installs)
    assert "--no-index" in text and "pgsched" in text
    # The wheels come from a build stage (bind mount or COPY --from).
    from_build = [
        r for r in installs if any(f"from={n}" in v for v in r.flags.values() for n in build_names)
    ]
    from_build += [c for c in final.all("COPY") if c.flags.get("from") in build_names]
    assert from_build


def test_exposed_port_is_the_chart_health_port(final, chart_values):
    exposed = [p.split("/")[0] for e in final.all("EXPOSE") for p in e.value.split()]
    assert exposed == [str(chart_values["worker"]["healthPort"])]
    assert chart_values["metrics"]["service"]["port"] == chart_values["worker"]["healthPort"]


def test_health_server_answers_on_the_container_address(final):
    """pgsched binds 127.0.0.1 by default, which a port mapping or a probe cannot reach."""
    env = " ".join(e.value for e in final.all("ENV"))
    assert re.search(r"\bPGSCHED_HEALTH_HOST=0\.0\.0\.0\b", env)


def test_python_unbuffered(final):
    env = " ".join(e.value for e in final.all("ENV"))
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)


def test_chart_default_image_is_what_this_dockerfile_builds(
    final, pyproject, chart_meta, chart_values
):
    version = pyproject["project"]["version"]
    # The chart's default tag is its appVersion, i.e. the package version.
    assert chart_values["image"]["tag"] == ""
    assert str(chart_meta["appVersion"]) == version
    assert chart_values["image"]["repository"] == "ghcr.io/pgsched/pgsched"
    # The image's own labels agree.
    labels = " ".join(label.value for label in final.all("LABEL"))
    labels = expand(labels, stage_args(final))
    assert f'org.opencontainers.image.version="{version}"' in labels
    title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', labels).group(1)
    assert title == pyproject["project"]["name"]
    assert chart_values["image"]["repository"].rsplit("/", 1)[1] == title


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests"} <= ignored
    # What the build needs must not be ignored.
    assert not {"pgsched", "examples", "pyproject.toml", "README.md"} & ignored
