"""services/*/Dockerfile, frontend/Dockerfile (the patient's web app) and .dockerignore:
multi-stage builds from pinned images that run as a numeric non-root user, and a builder stage
that really builds: its COPY and `uv sync` steps are replayed here with the repository's uv, into
a temporary directory, and the resulting environment runs the image's command line (no Docker
engine needed)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import (
    ANY_ADDRESS,
    API_PORTS,
    JOBS,
    METRICS_PORT,
    REPO,
    ROLES,
    SERVICES,
    WEB,
    WEB_COMMANDS,
    WEB_DOCKERFILE,
    WEB_PORT,
    DockerIgnore,
    Stage,
    image_tag,
    is_pinned,
    parse_dockerfile,
)

pytestmark = pytest.mark.deploy

IMAGES = (*SERVICES, WEB)
"""Every image the repository builds: one per service, and the web app's."""


def _dockerfile(image: str) -> Path:
    return WEB_DOCKERFILE if image == WEB else REPO / "services" / image / "Dockerfile"


def _commands(image: str) -> frozenset[str]:
    return WEB_COMMANDS if image == WEB else ROLES[image] | JOBS[image]


def _stages(service: str) -> list[Stage]:
    return parse_dockerfile(_dockerfile(service).read_text())


def _final(service: str) -> Stage:
    return _stages(service)[-1]


def _json_or_shell(arguments: str) -> list[str]:
    import json

    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def _dockerignore() -> DockerIgnore:
    return DockerIgnore((REPO / ".dockerignore").read_text())


@pytest.mark.parametrize("service", IMAGES)
def test_multi_stage_from_pinned_images(service: str) -> None:
    stages = _stages(service)
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image in names:
            continue  # built on an earlier stage
        assert is_pinned(stage.image), f"FROM {stage.image} is not pinned to a version"
        repository, tag, _ = image_tag(stage.image)
        assert tag is None or "latest" not in tag, stage.image
        assert repository, stage.image
    # the runtime runs the virtual environment the builder made: the same Python image
    builder = next(
        s
        for s in stages
        if s.all("RUN") and "uv sync" in " ".join(i.arguments for i in s.all("RUN"))
    )
    assert builder.image == stages[-1].image, "the venv's interpreter must exist at runtime"
    assert builder.image.startswith("python:3.11"), "the workspace's Python (uv.lock)"
    uv_copies = [
        i
        for s in stages
        for i in s.all("COPY")
        if "/uv" in i.arguments and "--from=" in i.arguments
    ]
    assert uv_copies, "uv's binary comes from a pinned image"


@pytest.mark.parametrize("service", IMAGES)
def test_runtime_runs_as_a_numeric_non_root_user(service: str) -> None:
    final = _final(service)
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].arguments.split(":")[0]
    assert user.isdigit() and int(user) > 0, f"USER {users[-1].arguments}: numeric and not root"
    later = [i for i in final.instructions if i.line > users[-1].line]
    assert not any(i.keyword == "USER" for i in later)


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_has_a_healthcheck_and_runs_the_service(service: str) -> None:
    final = _final(service)
    (health,) = final.all("HEALTHCHECK")
    assert "CMD" in health.arguments
    env = " ".join(i.arguments for i in final.all("ENV"))
    default_url = (
        f"http://127.0.0.1:{API_PORTS[service]}/health"
        if service in API_PORTS
        else f"http://127.0.0.1:{METRICS_PORT}/metrics"
    )
    assert f"HEALTHCHECK_URL={default_url}" in env
    assert "HEALTHCHECK_URL" in health.arguments
    assert "REFERRALS_METRICS__HOST=0.0.0.0" in env
    assert f"REFERRALS_METRICS__PORT={METRICS_PORT}" in env
    (entrypoint,) = final.all("ENTRYPOINT")
    assert _json_or_shell(entrypoint.arguments)[-1] == f"referrals-{service}"
    (command,) = final.all("CMD")
    role = _json_or_shell(command.arguments)[0]
    assert role in ROLES[service]
    exposed = " ".join(i.arguments for i in final.all("EXPOSE")).split()
    assert str(METRICS_PORT) in exposed
    if service in API_PORTS:
        assert str(API_PORTS[service]) in exposed
        assert _json_or_shell(command.arguments) == [
            "api", "--host", ANY_ADDRESS, "--port", str(API_PORTS[service])
        ]  # fmt: skip


