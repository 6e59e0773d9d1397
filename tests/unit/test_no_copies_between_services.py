"""No code copied between services: a duplicate-code scan of services/ with pylint's `symilar`.

Issue 26's "done means": the edge (auth, audit, problem mapping), webhook delivery and the
rest of the glue are written once, in libs/common, and bound by each service; a scan of
services/ finds at most 10 pairs of places in two different services that share six or more
lines. Pairs inside one service are that service's own business and are not counted here.

What is scanned: every Python file below services/, as it is on disk (new files count before
they are committed), except the applied migrations (`migrations/versions/`): they are history,
never rewritten, and each service's first migration spells out the same kind of DDL.

How: `symilar` (pylint's, pinned in the root pyproject's dev group) on the files as text, with
nothing left out: code, imports, comments, docstrings and signatures all count (its
`--ignore-imports` would parse every file with astroid, a hundred times slower). `symilar -d N`
reports a run only when it holds more than N lines with code in them, so N = 5 reports runs of
six or more.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
MIN_LINES = 6
MOST_CROSS_SERVICE_PAIRS = 10

_GROUP = re.compile(r"^(?P<lines>\d+) similar lines in (?P<files>\d+) files$")
_PLACE = re.compile(r"^==(?P<path>.+):\[(?P<start>\d+):(?P<end>\d+)\]$")


@dataclass(frozen=True)
class Place:
    path: str  # relative to services/
    start: int  # symilar's 0-based start, exclusive end: shown 1-based below
    end: int

    @property
    def service(self) -> str:
        return self.path.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.start + 1}-{self.end}"


@dataclass(frozen=True)
class Copy:
    lines: int
    places: tuple[Place, ...]


def scanned_files() -> list[str]:
    """Every Python file of services/ but the applied migrations, relative to services/."""
    return sorted(
        str(path.relative_to(SERVICES))
        for path in SERVICES.rglob("*.py")
        if "migrations/versions" not in path.as_posix() and "__pycache__" not in path.parts
    )


def symilar_executable() -> str:
    script = Path(sysconfig.get_path("scripts")) / "symilar"
    if script.exists():
        return str(script)
    return str(Path(sys.executable).parent / "symilar")


def parse_report(report: str) -> list[Copy]:
    """symilar's report: a header line for each run, then the places that share it."""
    copies: list[Copy] = []
    lines: int | None = None
    places: list[Place] = []
    for line in [*report.splitlines(), ""]:
        if (group := _GROUP.match(line)) is not None or line.startswith("TOTAL lines="):
            if lines is not None:
                copies.append(Copy(lines, tuple(places)))
            lines, places = (int(group["lines"]) if group else None), []
        elif (place := _PLACE.match(line)) is not None and lines is not None:
            places.append(Place(place["path"], int(place["start"]), int(place["end"])))
    return copies


def cross_service_pairs(copies: list[Copy]) -> list[tuple[int, Place, Place]]:
    return [
        (copy.lines, first, second)
        for copy in copies
        for first, second in itertools.combinations(copy.places, 2)
        if first.service != second.service
    ]


def run_symilar(files: list[str]) -> str:
    completed = subprocess.run(
        [symilar_executable(), "-d", str(MIN_LINES - 1), *files],
        cwd=SERVICES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "TOTAL lines=" in completed.stdout, completed.stdout + completed.stderr
    return completed.stdout


def test_report_parser_counts_only_pairs_in_different_services() -> None:
    report = (
        "7 similar lines in 3 files\n"
        "==intake/src/a.py:[10:17]\n"
        "==intake/src/b.py:[3:10]\n"
        "==records/src/c.py:[40:47]\n"
        "   x = 1\n"
        "\n"
        "6 similar lines in 2 files\n"
        "==partners/src/d.py:[0:6]\n"
        "==partners/src/e.py:[1:7]\n"
        "   y = 2\n"
        "TOTAL lines=100 duplicates=13 percent=13.00\n"
    )
    pairs = cross_service_pairs(parse_report(report))
    assert [(n, str(a), str(b)) for n, a, b in pairs] == [
        (7, "intake/src/a.py:11-17", "records/src/c.py:41-47"),
        (7, "intake/src/b.py:4-10", "records/src/c.py:41-47"),
    ]


def test_symilar_finds_a_six_line_copy_and_not_a_five_line_one(tmp_path: Path) -> None:
    """The scan can fail: six shared lines between two services are reported, five are not."""
    six = "".join(f"value_{n} = compute({n}, 'same')\n" for n in range(6))
    for service, tail in (("alpha", "a = 1\n"), ("beta", "b = 2\n")):
        (tmp_path / service).mkdir()
        (tmp_path / service / "six.py").write_text(f"{tail}{six}{tail}", encoding="utf-8")
        (tmp_path / service / "five.py").write_text(
            "".join(f"other_{n} = compute({n}, 'x')\n" for n in range(5)) + tail,
            encoding="utf-8",
        )
    completed = subprocess.run(
        [
            symilar_executable(),
            "-d",
            str(MIN_LINES - 1),
            "alpha/six.py",
            "alpha/five.py",
            "beta/six.py",
            "beta/five.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pairs = cross_service_pairs(parse_report(completed.stdout))
    assert [(n, str(a), str(b)) for n, a, b in pairs] == [
        (6, "alpha/six.py:2-7", "beta/six.py:2-7")
    ]


def test_at_most_ten_copies_between_services() -> None:
    files = scanned_files()
    assert len({name.split("/", 1)[0] for name in files}) == 5, files
    pairs = cross_service_pairs(parse_report(run_symilar(files)))
    print(f"\n{len(pairs)} pairs of {MIN_LINES}+ similar lines between services:")
    for lines, first, second in sorted(pairs, key=lambda p: (-p[0], str(p[1]))):
        print(f"  {lines:3d} lines  {first}  ~  {second}")
    assert len(pairs) <= MOST_CROSS_SERVICE_PAIRS, (
        f"{len(pairs)} copies between services (at most {MOST_CROSS_SERVICE_PAIRS}): "
        + "; ".join(f"{a} ~ {b}" for _, a, b in pairs)
    )
