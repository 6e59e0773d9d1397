"""The one Dockerfile (every service's image and the web app's, chosen by build arguments that
deploy/roles.yaml declares) and .dockerignore: multi-stage builds from pinned images that run as
a numeric non-root user, and a builder stage that really builds each image: its COPY and
`uv sync` steps are replayed here with the image's arguments and the repository's uv, into a
temporary directory, and the resulting environment runs the image's command line (no Docker
engine needed)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import render
from tests.deploy.support import (
    DOCKERFILE,
    JOBS,
    MANIFEST,
    METRICS_PORT,
    REPO,
    ROLES,
    SERVICES,
    WEB,
    WEB_COMMANDS,
    DockerIgnore,
    Stage,
    image_tag,
    is_pinned,
    parse_dockerfile,
)

pytestmark = pytest.mark.deploy

IMAGES = (*SERVICES, WEB)
"""Every image the repository builds: one per service, and the web app's."""
_ARG = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")


def _commands(image: str) -> frozenset[str]:
    return WEB_COMMANDS if image == WEB else ROLES[image] | JOBS[image]


def _stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _stage(name: str) -> Stage:
    return next(s for s in _stages() if s.name == name)


def _final() -> Stage:
    return _stages()[-1]


def _expand(text: str, args: dict[str, str]) -> str:
    """The build's `${ARG}` substitution, with `args` (the others are left as they are)."""
    return _ARG.sub(lambda m: args.get(m.group(1), m.group(0)), text)


def _declared_args() -> dict[str, str | None]:
    """Every ARG the Dockerfile declares (global or in a stage) → its default."""
    declared: dict[str, str | None] = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ARG "):
            name, _, default = line[4:].partition("=")
            declared.setdefault(name, default.strip('"') if default else None)
    return declared


def _json_or_shell(arguments: str) -> list[str]:
    import json

    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def _dockerignore() -> DockerIgnore:
    return DockerIgnore((REPO / ".dockerignore").read_text())


def test_one_dockerfile_builds_every_image() -> None:
    """No per-service copies are left: Compose builds every image from ./Dockerfile."""
    leftovers = [p for p in (REPO / "services").glob("*/Dockerfile")]
    leftovers += [p for p in (REPO / "frontend").glob("Dockerfile")]
    assert not leftovers, f"per-service Dockerfiles are back: {leftovers}"
    assert set(MANIFEST.services) == set(IMAGES)


