"""A module as it was at an older commit, beside the working tree's, for benchmarks that time
the old code against its replacement on the same input."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from _harness.results import ROOT


def module_at(revision: str, path: str, name: str, folder: Path) -> ModuleType:
    """The file `path` of the repository at `revision` (read from git), written into `folder`
    and imported as the module `name`."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    file = folder / f"{name}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def worktree_at(revision: str, prefix: str) -> Iterator[Path]:
    """A `git worktree` of the repository at `revision` in a temporary folder, removed after."""
    worktree = Path(tempfile.mkdtemp(prefix=prefix)) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield worktree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
            check=False,
            capture_output=True,
        )
