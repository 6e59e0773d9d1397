"""docs/problems.md lists exactly the problem types the APIs answer (found in the code: every
`type_slug` given as a literal, every `*_SLUG` constant, the standard type of each status, and
records' `upload-<reason>` types), so a front end can look up any `type` it receives."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from referrals_common.api.problems import _STANDARD, VALIDATION_FAILED_SLUG
from referrals_common.contracts.records import RejectionReason

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs" / "common" / "src", *sorted((ROOT / "services").glob("*/src"))]


def slugs_in_code() -> set[str]:
    found = {slug for slug, _ in _STANDARD.values()} | {VALIDATION_FAILED_SLUG}
    found |= {f"upload-{reason.value.replace('_', '-')}" for reason in RejectionReason}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.keyword) and node.arg == "type_slug":
                    value = node.value
                elif isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names = [t.id if isinstance(t, ast.Name) else "" for t in targets]
                    if not any(n == "type_slug" or n.endswith("_SLUG") for n in names):
                        continue
                    value = node.value
                else:
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
    return found


def slugs_in_docs() -> set[str]:
    text = (ROOT / "docs" / "problems.md").read_text()
    headings = re.findall(r"^### (.+)$", text, re.M)
    return {slug for heading in headings for slug in re.findall(r"`([a-z0-9-]+)`", heading)}


def test_every_problem_type_the_code_answers_is_documented() -> None:
    missing = slugs_in_code() - slugs_in_docs()
    assert not missing, f"document these in docs/problems.md: {sorted(missing)}"


def test_the_registry_lists_no_type_the_code_no_longer_answers() -> None:
    stale = slugs_in_docs() - slugs_in_code()
    assert not stale, f"docs/problems.md lists types nothing answers: {sorted(stale)}"


def test_the_collector_finds_the_platforms_own_types() -> None:
    # Guards the test itself: a collector that found nothing would pass the two above.
    assert {
        "referral-not-known-yet",
        "referral-not-accepted",
        "link-revoked",
        "case-quota-exceeded",
        "too-many-failed-authentications",
        "upload-decompression-bomb",
    } <= slugs_in_code()
    assert "consent-missing" not in slugs_in_code()  # an example in a docstring, not a type