def test_multi_stage_from_pinned_images() -> None:
    stages = _stages()
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image in names or _expand(stage.image, {"VENDOR": "none"}) in names:
            continue  # built on an earlier stage (the vendor stage is chosen by VENDOR)
        if stage.image == "scratch":
            continue  # the empty vendor stage of the services
        assert is_pinned(stage.image), f"FROM {stage.image} is not pinned to a version"
        repository, tag, _ = image_tag(stage.image)
        assert tag is None or "latest" not in tag, stage.image
        assert repository, stage.image
    # the runtime runs the virtual environment the builder made: the same Python image
    builder = _stage("builder")
    assert "uv sync" in " ".join(i.arguments for i in builder.all("RUN"))
    assert builder.image == stages[-1].image, "the venv's interpreter must exist at runtime"
    assert builder.image.startswith("python:3.11"), "the workspace's Python (uv.lock)"
    uv_copies = [
        i
        for s in stages
        for i in s.all("COPY")
        if "/uv" in i.arguments and "--from=" in i.arguments
    ]
    assert uv_copies, "uv's binary comes from a pinned image"
    assert {f"vendor-{v}" for v in ("none", "web")} <= names


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    final = _final()
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].arguments.split(":")[0]
    assert user.isdigit() and int(user) > 0, f"USER {users[-1].arguments}: numeric and not root"
    later = [i for i in final.instructions if i.line > users[-1].line]
    assert not any(i.keyword == "USER" for i in later)


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_is_built_with_the_manifests_arguments(image: str) -> None:
    """Compose passes each image the arguments `devstack render` derives from the manifest; the
    Dockerfile declares each of them, and they name the image's package, directory, ports and
    default health check."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    args = render.build_args(MANIFEST, image)
    builds = [
        spec["build"]
        for spec in compose.values()
        if spec.get("image", "").startswith(f"referrals-{image}:")
    ]
    assert builds, f"no Compose service builds referrals-{image}"
    for build in builds:
        assert build["dockerfile"] == "Dockerfile"
        assert build["args"] == args
    declared = _declared_args()
    assert set(args) <= set(declared), f"arguments the Dockerfile does not declare: {args}"
    assert (REPO / args["SOURCE"] / "pyproject.toml").is_file()
    spec = MANIFEST.services[image]
    ports = args["PORTS"].split()
    if spec.api_port:
        assert ports[0] == str(spec.api_port)
        assert args["HEALTHCHECK_URL"] == f"http://127.0.0.1:{spec.api_port}/health"
    else:
        assert args["HEALTHCHECK_URL"] == f"http://127.0.0.1:{METRICS_PORT}/metrics"
    assert (str(METRICS_PORT) in ports) == (not spec.app), "services serve metrics on :9100"
    assert args["VENDOR"] == ("web" if image == WEB else "none")


def test_runtime_has_a_healthcheck_and_runs_the_images_command() -> None:
    final = _final()
    (health,) = final.all("HEALTHCHECK")
    assert "CMD" in health.arguments
    assert "HEALTHCHECK_URL" in health.arguments
    env = " ".join(i.arguments for i in final.all("ENV"))
    assert "HEALTHCHECK_URL=${HEALTHCHECK_URL}" in env
    assert "REFERRALS_METRICS__HOST=0.0.0.0" in env
    assert f"REFERRALS_METRICS__PORT={METRICS_PORT}" in env
    (entrypoint,) = final.all("ENTRYPOINT")
    assert _json_or_shell(entrypoint.arguments) == ["/usr/bin/tini", "--", "referrals-service"]
    links = [i.words() for i in final.all("RUN") if "referrals-service" in i.arguments]
    assert links == [
        ["ln", "-s", "/app/.venv/bin/referrals-${SERVICE}", "/usr/local/bin/referrals-service"]
    ]
    assert " ".join(i.arguments for i in final.all("EXPOSE")) == "${PORTS}"
    runs = " ".join(i.arguments for i in final.all("RUN"))
    assert "tini ${SYSTEM_PACKAGES}" in runs
    assert "--no-install-recommends" in runs
    assert "/var/lib/apt/lists/*" in runs


def test_web_image_serves_the_pinned_htmx() -> None:
    """htmx comes from the same locked npm set the local stack uses (deploy/local/node/web),
    never a CDN, and only into the web app's image (the services' vendor stage is empty)."""
    vendor = _stage("vendor-web")
    assert is_pinned(vendor.image) and vendor.image.startswith("node:")
    copied = " ".join(i.arguments for i in vendor.all("COPY")).split()
    assert {
        "deploy/local/node/web/package.json",
        "deploy/local/node/web/package-lock.json",
    } <= set(copied), "the image's htmx is the locked one `make up` serves"
    (npm,) = [i.arguments for i in vendor.all("RUN") if "npm ci" in i.arguments]
    assert "--ignore-scripts" in npm.split()
    assert "htmx.min.js /out/htmx.min.js" in npm
    assert _stage("vendor-none").image == "scratch"
    assert _stage("vendor").image == "vendor-${VENDOR}"
    final = _final()
    env = " ".join(i.arguments for i in final.all("ENV"))
    assert "REFERRALS_WEB_VENDOR_DIR=/app/vendor" in env
    copies = [i.words() for i in final.all("COPY") if "--from=vendor" in i.arguments]
    assert copies == [["--from=vendor", "/out/", "/app/vendor/"]]


def test_translation_has_tesseract_with_every_language_pack() -> None:
    from devstack.install import OCR_LANGUAGES

    words = set(MANIFEST.services["translation"].system_packages)
    assert "tesseract-ocr" in words
    missing = {f"tesseract-ocr-{lang}" for lang in OCR_LANGUAGES} - words
    assert not missing, f"language packs missing from the runtime image: {sorted(missing)}"
    assert render.build_args(MANIFEST, "translation")["SYSTEM_PACKAGES"].split() == list(
        MANIFEST.services["translation"].system_packages
    )


def test_builder_syncs_the_locked_service_only() -> None:
    syncs = [
        shlex.split(i.arguments.split("uv sync", 1)[1])
        for s in _stages()
        for i in s.all("RUN")
        if "uv sync" in i.arguments
    ]
    assert syncs, "the builder runs uv sync"
    for flags in syncs:
        assert "--frozen" in flags, "install exactly what uv.lock says"
        assert "--no-dev" in flags
        assert flags[flags.index("--package") + 1] == "referrals-${SERVICE}"
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


def _copy_into_context(
    stage: Stage, context: Path, ignore: DockerIgnore, args: dict[str, str]
) -> None:
    """The stage's COPY instructions from the build context (not from other stages), honouring
    .dockerignore, into `context` laid out as the stage's WORKDIR."""
    for instruction in stage.all("COPY"):
        if any(w.startswith("--from") for w in instruction.words()):
            continue
        words = [_expand(w, args) for w in instruction.words() if not w.startswith("--")]
        *sources, destination = words
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
    args = render.build_args(MANIFEST, service)
    builder = _stage("builder")
    context = tmp_path / "src"
    context.mkdir()
    _copy_into_context(builder, context, _dockerignore(), args)
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
        command = _expand(instruction.arguments, args)
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
