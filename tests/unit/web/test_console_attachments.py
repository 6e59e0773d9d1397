"""Documents from the center to the patient, over the fake platform: the console's follow-up
answer with documents (each stored at records first, kept while the answer is corrected, the
answer sent with their ids and tried again while partners has not heard of them), the console's
opinion sent in parts through the app with the center's key, and the patient's opinion page
that links each answer's documents apart from the written opinion."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from referrals_web.bootstrap import Runtime
from referrals_web.pages.console import attachment_name
from referrals_web.pages.opinion import answer_documents, written_opinions
from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import CENTER_KEY, RECORDS, FakePlatform, problem
from tests.unit.web.test_after_the_opinion import english
from tests.unit.web.test_status import signed_in

pytestmark = pytest.mark.unit

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
ANSWER = "Yes: radiotherapy after surgery. The plan is attached."


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partners' Retry-After is honoured without the test waiting for it."""

    async def instantly(_seconds: float) -> None:
        return None

    monkeypatch.setattr("referrals_web.pages.console.asyncio.sleep", instantly)


def asked(fake: FakePlatform) -> tuple[UUID, str]:
    question_id = str(uuid4())
    referral_id = fake.add_referral(
        status="completed",
        follow_up_questions=[
            {
                "id": question_id,
                "question": "Is radiotherapy still needed?",
                "asked_at": datetime.now(UTC).isoformat(),
                "answer": None,
                "answered_at": None,
                "document_ids": [],
            }
        ],
    )
    return referral_id, question_id


def answer_url(referral_id: UUID, question_id: str) -> str:
    return f"/center/referrals/{referral_id}/follow-up/{question_id}"


# ------------------------------------------------------------------ the follow-up answer


def test_a_files_name_loses_its_path_and_markup() -> None:
    class Named:
        filename = 'C:\\scans\\plan <b>"2"</b>.pdf'

    assert attachment_name(Named()) == "b_.pdf"  # type: ignore[arg-type]
    Named.filename = "радіотерапія план.pdf"
    assert attachment_name(Named()) == "радіотерапія план.pdf"  # type: ignore[arg-type]


async def test_an_answer_goes_with_its_documents_each_stored_at_records_first(
    staff_browser: Browser, fake: FakePlatform, runtime: Runtime
) -> None:
    referral_id, question_id = asked(fake)
    url = answer_url(referral_id, question_id)
    form = await staff_browser.get(url)
    assert 'enctype="multipart/form-data"' in form.text and "multiple" in form.text

    done = await staff_browser.post(
        url,
        {"answer": ANSWER},
        files=[
            ("files", ("plan.pdf", PDF, "application/pdf")),
            ("files", ("dose table.pdf", PDF, "application/pdf")),
        ],
    )

    assert done.status_code == 303, done.text[:2000]
    stored = fake.requests_to("POST", rf"/follow-up-questions/{question_id}/documents$")
    assert [s.headers["x-api-key"] for s in stored] == [CENTER_KEY, CENTER_KEY]
    [sent] = fake.requests_to("POST", r"/follow-up-questions/.+/answer$")
    ids = [d["id"] for d in fake.referral_docs[referral_id][-2:]]
    assert sent.json() == {"answer": ANSWER, "document_ids": ids}
    page = await staff_browser.get(done.headers["location"])
    assert "Your answer was sent." in page.text
    answered = page.text.split('id="follow-ups"')[1]
    assert "2 documents went to the patient with your answer." in answered
    assert "answer to a follow-up question" in page.text.split('id="documents"')[1]
    recorded = [a.action for a in await runtime.console_audit.of_referral(referral_id)]
    assert recorded == ["upload_follow_up_document"] * 2 + ["answer_follow_up"]


