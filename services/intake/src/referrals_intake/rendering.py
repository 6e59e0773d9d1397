"""What intake's API says in words, in the case's language: timeline entries, next steps,
document checks, and the names of languages and countries beside their codes.

Intake stores codes (`TimelineEntry.params`, `next_step_code`; a document's languages and
unreadable reason) and renders them here on every read, so a case whose language changes reads in
its new language, and a reworded sentence reaches old entries too. A row stored before the codes
were kept (`params` null) shows its stored English text. The language is the case's `locale`; a
read may ask for the other one with `Accept-Language` (`text_locale`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Response

from referrals_common.i18n import case_texts, country_name, named_languages, negotiate
from referrals_intake.models import Case, CaseDocument, TimelineEntry

AcceptLanguage = Annotated[
    str | None,
    Header(
        alias="Accept-Language",
        description="The language of the texts in the answer (`uk` or `en`); without it, or "
        "naming neither, the case's own `locale`. The answer's `Content-Language` says which.",
        examples=["en"],
    ),
]


def text_locale(case: Case, accept_language: str | None, response: Response | None) -> str:
    """The language the texts of an answer about `case` are in: the one `Accept-Language` asks
    for among the platform's, else the case's; said in `Content-Language`."""
    locale = negotiate(accept_language, case.locale)
    if response is not None:
        response.headers["Content-Language"] = locale
        response.headers["Vary"] = "Accept-Language"
    return locale


def timeline_entry(entry: TimelineEntry, locale: str) -> dict[str, Any]:
    """A timeline entry as `TimelineEntryPublic` (and the stream's event) reads it."""
    reason = case_texts.reason(entry.reason_code, entry.params, locale)
    return {
        "id": entry.id,
        "at": entry.at,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "reason_code": entry.reason_code,
        "reason": reason or entry.reason,
        "next_step": next_step(entry, locale),
        "next_step_code": None if entry.params is None else entry.next_step_code,
        # A row without codes (or with a code this version has no sentence for) is English.
        "language": locale if reason is not None else "en",
    }


def next_step(entry: TimelineEntry | None, locale: str) -> str | None:
    """What the patient does now, as the entry says it (None: nothing)."""
    if entry is None:
        return None
    if entry.params is None:  # stored before the codes were kept
        return entry.next_step
    return case_texts.next_step(entry.next_step_code, locale)


def document_check(doc: CaseDocument, locale: str) -> dict[str, Any]:
    """A document as `DocumentCheckPublic` reads it: the check's explanation in `locale`
    (the stored English one for a check stored before its codes were kept) and the languages
    by name."""
    explanation = case_texts.document_detail(
        doc.check,
        locale,
        language=doc.language,
        acceptable_languages=doc.acceptable_languages,
        unreadable_reason=doc.unreadable_reason,
    )
    if explanation is None and doc.check in ("translation_required", "unreadable"):
        explanation = doc.check_detail
    return {
        "document_id": doc.document_id,
        "kind": doc.kind,
        "check": doc.check,
        "language": doc.language,
        "language_name": named_languages([doc.language], locale)[0]["name"]
        if doc.language
        else None,
        "acceptable_languages": named_languages(doc.acceptable_languages, locale),
        "detail": doc.check_detail,
        "explanation": explanation,
        "translation_of": doc.translation_of,
    }


def center_proposal(proposal: dict[str, Any] | None, locale: str) -> dict[str, Any] | None:
    """The centers proposed to the patient, each with its country's name beside its code and
    what it offers in the case's language (`explanation`; `why` stays routing's English)."""
    if proposal is None:
        return None
    return {
        **proposal,
        "proposals": [
            {
                **p,
                "center_country_name": country_name(p.get("center_country"), locale) or None,
                "explanation": case_texts.proposal_explanation(p, locale),
            }
            for p in proposal.get("proposals", [])
        ],
    }
