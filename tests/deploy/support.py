"""What the deployment checks share: the platform's processes, and small readers for the files
under test (Compose variable interpolation, Dockerfiles, .dockerignore)."""

from __future__ import annotations

import importlib
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import typer.main

from devstack import roles

REPO = Path(__file__).resolve().parents[2]

# The platform's processes, from the one manifest that declares them (deploy/roles.yaml): the
# checks below hold the Compose and Kubernetes files, the Dockerfile and the CLIs to it.
MANIFEST = roles.load()
SERVICES = tuple(MANIFEST.platform())
# Every long-running process of every service: each is its own container / Deployment.
ROLES: dict[str, frozenset[str]] = {s: frozenset(r) for s, r in MANIFEST.roles().items()}
# One-off processes: a migration per service, and partners' registry seed.
JOBS: dict[str, frozenset[str]] = {s: frozenset(j) for s, j in MANIFEST.jobs().items()}
API_PORTS = MANIFEST.api_ports()
# The patient's web app (frontend/): one image for its two commands, a database of its own, the
# public APIs as its only way into the platform.
WEB = "web"
WEB_PORT = MANIFEST.services[WEB].api_port
WEB_COMMANDS = frozenset({*MANIFEST.services[WEB].roles, *MANIFEST.services[WEB].jobs})
DOCKERFILE = REPO / "Dockerfile"
METRICS_PORT = 9100
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - containers listen on every interface of their own
TMP = "/tmp"  # noqa: S108 - the one writable directory of a read-only container


@cache
def cli_commands(service: str) -> frozenset[str]:
    """The commands `referrals-<service>` (or `referrals-web`) really has (its Typer app)."""
    module = importlib.import_module(f"referrals_{service}.cli")
    group = typer.main.get_command(module.app)
    return frozenset(group.commands)  # type: ignore[attr-defined]


@cache
def subscribed_topics(service: str) -> frozenset[str]:
    """The topics the service's consumer process subscribes to, from its code."""
    module = importlib.import_module(f"referrals_{service}.consumers")
    return frozenset(module.SUBSCRIBED_TOPICS)


def platform_topics() -> frozenset[str]:
    from referrals_common.contracts.topics import PLATFORM_TOPICS

    return frozenset(PLATFORM_TOPICS)


# ---- Compose interpolation ----------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, with defaults that may
    hold braces (a JSON document); `${VAR:?err}` must be set. Unset variables become ''."""
    env = env or {}
    out: list[str] = []
    pos = 0
    while (m := _VARIABLE.search(value, pos)) is not None:
        out.append(value[pos : m.start()])
        if m.group(0) == "$$":
            out.append("$")
            pos = m.end()
            continue
        name, op = m.group("name"), m.group("op")
        depth, i = 1, m.end()
        while depth:  # find the closing brace, skipping nested ones
            if i >= len(value):
                raise ValueError(f"unclosed ${{ in {value!r}")
            depth += {"{": 1, "}": -1}.get(value[i], 0)
            i += 1
        argument = value[m.end() : i - 1]
        current = env.get(name)
        if op in (":-", "-"):
            use_default = current is None or (op == ":-" and current == "")
            out.append(interpolate(argument, env) if use_default else current or "")
        elif op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise ValueError(f"${{{name}}} is required: {argument}")
            out.append(current)
        else:
            out.append(current or "")
        pos = i
    out.append(value[pos:])
    return "".join(out)


def uses_variable_without_default(value: str) -> list[str]:
    """Names used as plain `${VAR}` (no default): `docker compose config` warns, and the value is
    empty when the variable is unset."""
    return [
        m.group("name") for m in _VARIABLE.finditer(value) if m.group("name") and not m.group("op")
    ]


# ---- Dockerfiles ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments and blank lines dropped."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by BuildKit
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        raise ValueError("the Dockerfile ends inside a continued line")
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            if len(words) not in (1, 3):
                raise ValueError(f"line {number}: cannot read FROM {arguments!r}")
            stages.append(Stage(words[0], name))
            continue
        if not stages:
            if keyword == "ARG":
                continue
            raise ValueError(f"line {number}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, arguments.strip(), number))
    return stages


def image_tag(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag, digest
    return image, None, digest


def is_pinned(image: str) -> bool:
    """A tag that names a version (it holds a digit and is not `latest`), or a digest."""
    _, tag, digest = image_tag(image)
    if digest:
        return True
    return tag is not None and tag != "latest" and any(c.isdigit() for c in tag)


# ---- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out)


class DockerIgnore:
    """The rules of a .dockerignore: the last pattern that matches a path (or one of its parent
    directories) decides; `!` patterns re-include."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line[1:].strip() if negated else line
            pattern = pattern.strip("/")
            self.rules.append((negated, _pattern_regex(pattern)))

    def included(self, relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, rx in self.rules:
            if any(rx.fullmatch(c) for c in candidates):
                excluded = not negated
        return not excluded
