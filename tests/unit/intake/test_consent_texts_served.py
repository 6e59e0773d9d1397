"""The consent texts resolve: every `Consent.policy` URI of intake's FHIR exports, for the
versions intake accepts, is served by intake at that path with the words the patient read, in
Ukrainian and English; a page for a person, JSON for a program; nothing for a version nobody
published, and intake refuses a configuration that would accept one."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from referrals_intake.config import IntakeSettings
from referrals_intake.consent_texts import KINDS, published
from referrals_intake.fhir import TASK_STATUS, case_bundle
from referrals_intake.main import create_app

from ...contracts.test_fhir_validator import _case, _variants

pytestmark = pytest.mark.unit

BASE = "https://intake.example.org"
SETTINGS = IntakeSettings()


@pytest.fixture
async def intake() -> httpx.AsyncClient:
    app = create_app()
    app.state.runtime = SimpleNamespace(settings=SimpleNamespace(public_base_url=BASE))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def _as_accepted(case: Any) -> Any:
    """The case with the consent versions intake accepts (the test cases carry older ones)."""
    accepted = {
        "processing": SETTINGS.processing_consent_versions[-1],
        "cross_border": SETTINGS.cross_border_consent_versions[-1],
    }
    return replace(case, consents=[replace(c, version=accepted[c.kind]) for c in case.consents])


async def test_every_policy_uri_of_every_export_resolves_to_its_words(intake):
    cases = [_case(status) for status in TASK_STATUS] + list(_variants().values())
    policies: set[str] = set()
    for case in cases:
        bundle = case_bundle(_as_accepted(case), base_url=BASE)
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Consent":
                policies.update(p["uri"] for p in entry["resource"]["policy"])
    kinds = {urlsplit(uri).path.split("/")[3] for uri in policies}
    assert kinds == set(KINDS)  # processing, cross-border and the further opinion's sharing

    for uri in policies:
        assert uri.startswith(f"{BASE}/v1/consent-texts/")
        r = await intake.get(urlsplit(uri).path)
        assert r.status_code == 200, (uri, r.text)
        text = r.json()
        _, _, _, kind, version = urlsplit(uri).path.split("/")
        assert (text["kind"], text["version"]) == (kind, version)
        assert set(text["texts"]) == {"uk", "en"}
        for words in text["texts"].values():
            assert words["title"] and words["agreement"] and all(words["paragraphs"])


async def test_a_person_gets_a_readable_page_in_either_language(intake):
    html = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
    uk = await intake.get("/v1/consent-texts/processing/2026-01", headers=html)
    en = await intake.get("/v1/consent-texts/processing/2026-01?lang=en", headers=html)

    assert uk.headers["content-type"].startswith("text/html")
    assert uk.headers["content-language"] == "uk" and en.headers["content-language"] == "en"
    assert '<html lang="uk">' in uk.text and '<html lang="en">' in en.text
    assert "Обробка даних про ваше здоров" in uk.text
    assert "Processing of your health data" in en.text
    assert "Health data is a special category of personal data." in en.text
    assert 'href="?lang=en"' in uk.text and 'href="?lang=uk"' in en.text


async def test_an_unchanged_text_is_not_sent_again(intake):
    first = await intake.get("/v1/consent-texts/cross_border/2026-01")
    again = await intake.get(
        "/v1/consent-texts/cross_border/2026-01", headers={"If-None-Match": first.headers["etag"]}
    )
    page = await intake.get(
        "/v1/consent-texts/cross_border/2026-01", headers={"Accept": "text/html"}
    )

    assert first.status_code == 200 and "max-age" in first.headers["cache-control"]
    assert again.status_code == 304 and again.content == b""
    assert page.headers["etag"] != first.headers["etag"]  # a page is another representation


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/consent-texts/processing/2025-01", 404),  # never published
        ("/v1/consent-texts/marketing/2026-01", 404),  # no such consent
        ("/v1/consent-texts/processing/latest", 422),  # not a version
        ("/v1/consent-texts/processing/2026-01?lang=de", 422),  # not a language we offer
    ],
)
async def test_what_is_not_published_is_a_problem(intake, path, status):
    r = await intake.get(path)

    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_the_list_names_every_published_text(intake):
    listed = (await intake.get("/v1/consent-texts")).json()

    assert {(t["kind"], t["version"]) for t in listed} == set(published())
    assert {t["kind"] for t in listed} == set(KINDS)


def test_intake_refuses_to_accept_a_version_nobody_can_read():
    with pytest.raises(ValidationError, match="no published processing consent text"):
        IntakeSettings(processing_consent_versions=("2026-01", "2027-01"))


def test_the_words_are_the_front_end_s_words():
    """The web app shows the patient these very paragraphs (it reads them from intake)."""
    processing = published()[("processing", "2026-01")]
    assert (
        processing.texts["en"]
        .paragraphs[0]
        .startswith("To get you a second opinion we need to process your health data")
    )
    assert processing.texts["uk"].paragraphs[0].startswith("Щоб отримати для вас друге судження")
