"""The center console's pages over a fake partner API and records: the inbox in the order a
doctor works, the referral without contact data and with the actions of its state only, each
action sent with the center's key and followed by the new state, and the platform's problems
shown on the form with what was typed kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from referrals_web.bootstrap import Runtime
from referrals_web.pages.console import OPINION_KEPT, inbox_groups, outcome_of
from referrals_web.rendering import Form
from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import API_KEY, CENTER_KEY, OTHER_CENTER_KEY, FakePlatform

pytestmark = pytest.mark.unit

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _day(when: datetime) -> dict[str, str]:
    return {"day": str(when.day), "month": str(when.month), "year": str(when.year)}


def days_from_now(days: int, prefix: str) -> dict[str, str]:
    return {f"{prefix}_{k}": v for k, v in _day(datetime.now(UTC) + timedelta(days=days)).items()}


# ----------------------------------------------------------------------------- the inbox


def test_the_inbox_puts_the_most_urgent_first_in_each_part() -> None:
    now = datetime.now(UTC)

    def referral(status: str, **fields: object) -> dict[str, object]:
        return {"id": str(uuid4()), "case_id": str(uuid4()), "status": status, **fields}

    later = referral("offered", answer_due_at=(now + timedelta(days=2)).isoformat())
    sooner = referral("offered", answer_due_at=(now + timedelta(hours=3)).isoformat())
    writing = referral("accepted", expected_opinion_at=(now + timedelta(days=5)).isoformat())
    asked = referral(
        "completed",
        answered_at=now.isoformat(),
        follow_up_questions=[{"id": "q", "answer": None, "asked_at": now.isoformat()}],
    )
    old = referral("declined", answered_at=(now - timedelta(days=9)).isoformat())

    groups = inbox_groups([later, old, writing, sooner, asked])

    assert groups["offered"] == [sooner, later]
    assert groups["accepted"] == [writing]
    assert groups["follow_ups"] == [asked]
    assert groups["closed"] == [asked, old]


async def test_the_inbox_shows_each_offer_with_its_deadline(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    first = fake.add_referral()
    fake.add_referral(status="accepted", expected_opinion_at=datetime.now(UTC).isoformat())
    rerouted = fake.add_referral(attempt=3)

    page = await staff_browser.get("/center")

    assert page.status_code == 200
    offers = page.text.split('id="offers"')[1].split('id="accepted"')[0]
    assert f"/center/referrals/{first}" in offers and f"/center/referrals/{rerouted}" in offers
    assert "C50.4" in offers and "cT2N1M0" in offers
    assert "Help to choose between treatments" in offers
    assert "UTC" in offers and "in 2 days" in offers
    assert "Offered after 2 other centers could not take it." in offers
    assert "Your center was the first chosen for this case." in offers
    accepted = page.text.split('id="accepted"')[1].split('id="waiting"')[0]
    assert "/center/referrals/" in accepted


# -------------------------------------------------------------------------- the referral


async def test_the_referral_shows_the_case_without_contact_data_and_the_actions_of_its_state(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()

    page = await staff_browser.get(f"/center/referrals/{referral_id}")

    assert page.status_code == 200
    assert "C50.4" in page.text and "Is breast-conserving surgery possible?" in page.text
    assert "pathology-report-1.pdf" in page.text
    for action in ("accept", "decline", "information"):
        assert f'href="/center/referrals/{referral_id}/{action}"' in page.text
    assert f'href="/center/referrals/{referral_id}/opinion"' not in page.text
    for private in ("olena", "@example.org", "+380", "1979"):
        assert private not in page.text
    for secret in (CENTER_KEY, API_KEY):
        assert secret not in page.text

    fake.referrals[referral_id]["status"] = "accepted"
    fake.referrals[referral_id]["expected_opinion_at"] = datetime.now(UTC).isoformat()
    page = await staff_browser.get(f"/center/referrals/{referral_id}")
    assert f'href="/center/referrals/{referral_id}/opinion"' in page.text
    assert f'href="/center/referrals/{referral_id}/accept"' not in page.text
    assert f'href="/center/referrals/{referral_id}/decline"' not in page.text
    # An action page of another state leads back to the referral.
    gone = await staff_browser.get(f"/center/referrals/{referral_id}/accept")
    assert gone.status_code == 303


async def test_a_document_is_read_through_the_app_with_the_centers_key_and_recorded(
    staff_browser: Browser, fake: FakePlatform, runtime: Runtime
) -> None:
    referral_id = fake.add_referral()
    doc = fake.referral_docs[referral_id][0]

    viewed = await staff_browser.get(
        f"/center/referrals/{referral_id}/documents/{doc['id']}?view=1"
    )
    saved = await staff_browser.get(f"/center/referrals/{referral_id}/documents/{doc['id']}")

    assert viewed.status_code == saved.status_code == 200
    assert viewed.content == b"%PDF-1.7 fake"
    assert viewed.headers["content-disposition"].startswith("inline;")
    assert saved.headers["content-disposition"].startswith("attachment;")
    assert "pathology-report-1.pdf" in saved.headers["content-disposition"]
    links = fake.requests_to("GET", rf"/v1/referrals/{referral_id}/documents/{doc['id']}$")
    assert [link.headers["x-api-key"] for link in links] == [CENTER_KEY, CENTER_KEY]
    recorded = await runtime.console_audit.of_referral(referral_id)
    assert [a.action for a in recorded] == ["download", "download"]


# ----------------------------------------------------------------------------- accept


async def test_accepting_sends_the_day_and_shows_the_new_state(
    staff_browser: Browser, fake: FakePlatform, runtime: Runtime
) -> None:
    referral_id = fake.add_referral()

    done = await staff_browser.post(
        f"/center/referrals/{referral_id}/accept", days_from_now(10, "opinion")
    )

    assert (
        done.status_code == 303 and done.headers["location"] == f"/center/referrals/{referral_id}"
    )
    [sent] = fake.requests_to("POST", rf"/v1/partner/referrals/{referral_id}/accept$")
    assert sent.headers["x-api-key"] == CENTER_KEY
    # Every center action carries an Idempotency-Key (partners does a retried one once).
    assert len(sent.headers["idempotency-key"]) >= 8
    when = datetime.fromisoformat(sent.json()["expected_opinion_at"])
    assert (when.hour, when.minute, when.utcoffset()) == (23, 59, timedelta(0))
    page = await staff_browser.get(done.headers["location"])
    assert "You accepted the referral." in page.text
    assert "Accepted: the opinion is being written" in page.text
    assert "Accepted the referral, Dr. Anna Weber" in page.text
    [action] = [a for a in await runtime.console_audit.of_referral(referral_id)]
    assert (action.action, action.outcome) == ("accept", "ok")


async def test_a_day_the_api_refuses_is_shown_beside_the_field_and_kept(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()
    yesterday = days_from_now(-1, "opinion")

    page = await staff_browser.post(f"/center/referrals/{referral_id}/accept", yesterday)

    assert page.status_code == 422
    assert 'id="error-summary"' in page.text
    assert "The expected opinion date must be in the future." in page.text
    assert 'href="#opinion_day"' in page.text and 'id="expected_opinion_at-error"' in page.text
    for value in yesterday.values():
        assert f'value="{value}"' in page.text
    assert fake.referrals[referral_id]["status"] == "offered"


async def test_a_day_that_is_no_date_is_refused_before_the_platform(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()

    page = await staff_browser.post(
        f"/center/referrals/{referral_id}/accept",
        {"opinion_day": "31", "opinion_month": "2", "opinion_year": "2030"},
    )

    assert page.status_code == 422 and "as a real date" in page.text
    assert not fake.requests_to("POST", "/accept$")


async def test_a_referral_taken_meanwhile_says_so_on_the_form(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()
    form_page = await staff_browser.get(f"/center/referrals/{referral_id}/accept")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page.text)
    assert token
    fake.referrals[referral_id]["status"] = "expired"  # the deadline passed meanwhile

    page = await staff_browser.client.post(
        f"/center/referrals/{referral_id}/accept",
        data={"csrf_token": token[1], **days_from_now(10, "opinion")},
    )

    assert page.status_code == 409
    assert "This referral is expired" in page.text


# ----------------------------------------------------------------------------- decline


async def test_declining_needs_a_reason_then_goes_back_to_the_inbox(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()

    missing = await staff_browser.post(
        f"/center/referrals/{referral_id}/decline", {"detail": "Busy until May"}
    )
    assert missing.status_code == 422 and "Choose why your center declines" in missing.text
    assert "Busy until May" in missing.text

    done = await staff_browser.post(
        f"/center/referrals/{referral_id}/decline",
        {"reason": "no_capacity", "detail": "Busy until May"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/center"
    [sent] = fake.requests_to("POST", "/decline$")
    assert sent.json() == {"reason": "no_capacity", "detail": "Busy until May"}
    inbox = await staff_browser.get("/center")
    assert "You declined the referral." in inbox.text
    closed = inbox.text.split('id="closed"')[1]
    assert "Declined" in closed


# ------------------------------------------------------------------ ask for information


async def test_a_request_for_information_sends_items_reason_and_due_day(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral(status="accepted")
    form = {
        "item_1_kind": "pathology_report",
        "item_1_detail": "HER2 re-testing on the original block",
        "item_2_kind": "question",
        "item_2_detail": "Did the tumour grow during chemotherapy?",
        "reason": "Our tumour board needs the HER2 status before it answers.",
        **days_from_now(7, "due"),
    }

    done = await staff_browser.post(f"/center/referrals/{referral_id}/information", form)

    assert done.status_code == 303
    [sent] = fake.requests_to("POST", "/information-requests$")
    body = sent.json()
    assert body["items"] == [
        {"kind": "pathology_report", "detail": "HER2 re-testing on the original block"},
        {"kind": "question", "detail": "Did the tumour grow during chemotherapy?"},
    ]
    assert body["reason"] == form["reason"]
    page = await staff_browser.get(done.headers["location"])
    assert "Waiting for the patient's information" in page.text
    assert "HER2 re-testing on the original block" in page.text


async def test_a_due_day_the_api_refuses_keeps_everything_typed(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()
    form = {
        "item_1_kind": "imaging",
        "item_1_detail": "The staging CT of the chest",
        "reason": "To see whether the lung nodules were there before.",
        **days_from_now(120, "due"),
    }

    page = await staff_browser.post(f"/center/referrals/{referral_id}/information", form)

    assert page.status_code == 422
    assert "The due date must be within 90 days from now." in page.text
    assert 'href="#due_day"' in page.text
    assert 'value="The staging CT of the chest"' in page.text
    assert "To see whether the lung nodules were there before." in page.text
    assert '<option value="imaging" selected>' in page.text
    assert fake.referrals[referral_id]["status"] == "offered"


async def test_an_item_without_words_is_refused_before_the_platform(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()

    page = await staff_browser.post(
        f"/center/referrals/{referral_id}/information",
        {"item_1_kind": "lab_test", "reason": "", **days_from_now(7, "due")},
    )

    assert page.status_code == 422
    assert "Say exactly what you need, in a few words" in page.text
    assert "Say why your center needs it" in page.text
    assert not fake.requests_to("POST", "/information-requests$")


# ---------------------------------------------------------------------------- shipments


async def test_a_shipment_is_confirmed_from_the_referral(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral(status="accepted")
    shipment_id = str(uuid4())
    fake.referrals[referral_id]["information_requests"] = [
        {
            "id": str(uuid4()),
            "status": "answered",
            "reason": "Re-review",
            "items": [{"kind": "pathology_review", "detail": "Slides and one block"}],
            "due_at": datetime.now(UTC).isoformat(),
            "requested_at": datetime.now(UTC).isoformat(),
            "answered_at": datetime.now(UTC).isoformat(),
            "answer": "Sent by DHL today.",
            "new_document_ids": [],
            "shipments": [
                {
                    "id": shipment_id,
                    "material": "slides_and_blocks",
                    "carrier": "DHL Express",
                    "tracking_number": "JD014600006281",
                    "sent_on": "2026-04-02",
                    "received_at": None,
                }
            ],
        }
    ]
    page = await staff_browser.get(f"/center/referrals/{referral_id}")
    assert "Sent by DHL today." in page.text and "Confirm we received it" in page.text

    done = await staff_browser.post(
        f"/center/referrals/{referral_id}/shipments/{shipment_id}/receipt",
        page=f"/center/referrals/{referral_id}",
    )

    assert done.status_code == 303
    page = await staff_browser.get(done.headers["location"])
    assert "You confirmed the receipt." in page.text and "Confirm we received it" not in page.text


# --------------------------------------------------------------------------- the opinion

OUTCOME = {
    "diagnosis": "refined",
    "icd10": "c50.4",
    "stage": "confirmed",
    "treatment": "alternative_proposed",
    "additional_tests": "HER2 in situ hybridisation\n\n Ki-67 index ",
    "clinical_trials": "yes",
    "clinical_trials_detail": "A HER2-low trial is recruiting.",
}


def test_the_outcome_is_built_as_partners_takes_it() -> None:
    values = {k: "" for k in ("new_tnm", "new_group")} | OUTCOME

    assert outcome_of(Form(values=values)) == {
        "diagnosis": "refined",
        "icd10": "C50.4",
        "stage": "confirmed",
        "treatment": "alternative_proposed",
        "clinical_trials": True,
        "additional_tests": ["HER2 in situ hybridisation", "Ki-67 index"],
        "clinical_trials_detail": "A HER2-low trial is recruiting.",
    }


async def test_the_opinion_is_uploaded_once_and_delivered_after_a_refused_outcome(
    staff_browser: Browser, fake: FakePlatform, runtime: Runtime
) -> None:
    referral_id = fake.add_referral(
        status="accepted", expected_opinion_at=datetime.now(UTC).isoformat()
    )
    url = f"/center/referrals/{referral_id}/opinion"
    changed_without_code = {**OUTCOME, "diagnosis": "changed", "icd10": ""}

    refused = await staff_browser.post(
        url, changed_without_code, files={"file": ("Opinion Weber.pdf", PDF, "application/pdf")}
    )

    assert refused.status_code == 422
    assert "a changed diagnosis names the new ICD-10 code" in refused.text
    assert "Uploaded: Opinion Weber.pdf." in refused.text  # no need to choose it again
    assert 'value="changed" checked' in refused.text
    assert "A HER2-low trial is recruiting." in refused.text
    assert len(fake.requests_to("POST", "/opinion$")) == 2  # records, then partners

    done = await staff_browser.post(url, OUTCOME)

    assert done.status_code == 303
    uploads = fake.requests_to("POST", rf"{re.escape('/v1/referrals/')}.*/opinion$")
    assert len(uploads) == 1 and uploads[0].headers["x-api-key"] == CENTER_KEY
    delivered = fake.requests_to("POST", r"/v1/partner/referrals/.*/opinion$")[-1].json()
    assert delivered["outcome"]["icd10"] == "C50.4"
    assert delivered["document_id"] == fake.referral_docs[referral_id][-1]["id"]
    page = await staff_browser.get(done.headers["location"])
    assert "Your opinion was delivered." in page.text and "Opinion delivered" in page.text
    assert "We propose another treatment" in page.text
    session_data = [s for s in runtime.sessions.store.rows.values()]  # type: ignore[attr-defined]
    assert session_data  # the kept upload was dropped once delivered
    assert OPINION_KEPT.format(referral_id=referral_id) not in page.text
    actions = [a.action for a in await runtime.console_audit.of_referral(referral_id)]
    assert actions == ["upload_opinion", "deliver_opinion", "deliver_opinion"]


async def test_an_opinion_that_is_no_pdf_is_refused_before_the_platform(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral(status="accepted")

    page = await staff_browser.post(
        f"/center/referrals/{referral_id}/opinion",
        OUTCOME,
        files={"file": ("opinion.docx", b"PK\x03\x04 not a pdf", "application/pdf")},
    )

    assert page.status_code == 422 and "The opinion must be a PDF file" in page.text
    assert not fake.requests_to("POST", "/opinion$")


# ---------------------------------------------------------------------- follow-up questions


async def test_a_follow_up_question_is_answered_once(
    staff_browser: Browser, fake: FakePlatform
) -> None:
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
            }
        ],
    )
    inbox = await staff_browser.get("/center")
    assert 'id="follow-ups"' in inbox.text
    url = f"/center/referrals/{referral_id}/follow-up/{question_id}"

    empty = await staff_browser.post(url, {"answer": "  "})
    assert empty.status_code == 422 and "Write your answer" in empty.text
    done = await staff_browser.post(url, {"answer": "Yes, after surgery."})

    assert done.status_code == 303
    page = await staff_browser.get(done.headers["location"])
    assert "Yes, after surgery." in page.text and "Answer this question" not in page.text
    assert (await staff_browser.get(url)).status_code == 303  # answered: nothing to answer


async def test_other_centers_key_is_never_used_for_this_staff_member(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()
    await staff_browser.get(f"/center/referrals/{referral_id}")
    await staff_browser.post(f"/center/referrals/{referral_id}/accept", days_from_now(3, "opinion"))

    used = {s.headers.get("x-api-key") for s in fake.seen}
    assert OTHER_CENTER_KEY not in used and CENTER_KEY in used
    assert UUID(str(referral_id))


# ------------------------------------------------------------------ the consultation meeting


async def test_times_for_the_meeting_are_offered_once_with_an_idempotency_key(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral(
        status="accepted", expected_opinion_at=datetime.now(UTC).isoformat()
    )
    page = await staff_browser.get(f"/center/referrals/{referral_id}")
    assert f'href="/center/referrals/{referral_id}/meeting"' in page.text
    soon = datetime.now(UTC) + timedelta(days=3)
    form = {
        "mode": "video",
        "join_url": "https://meet.example.org/abc-defg",
        "time_zone": "Europe/Berlin",
        "language": "de",
        "slot_1_day": str(soon.day),
        "slot_1_month": str(soon.month),
        "slot_1_year": str(soon.year),
        "slot_1_time": "14:30",
        "slot_1_minutes": "60",
    }

    done = await staff_browser.post(f"/center/referrals/{referral_id}/meeting", form)

    assert done.status_code == 303
    [sent] = fake.requests_to("POST", "/meetings$")
    assert sent.headers["idempotency-key"]
    body = sent.json()
    assert body["place"] == {
        "mode": "video",
        "time_zone": "Europe/Berlin",
        "join_url": "https://meet.example.org/abc-defg",
        "language": "de",
    }
    starts = datetime.fromisoformat(body["slots"][0]["starts_at"])
    assert (starts.hour, starts.minute) == (14, 30) and starts.utcoffset() in (
        timedelta(hours=1),
        timedelta(hours=2),
    )
    page = await staff_browser.get(done.headers["location"])
    assert "Times offered: waiting for the patient to choose" in page.text
    assert f'href="/center/referrals/{referral_id}/meeting"' not in page.text  # one at a time


async def test_a_time_the_api_refuses_is_shown_beside_its_row_and_kept(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral(
        status="accepted", expected_opinion_at=datetime.now(UTC).isoformat()
    )
    now = datetime.now(UTC)
    form = {
        "mode": "in_person",
        "center_address": "Building 4, room 12",
        "time_zone": "UTC",
        "slot_1_day": str(now.day),
        "slot_1_month": str(now.month),
        "slot_1_year": str(now.year),
        "slot_1_time": now.strftime("%H:%M"),
        "slot_1_minutes": "45",
    }

    page = await staff_browser.post(f"/center/referrals/{referral_id}/meeting", form)

    assert page.status_code == 422
    assert "A time starts at least 2 hours from now." in page.text
    assert 'href="#slot_1_day"' in page.text
    assert "Building 4, room 12" in page.text and f'value="{now.strftime("%H:%M")}"' in page.text
    assert fake.referrals[referral_id]["meetings"] == []