def test_web_runtime_serves_the_app_with_the_pinned_htmx() -> None:
    """The web app's image: `referrals-web serve` on its port, probed on /health, and htmx from
    the same locked npm set the local stack uses (deploy/local/node/web), never a CDN."""
    stages = _stages(WEB)
    final = stages[-1]
    (health,) = final.all("HEALTHCHECK")
    env = " ".join(i.arguments for i in final.all("ENV"))
    assert f"HEALTHCHECK_URL=http://127.0.0.1:{WEB_PORT}/health" in env
    assert "HEALTHCHECK_URL" in health.arguments
    (entrypoint,) = final.all("ENTRYPOINT")
    assert _json_or_shell(entrypoint.arguments)[-1] == f"referrals-{WEB}"
    (command,) = final.all("CMD")
    assert _json_or_shell(command.arguments) == [
        "serve", "--host", ANY_ADDRESS, "--port", str(WEB_PORT)
    ]  # fmt: skip
    assert str(WEB_PORT) in " ".join(i.arguments for i in final.all("EXPOSE")).split()
    vendor = next(s for s in stages if any("npm ci" in i.arguments for i in s.all("RUN")))
    assert vendor.name and is_pinned(vendor.image) and vendor.image.startswith("node:")
    copied = " ".join(i.arguments for i in vendor.all("COPY")).split()
    assert {
        "deploy/local/node/web/package.json",
        "deploy/local/node/web/package-lock.json",
    } <= set(copied), "the image's htmx is the locked one `make up` serves"
    (npm,) = [i.words() for i in vendor.all("RUN") if "npm ci" in i.arguments]
    assert "--ignore-scripts" in npm
    vendor_dir = next(
        w.split("=", 1)[1] for w in env.split() if w.startswith("REFERRALS_WEB_VENDOR_DIR=")
    )
    htmx = [
        i.words()
        for i in final.all("COPY")
        if f"--from={vendor.name}" in i.arguments and "htmx.min.js" in i.arguments
    ]
    assert htmx and htmx[0][-1] == f"{vendor_dir}/htmx.min.js", htmx


def test_translation_has_tesseract_with_every_language_pack() -> None:
    from devstack.install import OCR_LANGUAGES

    runs = " ".join(i.arguments for i in _final("translation").all("RUN"))
    words = set(runs.split())
    assert "tesseract-ocr" in words
    missing = {f"tesseract-ocr-{lang}" for lang in OCR_LANGUAGES} - words
    assert not missing, f"language packs missing from the runtime image: {sorted(missing)}"
    assert "--no-install-recommends" in words
    assert "/var/lib/apt/lists/*" in runs


@pytest.mark.parametrize("service", IMAGES)
def test_builder_syncs_the_locked_service_only(service: str) -> None:
    syncs = [
        shlex.split(i.arguments.split("uv sync", 1)[1])
        for s in _stages(service)
        for i in s.all("RUN")
        if "uv sync" in i.arguments
    ]
    assert syncs, "the builder runs uv sync"
    for flags in syncs:
        assert "--frozen" in flags, "install exactly what uv.lock says"
        assert "--no-dev" in flags
        assert flags[flags.index("--package") + 1] == f"referrals-{service}"
    assert "--no-editable" in syncs[-1], "the runtime gets installed wheels, not links to /src"


