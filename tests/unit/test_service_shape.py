"""Every service has the same shape (issue 26).

The modules each of the five services has, in `services/<service>/src/referrals_<service>/`:

- `config.py` (settings), `models.py` (tables), `migrations/` (alembic, with `versions/`),
- `repository.py` (the queries, on a session its caller gives: no commit inside),
- `service.py` (the use cases), `consumers.py` (event handlers),
- `bootstrap.py` (the wiring: the `Runtime` and `build_runtime`), `main.py` (app and processes),
- and, for the services with an HTTP API (intake, records, partners) only, `api/`, whose
  `api/deps.py` binds the shared edge (`referrals_common.edge.deps`).

And how they may depend on each other: no module under `api/` imports its service's `main`
(routes get the runtime from the request), and no service imports another service (they talk
through events and contracts in libs/common). The modules are read with `ast`, never imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "records", "partners", "notifications", "translation")
WITH_API = frozenset({"intake", "records", "partners"})

MODULES = (
    "config.py",
    "models.py",
    "repository.py",
    "service.py",
    "consumers.py",
    "bootstrap.py",
    "main.py",
)
API_MODULES = ("api/__init__.py", "api/deps.py")
EDGE_DEPS = "referrals_common.edge.deps"


def package(service: str) -> Path:
    return ROOT / "services" / service / "src" / f"referrals_{service}"


def required(service: str) -> tuple[str, ...]:
    """The modules `service` must have, relative to its package."""
    return MODULES + (API_MODULES if service in WITH_API else ())


def sources(service: str) -> list[Path]:
    """Every Python module of the service but its applied migrations' scripts."""
    versions = package(service) / "migrations" / "versions"
    return sorted(
        path
        for path in package(service).rglob("*.py")
        if "__pycache__" not in path.parts and not path.is_relative_to(versions)
    )


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@dataclass(frozen=True)
class Import:
    module: str
    """The absolute module imported from (`referrals_intake.main`), relative ones resolved."""
    names: tuple[str, ...]
    line: int


def imports(path: Path, src: Path) -> list[Import]:
    """The imports of the module at `path` (below `src`, the folder of its top package), the
    relative ones made absolute."""
    here = list(path.relative_to(src).with_suffix("").parts[:-1])  # the module's package
    found: list[Import] = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append(Import(module, tuple(alias.name for alias in node.names), node.lineno))
    return found


def commit_calls(tree: ast.Module) -> list[int]:
    """The lines of every `<anything>.commit(...)` call."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "commit"
    ]


def imports_module(found: Import, target: str) -> bool:
    """Whether the import names `target`: `import a.b`, `from a.b import x`, `from a import b`."""
    return (
        found.module == target
        or found.module.startswith(f"{target}.")
        or any(f"{found.module}.{name}" == target for name in found.names)
    )


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_the_modules_of_the_shape(service: str) -> None:
    root = package(service)
    print(f"\n{service}: {', '.join(required(service))}, migrations/")
    missing = [name for name in required(service) if not (root / name).is_file()]
    assert not missing, f"{service} lacks {missing}"
    versions = root / "migrations" / "versions"
    assert (root / "migrations" / "env.py").is_file(), f"{service} has no migrations/env.py"
    assert any(versions.glob("*.py")), f"{service} has no migration in migrations/versions/"


@pytest.mark.parametrize("service", sorted(set(SERVICES) - WITH_API))
def test_service_without_an_http_api_has_no_api_package(service: str) -> None:
    assert not (package(service) / "api").exists(), f"{service} takes no HTTP calls: no api/"


@pytest.mark.parametrize("service", SERVICES)
def test_bootstrap_holds_the_runtime_and_its_builder(service: str) -> None:
    tree = parse(package(service) / "bootstrap.py")
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert {"Runtime", "build_runtime"} <= defined, (
        f"{service}/bootstrap.py defines {sorted(defined)}: Runtime and build_runtime belong here"
    )


@pytest.mark.parametrize("service", sorted(WITH_API))
def test_no_api_module_imports_main(service: str) -> None:
    main = f"referrals_{service}.main"
    found = [
        where(path, imported.line)
        for path in sorted((package(service) / "api").rglob("*.py"))
        for imported in imports(path, package(service).parent)
        if imports_module(imported, main)
    ]
    assert not found, f"api/ imports {main} (routes take the runtime from the request): {found}"


@pytest.mark.parametrize("service", sorted(WITH_API))
def test_api_deps_binds_the_shared_edge(service: str) -> None:
    path = package(service) / "api" / "deps.py"
    used = [
        imported
        for imported in imports(path, package(service).parent)
        if imports_module(imported, EDGE_DEPS)
    ]
    assert used, f"{service}/api/deps.py does not bind {EDGE_DEPS}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = [f"referrals_{other}" for other in SERVICES if other != service]
    found = [
        f"{where(path, imported.line)} {imported.module}"
        for path in sources(service)
        for imported in imports(path, package(service).parent)
        for other in others
        if imports_module(imported, other)
    ]
    assert not found, f"{service} imports another service: {found}"


@pytest.mark.parametrize("service", SERVICES)
def test_repository_never_commits(service: str) -> None:
    path = package(service) / "repository.py"
    commits = [where(path, line) for line in commit_calls(parse(path))]
    assert not commits, (
        f"{service}/repository.py commits (its caller's unit of work does): {commits}"
    )


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The checks can fail: they find what a module out of shape would hold."""
    api = tmp_path / "referrals_intake" / "api"
    api.mkdir(parents=True)
    module = api / "routes.py"
    module.write_text(
        "from ..main import Runtime\n"
        "from .. import main\n"
        "from . import deps\n"
        "import referrals_intake.main\n"
        "from referrals_records import service\n"
        "from referrals_intake.mainly import x\n"
        "async def f(session):\n"
        "    await session.commit()\n",
        encoding="utf-8",
    )
    found = imports(module, tmp_path)
    assert [f.module for f in found] == [
        "referrals_intake.main",
        "referrals_intake",
        "referrals_intake.api",
        "referrals_intake.main",
        "referrals_records",
        "referrals_intake.mainly",
    ]
    main = [imports_module(f, "referrals_intake.main") for f in found]
    assert main == [True, True, False, True, False, False]
    assert imports_module(found[4], "referrals_records")
    assert commit_calls(parse(module)) == [8]