async def test_a_refused_file_is_named_and_what_was_typed_and_stored_is_kept(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, question_id = asked(fake)
    url = answer_url(referral_id, question_id)

    refused = await staff_browser.post(
        url,
        {"answer": ANSWER},
        files=[
            ("files", ("plan.pdf", PDF, "application/pdf")),
            ("files", ("macro.exe", b"MZ\x90\x00", "application/octet-stream")),
        ],
    )

    assert refused.status_code == 422
    assert "macro.exe could not be attached: The file must be a PDF" in refused.text
    assert 'href="#files"' in refused.text and 'id="files-error"' in refused.text
    assert ANSWER in refused.text  # the words are kept
    assert 'id="attached-files"' in refused.text and "plan.pdf" in refused.text
    assert fake.requests_to("POST", r"/answer$") == []

    # Sent again without choosing the stored file again: it goes with the answer.
    done = await staff_browser.post(url, {"answer": ANSWER})
    assert done.status_code == 303
    [sent] = fake.requests_to("POST", r"/answer$")
    assert sent.json()["document_ids"] == [fake.referral_docs[referral_id][-1]["id"]]
    assert len(fake.requests_to("POST", r"/documents$")) == 2  # plan.pdf stored once


async def test_more_than_five_documents_are_refused_before_any_is_stored(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, question_id = asked(fake)
    files = [("files", (f"part-{n}.pdf", PDF, "application/pdf")) for n in range(6)]

    page = await staff_browser.post(
        answer_url(referral_id, question_id), {"answer": ANSWER}, files=files
    )

    assert page.status_code == 422 and "Attach at most 5 documents to one answer" in page.text
    assert fake.requests_to("POST", r"/documents$") == []


async def test_the_answer_waits_politely_until_partners_knows_the_documents(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, question_id = asked(fake)
    not_yet = problem(409, "opinion-not-stored", "not known yet", retry_after=2)
    fake.fail_next["POST /follow-up-questions/.+/answer$"] = not_yet

    done = await staff_browser.post(
        answer_url(referral_id, question_id),
        {"answer": ANSWER},
        files=[("files", ("plan.pdf", PDF, "application/pdf"))],
    )

    assert done.status_code == 303
    tries = fake.requests_to("POST", r"/answer$")
    assert len(tries) == 2
    assert tries[0].headers["idempotency-key"] == tries[1].headers["idempotency-key"]


async def test_when_partners_still_does_not_know_the_documents_the_staff_member_is_told_to_wait(
    staff_browser: Browser, fake: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    referral_id, question_id = asked(fake)
    monkeypatch.setattr("referrals_web.pages.console.DELIVERY_TRIES", 2)
    for pattern in ("/answer$", "/follow-up-questions/.+/answer$"):  # each answers once
        fake.fail_next[f"POST {pattern}"] = problem(
            409, "opinion-not-stored", "not known yet", retry_after=2
        )

    page = await staff_browser.post(
        answer_url(referral_id, question_id),
        {"answer": ANSWER},
        files=[("files", ("plan.pdf", PDF, "application/pdf"))],
    )

    assert page.status_code == 409
    assert "The platform is still checking your documents." in page.text
    assert ANSWER in page.text and 'id="attached-files"' in page.text
    done = await staff_browser.post(answer_url(referral_id, question_id), {"answer": ANSWER})
    assert done.status_code == 303
    assert len(fake.requests_to("POST", r"/documents$")) == 1


# ------------------------------------------------------------------- the opinion in parts

PART = 5


@dataclass
class RecordsWithOpinionUploads(FakePlatform):
    """The fake platform, with records' resumable opinion uploads (parts of 5 bytes)."""

    uploads: dict[UUID, dict[str, Any]] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        m = re.fullmatch(
            r"/v1/referrals/([0-9a-f-]+)/opinion/uploads(?:/([0-9a-f-]+)(/.*)?)?", path
        )
        if not str(request.url).startswith(RECORDS) or not m:
            return super().handle(request)
        body = request.read()
        self.seen.append(
            type(self.seen[0])(request.method, str(request.url), dict(request.headers), body)
        )
        referral = self.referrals.get(UUID(m[1]))
        if referral is None or request.headers.get("x-api-key") != CENTER_KEY:
            return problem(404, "not-found", "no such referral for this center")
        if m[2] is None:
            declared = json.loads(body)
            upload = {
                "id": str(uuid4()),
                "size_bytes": declared["size_bytes"],
                "file_name": declared["file_name"],
                "part_size": PART,
                "parts_total": -(-declared["size_bytes"] // PART),
                "received": b"",
                "state": "open",
            }
            self.uploads[UUID(upload["id"])] = upload
            return httpx.Response(201, json=self._upload_view(upload))
        upload = self.uploads[UUID(m[2])]
        if m[3] and m[3].startswith("/parts/"):
            upload["received"] += body
        elif m[3] == "/complete":
            doc = {
                "id": str(uuid4()),
                "case_id": referral["case_id"],
                "kind": "opinion",
                "media_type": "application/pdf",
                "file_name": upload["file_name"],
                "created_at": datetime.now(UTC).isoformat(),
            }
            self.referral_docs[UUID(m[1])].append(doc)
            return httpx.Response(201, json=doc)
        return httpx.Response(200, json=self._upload_view(upload))

    @staticmethod
    def _upload_view(upload: dict[str, Any]) -> dict[str, Any]:
        received = len(upload["received"])
        left = received < upload["size_bytes"]
        return {
            **{k: v for k, v in upload.items() if k != "received"},
            "received_bytes": received,
            "next_part": -(-received // PART) + 1 if left else None,
        }


@pytest.fixture
def fake() -> FakePlatform:
    return RecordsWithOpinionUploads()


async def test_an_opinion_in_parts_goes_through_the_app_with_the_centers_key_then_is_delivered(
    staff_browser: Browser, fake: RecordsWithOpinionUploads, runtime: Runtime
) -> None:
    referral_id = fake.add_referral(
        status="accepted", expected_opinion_at=datetime.now(UTC).isoformat()
    )
    base = f"/center/referrals/{referral_id}/opinion/uploads"
    page = await staff_browser.get(f"/center/referrals/{referral_id}/opinion")
    assert f'data-uploads="{base}"' in page.text and 'data-resumable-from="8388608"' in page.text
    headers = {"X-CSRF-Token": await staff_browser.csrf(f"/center/referrals/{referral_id}/opinion")}

    started = await staff_browser.client.post(
        base,
        json={"kind": "", "file_name": "opinion <final>.pdf", "size_bytes": len(PDF)},
        headers={**headers, "Idempotency-Key": "browser-key-0001"},
    )
    assert started.status_code == 200, started.text
    upload = started.json()
    [opened] = fake.requests_to("POST", r"/opinion/uploads$")
    assert opened.headers["x-api-key"] == CENTER_KEY
    assert opened.headers["idempotency-key"] == "browser-key-0001"
    assert opened.json() == {"file_name": "opinion _final_.pdf", "size_bytes": len(PDF)}
    for number in range(1, upload["parts_total"] + 1):
        part = PDF[(number - 1) * PART : number * PART]
        sent = await staff_browser.client.put(
            f"{base}/{upload['id']}/parts/{number}", content=part, headers=headers
        )
        assert sent.status_code == 200, sent.text
    where = await staff_browser.client.get(f"{base}/{upload['id']}")
    assert (where.json()["received_bytes"], where.json()["next_part"]) == (len(PDF), None)
    done = await staff_browser.client.post(f"{base}/{upload['id']}/complete", headers=headers)
    assert done.status_code == 200 and done.json() == {"uploaded": "opinion _final_.pdf"}

    # The form then goes without the file: the opinion kept in the session is delivered.
    page = await staff_browser.get(f"/center/referrals/{referral_id}/opinion")
    assert "Uploaded: opinion _final_.pdf." in page.text
    delivered = await staff_browser.post(
        f"/center/referrals/{referral_id}/opinion",
        {"diagnosis": "confirmed", "stage": "confirmed", "treatment": "agreed"},
    )
    assert delivered.status_code == 303, delivered.text[:2000]
    [sent] = fake.requests_to("POST", r"/v1/partner/referrals/.+/opinion$")
    assert sent.json()["document_id"] == fake.referral_docs[referral_id][-1]["id"]
    recorded = [a.action for a in await runtime.console_audit.of_referral(referral_id)]
    assert recorded == ["upload_opinion", "deliver_opinion"]


async def test_an_opinion_in_parts_must_be_a_pdf_and_carry_the_sessions_csrf_token(
    staff_browser: Browser, fake: RecordsWithOpinionUploads
) -> None:
    referral_id = fake.add_referral(
        status="accepted", expected_opinion_at=datetime.now(UTC).isoformat()
    )
    base = f"/center/referrals/{referral_id}/opinion/uploads"
    headers = {"X-CSRF-Token": await staff_browser.csrf(f"/center/referrals/{referral_id}/opinion")}
    body = {"file_name": "opinion.docx", "size_bytes": 12}

    forged = await staff_browser.client.post(
        base, json=body, headers={"X-CSRF-Token": "forged", "Idempotency-Key": "browser-key-2"}
    )
    not_pdf = await staff_browser.client.post(
        base, json=body, headers={**headers, "Idempotency-Key": "browser-key-3"}
    )

    assert forged.status_code == 403
    assert not_pdf.status_code == 422 and not_pdf.json() == {
        "message": "The opinion must be a PDF file"
    }
    assert fake.requests_to("POST", r"/opinion/uploads") == []


# ------------------------------------------------------------------- the patient's page


def test_an_answers_documents_are_not_the_written_opinion() -> None:
    opinion = {"id": "d-1", "file_name": "second-opinion.pdf"}
    plan = {"id": "d-2", "file_name": "plan.pdf"}
    questions = [
        {"id": "q-1", "answer": "See the plan.", "document_ids": ["d-2", "d-9"]},
        {"id": "q-2", "answer": None, "document_ids": []},
    ]

    assert written_opinions(questions, [plan, opinion]) == [opinion]
    assert answer_documents(questions, [plan, opinion]) == {"q-1": [plan]}  # d-9: not yet listed


async def test_the_patient_downloads_an_answers_documents_in_both_languages(
    browser: Browser, fake: FakePlatform
) -> None:
    case_id = fake.add_case(
        status="opinion_delivered",
        opinion_outcome=None,
        follow_up_questions_left=2,
        further_opinions_left=0,
    )
    fake.add_document(case_id, kind="opinion", check="accepted", file_name="second-opinion.pdf")
    plan = fake.add_document(case_id, kind="opinion", check="accepted", file_name="plan.pdf")
    fake.cases[case_id]["follow_up_questions"] = [
        {
            "id": str(uuid4()),
            "center_code": "sample-center-a",
            "question": "Is radiotherapy still needed?",
            "asked_at": datetime.now(UTC).isoformat(),
            "answer": ANSWER,
            "answered_at": datetime.now(UTC).isoformat(),
            "document_ids": [str(plan)],
        }
    ]
    await signed_in(browser, fake, case_id)

    uk = await browser.get("/case/opinion")
    await english(browser, "/case/opinion")
    en = await browser.get("/case/opinion")

    link = f'href="/case/documents/{plan}/download"'
    for page in (uk, en):
        assert page.status_code == 200
        opinions, answers = page.text.split('id="follow-ups"')
        assert link in answers and link not in opinions
        assert "second-opinion.pdf" in opinions
    assert "Download the center's document" in en.text.replace("&#39;", "'")
    assert "The center attached a document to its answer:" in en.text
    assert "Завантажити документ центру" in uk.text
    downloaded = await browser.get(f"/case/documents/{plan}/download")
    assert downloaded.status_code == 200 and downloaded.content.startswith(b"%PDF-")