def test_dockerignore_sends_what_the_builds_need_and_nothing_else() -> None:
    ignore = _dockerignore()
    needed = ["pyproject.toml", "uv.lock", "libs/common/pyproject.toml"]
    for service in SERVICES:
        needed.append(f"services/{service}/pyproject.toml")
        needed += [
            str(p.relative_to(REPO))
            for p in (REPO / "services" / service / "src").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    needed += [
        str(p.relative_to(REPO))
        for tree in ("libs/common/src", "frontend/src")
        for p in (REPO / tree).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    needed += [
        "frontend/pyproject.toml",
        "deploy/local/node/web/package.json",
        "deploy/local/node/web/package-lock.json",
    ]
    left_out = [path for path in needed if not ignore.included(path)]
    assert not left_out, f".dockerignore leaves out files the images need: {left_out[:5]}"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".devstack/secrets.json",
        "tests/conftest.py",
        "bench/results/intake.json",
        "services/intake/src/referrals_intake/__pycache__/cli.cpython-311.pyc",
        "deploy/local/src/devstack/stack.py",
        "deploy/local/node/asyncapi/package.json",
        "tests/browser/conftest.py",
        "docs/screenshots/start-phone-uk.png",
    ):
        assert not ignore.included(path), f"{path} must not reach the build context"


def _copy_into_context(stage: Stage, context: Path, ignore: DockerIgnore) -> None:
    """The stage's COPY instructions from the build context (not from other stages), honouring
    .dockerignore, into `context` laid out as the stage's WORKDIR."""
    for instruction in stage.all("COPY"):
        if any(w.startswith("--from") for w in instruction.words()):
            continue
        *sources, destination = [w for w in instruction.words() if not w.startswith("--")]
        into_directory = destination.endswith("/") or destination in {".", "./"} or len(sources) > 1
        for source in sources:
            origin = REPO / source
            assert origin.exists(), f"COPY {source}: no such file in the repository"
            if origin.is_file():
                pairs = [
                    (origin, destination + "/" + origin.name if into_directory else destination)
                ]
            else:  # a directory's contents go into the destination directory
                pairs = [
                    (path, f"{destination}/{path.relative_to(origin)}")
                    for path in origin.rglob("*")
                    if path.is_file()
                ]
            for path, target in pairs:
                if not ignore.included(str(path.relative_to(REPO))):
                    continue
                (context / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, context / target)


@pytest.mark.parametrize("service", IMAGES)
def test_builder_stage_builds_the_service(service: str, tmp_path: Path) -> None:
    """Replay the builder: its COPYs (through .dockerignore) and its `uv sync` commands, with
    the repository's uv and this Python, then run the console script it installed."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    stages = _stages(service)
    builder = next(s for s in stages if any("uv sync" in i.arguments for i in s.all("RUN")))
    context = tmp_path / "src"
    context.mkdir()
    _copy_into_context(builder, context, _dockerignore())
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    for instruction in builder.all("ENV"):
        for word in instruction.words():
            key, _, value = word.partition("=")
            env[key] = value
    env.update(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON=sys.executable,
        UV_COMPILE_BYTECODE="0",  # the image compiles; here it only costs time
    )
    env.pop("UV_LINK_MODE", None)  # links from uv's cache are faster than the image's copies
    for instruction in builder.all("RUN"):
        command = instruction.arguments
        words = [w for w in shlex.split(command) if not w.startswith("--mount=")]
        assert words[0] == "uv", f"unexpected builder step: {command}"
        done = subprocess.run(
            [uv, *words[1:]], cwd=context, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"`{' '.join(words)}` failed:\n{done.stderr[-3000:]}"
    script = venv / "bin" / f"referrals-{service}"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for role in _commands(service):
        assert role in done.stdout, f"referrals-{service} --help does not list {role}"
    # installed as wheels: nothing in the environment points back into the source tree
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / f"referrals_{service}" / "cli.py").is_file()
    assert (site / "referrals_common").is_dir()
    links = [p for p in site.glob("*.pth") if str(context) in p.read_text()]
    assert not links, f"editable installs in the image's environment: {links}"
