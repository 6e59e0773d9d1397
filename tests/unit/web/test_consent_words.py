"""What the patient reads is what the record names: the consent page shows intake's published
text (read through the API), and the further opinion's sharing step, which keeps its words in
its template beside the list of shared documents, says exactly the published
`share_earlier_opinions` text in both languages (the text its FHIR Consent.policy names)."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po
from markupsafe import escape

from referrals_intake.consent_texts import SHARING_VERSION, text_of
from tests.unit.web.conftest import Browser, open_case
from tests.unit.web.fake_platform import FakePlatform
from tests.unit.web.test_catalogs import LOCALE, PACKAGE

pytestmark = pytest.mark.unit


def test_the_sharing_step_says_the_published_words_in_both_languages() -> None:
    template = (PACKAGE / "templates" / "opinion" / "further_sharing.html").read_text()
    hint = template[template.index('id="share-hint"') : template.index("</div>")]
    english = re.findall(r"<p>\{\{ _\(\"(.*?)\"\) \}\}", hint)
    with (LOCALE / "uk" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        ukrainian = read_po(handle, locale="uk")

    published = text_of("share_earlier_opinions", SHARING_VERSION)
    assert published is not None
    assert english == published.texts["en"].paragraphs
    assert [ukrainian.get(p).string for p in english] == published.texts["uk"].paragraphs


async def test_the_consent_page_shows_intake_s_published_text(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)  # a case going abroad: both texts
    page = await browser.get("/case/consent")

    assert page.status_code == 200
    for kind in ("processing", "cross_border"):
        published = text_of(kind, "2026-01")
        assert published is not None
        words = published.texts["uk"]
        for text in (words.title, *words.paragraphs, words.agreement):
            assert escape(text) in page.text, text
    # Read from intake's API, once per process however often the page is shown.
    await browser.get("/case/consent")
    assert len(fake.requests_to("GET", r"/v1/consent-texts/")) == 2
