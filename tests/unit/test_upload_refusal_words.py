"""Records' upload refusals carry what the patient's words are made of (`UploadRefused.words`),
so the front end reads them in the case's language: every type records may name has Ukrainian
words, and the size limit, the quota and the accepted types travel with the refusal."""

from __future__ import annotations

import inspect
import re

import pytest

from referrals_common.contracts.records import RejectionReason
from referrals_common.i18n import case_texts as texts
from referrals_records import inspection
from referrals_records.inspection import (
    CaseQuotaExceeded,
    UploadRefused,
    check_file_name,
    sniff,
    too_large,
)

pytestmark = pytest.mark.unit

CYRILLIC = re.compile("[а-яіїєґ]", re.IGNORECASE)


def named_types() -> set[str]:
    """Every description of a file's type the inspection may put into a refusal."""
    source = inspect.getsource(inspection)
    literal = r'"(an? [^"]+)"'
    return (
        set(inspection._DESCRIPTIONS.values())
        | set(inspection._REFUSED_DESCRIPTIONS.values())
        | set(re.findall(r"_unsupported\(" + literal + r"\)", source))
        | set(re.findall(r"return " + literal, source))
    )


def refusal_of(head: bytes, name: str) -> UploadRefused:
    with pytest.raises(UploadRefused) as refused:
        sniff(head, name)
    return refused.value


def test_every_type_the_inspection_may_name_has_words_in_the_patient_texts() -> None:
    named = named_types()
    assert len(named) > 30  # the scan found the tables and the literals
    assert named <= texts.FILE_TYPES, sorted(named - texts.FILE_TYPES)


def test_every_accepted_type_s_short_name_is_a_format_name_or_has_words() -> None:
    words = {name for name in inspection._SHORT_NAMES.values() if name.islower()}
    assert words <= set(texts.ACCEPTED_TYPE_NAMES)


def test_a_refused_type_names_what_the_file_is_and_what_is_accepted() -> None:
    refused = refusal_of(b"GIF89a" + bytes(64), "scan.gif")
    assert refused.words.found == "a GIF image"
    assert dict(refused.words.accepted)["PDF"] == (".pdf",)
    uk = texts.upload_refusal(refused.words, "uk")
    assert "зображення GIF" in uk and "PDF (.pdf)" in uk and CYRILLIC.search(uk)


def test_a_name_against_its_content_gives_the_endings_it_may_have() -> None:
    refused = refusal_of(b"%PDF-1.7\n" + bytes(64), "report.jpg")
    assert refused.words.found == "a PDF document"
    assert refused.words.expected_extensions == (".pdf",)
    assert "документ PDF" in texts.upload_refusal(refused.words, "uk")


def test_an_unrecognised_file_says_so() -> None:
    refused = refusal_of(bytes(range(256)) * 4, "x.bin")
    assert refused.words.found is None
    assert "Не вдалося розпізнати тип файлу." in texts.upload_refusal(refused.words, "uk")


def test_size_and_quota_refusals_carry_their_figures() -> None:
    assert too_large(5 * 2**20).words.limit_bytes == 5 * 2**20
    assert "5 МБ" in texts.upload_refusal(too_large(5 * 2**20).words, "uk")
    quota = CaseQuotaExceeded(100 * 2**20, 99 * 2**20).words
    assert (quota.quota_bytes, quota.used_bytes) == (100 * 2**20, 99 * 2**20)
    assert "99 МБ" in texts.upload_refusal(quota, "uk")


def test_every_other_refusal_has_its_reason_s_words() -> None:
    with pytest.raises(UploadRefused) as refused:
        check_file_name("a/b.pdf")
    assert refused.value.words == texts.Refusal(RejectionReason.BAD_NAME)
    uk = texts.upload_refusal(refused.value.words, "uk")
    assert uk.startswith("Така назва файлу не підходить.")
    # The English detail stays records' own, for centers and the logs.
    assert "path separator" in refused.value.detail
