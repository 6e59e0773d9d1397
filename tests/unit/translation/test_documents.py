"""Every fixture document comes out as tests/fixtures/translation/expected.json says, through the
killable checking workers, with real OCR, and gets the expected verdict for destinations Ukraine,
Germany, Israel and the USA. Not marked `unit`: it runs Tesseract and worker processes."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from referrals_common.contracts.intake import Destination
from referrals_common.contracts.translation import (
    DocumentLanguageAccepted,
    DocumentTranslationRequired,
    DocumentUnreadable,
)
from referrals_translation.acceptance import acceptable_languages, verdict
from referrals_translation.checking import DocumentChecker
from referrals_translation.outcome import Outcome

from .conftest import FIXTURES, manifest

DOCUMENTS: list[dict[str, Any]] = manifest()["documents"]
DESTINATIONS = {
    name: Destination.model_validate(value) for name, value in manifest()["destinations"].items()
}
MAX_FOLDER_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def outcomes(checker: DocumentChecker) -> dict[str, Outcome]:
    """Each fixture checked once, two at a time (OCR takes seconds per page)."""

    def check(document: dict[str, Any]) -> tuple[str, Outcome]:
        return document["file"], checker.check(FIXTURES / document["file"], document["media_type"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(check, DOCUMENTS))


def decide(outcome: Outcome, destination: Destination) -> str:
    """The verdict the consumer gives for this outcome and destination."""
    if outcome.kind == "unreadable":
        return "unreadable"
    if outcome.kind == "imaging":
        return "accepted"
    assert outcome.main_language is not None
    return verdict(outcome.main_language, acceptable_languages(destination)).value


def ids(document: dict[str, Any]) -> str:
    return document["file"]


def test_the_manifest_lists_every_document_and_the_folder_is_small() -> None:
    generated = {".py", ".json", ".tsv"}
    files = {p.name for p in FIXTURES.iterdir() if p.is_file() and p.suffix not in generated}
    assert files == {document["file"] for document in DOCUMENTS}
    assert {"uk", "ru", "en", "de", "pl", "he", "tr"} <= {
        document.get("main_language") for document in DOCUMENTS
    }
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < MAX_FOLDER_BYTES


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids)
def test_document_outcome(document: dict[str, Any], outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[document["file"]]
    assert outcome.kind == document["outcome"], outcome
    if outcome.kind == "unreadable":
        assert outcome.reason == document["reason"], outcome
        assert outcome.detail and len(outcome.detail) <= 500
        assert outcome.detail.isascii(), "details are English and quote nothing from the document"
        return
    assert outcome.method == document["method"], outcome
    assert outcome.pages == document["pages"], outcome
    if outcome.kind == "imaging":
        assert (outcome.main_language, outcome.languages) == (None, ())
        return
    assert outcome.main_language == document["main_language"], outcome
    # py3langid's probability among the script's languages: an OCR'd English lab table, with
    # more codes and numbers than words, has 0.78
    assert outcome.confidence >= 0.7, outcome
    languages = [share.language for share in outcome.languages]
    assert languages[0] == outcome.main_language
    assert set(languages) == {outcome.main_language, *document.get("also_languages", [])}
    assert sum(share.share for share in outcome.languages) <= 1.0


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids)
def test_document_verdicts(document: dict[str, Any], outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[document["file"]]
    found = {name: decide(outcome, dest) for name, dest in DESTINATIONS.items()}
    assert found == document["verdicts"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids)
def test_document_outcome_makes_a_valid_event(
    document: dict[str, Any], outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[document["file"]]
    ids_ = {"case_id": uuid.uuid4(), "document_id": uuid.uuid4()}
    if outcome.kind == "unreadable":
        assert outcome.reason is not None and outcome.detail is not None
        DocumentUnreadable(**ids_, reason=outcome.reason, detail=outcome.detail)
        return
    assert outcome.method is not None
    DocumentLanguageAccepted(
        **ids_,
        languages=list(outcome.languages),
        main_language=outcome.main_language,
        confidence=outcome.confidence,
        pages=outcome.pages,
        method=outcome.method,
    )
    if outcome.main_language is not None and outcome.main_language != "en":
        DocumentTranslationRequired(
            **ids_,
            detected_language=outcome.main_language,
            acceptable_languages=["en"],
            confidence=outcome.confidence,
        )
