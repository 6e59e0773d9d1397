"""After the opinion, the patient's pages: the opinion and its outcome in words, a follow-up
question, the consultation meeting (booked on the patient's clock, moved, cancelled), a further
opinion with its consent step, and the choice of the center. Each page in both languages, bad
input kept with the error summary, intake's problems in words, another case's meeting not
found, and one Idempotency-Key per intended request."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import FakePlatform, problem
from tests.unit.web.test_status import signed_in, spaced

pytestmark = pytest.mark.unit

OUTCOME = {
    "diagnosis": "refined",
    "icd10": "C50.4",
    "stage": "changed",
    "new_stage": {"tnm": "cT2N0M0", "group": "IIA"},
    "treatment": "alternative_proposed",
    "additional_tests": ["HER2 in situ hybridisation on block A2"],
    "clinical_trials": True,
    "clinical_trials_detail": "NCT01234567, neoadjuvant trial",
}
SLOT_START = datetime(2027, 3, 9, 13, 30, tzinfo=UTC)  # 15:30 in Kyiv, 14:30 in Berlin


def slot(start: datetime) -> dict[str, str]:
    return {
        "slot_id": str(uuid4()),
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=45)).isoformat(),
    }


def meeting(status: str = "offered", **fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid4()),
        "center_code": "sample-center-a",
        "status": status,
        "place": {
            "mode": "video",
            "join_url": "https://meet.example.org/tumour-board-7",
            "center_address": None,
            "time_zone": "Europe/Berlin",
            "language": "en",
        },
        "note": "Bring your questions.",
        "slots": [slot(SLOT_START), slot(SLOT_START + timedelta(days=1))],
        "booked_slot": None,
        "chosen_slot_id": None,
        "patient_time_zone": None,
        "cancelled_by": None,
        "cancel_reason": None,
        **fields,
    }


@pytest.fixture
def opinion_case(fake: FakePlatform) -> UUID:
    case_id = fake.add_case(
        status="opinion_delivered",
        opinion_outcome=OUTCOME,
        follow_up_questions=[],
        follow_up_questions_left=3,
        further_opinions_left=2,
        opinion_round=1,
        meetings=[meeting()],
    )
    fake.add_document(case_id, kind="opinion", check="accepted", file_name="second-opinion.pdf")
    fake.routing[case_id] = {
        "status": "completed",
        "center_name": "Sample Breast Center Berlin",
        "center_country": "DE",
        "center_city": "Berlin",
        "why": "Chosen because it reviews C50.",
        "answer_due_at": None,
        "expected_opinion_at": None,
    }
    return case_id


async def english(browser: Browser, page: str) -> None:
    await browser.client.get(f"/language/en?next={page}")


# ------------------------------------------------------------------------- the opinion


async def test_the_status_page_leads_to_the_opinion_and_the_offered_meeting(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)

    page = await browser.get("/case/status")

    assert 'href="/case/opinion"' in page.text
    assert "Прочитати висновок" in page.text
    the_meeting = fake.cases[opinion_case]["meetings"][0]
    assert f'href="/case/meetings/{the_meeting["id"]}"' in page.text
    assert "Виберіть час зустрічі" in page.text
    assert "second-opinion.pdf" not in page.text  # the opinion is on its own page


async def test_the_opinion_page_says_the_outcome_in_words_in_both_languages(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    doc_id = fake.cases[opinion_case]["documents"][0]["document_id"]

    uk = await browser.get("/case/opinion")
    await english(browser, "/case/opinion")
    en = await browser.get("/case/opinion")

    assert uk.status_code == en.status_code == 200
    assert '<html lang="uk">' in uk.text and '<html lang="en">' in en.text
    assert "Центр описує ваш діагноз точніше." in uk.text
    assert "Центр пропонує інше лікування." in uk.text
    assert "The center describes your diagnosis more precisely." in en.text
    assert "The center finds a different stage." in en.text
    assert "The center proposes a different treatment." in en.text
    assert "HER2 in situ hybridisation on block A2" in en.text
    assert "The opinion names clinical trials you might be able to join." in en.text
    for code in ("refined", "alternative_proposed", ">changed<", "clinical_trials"):
        assert code not in en.text  # words, never the codes
    assert f'href="/case/documents/{doc_id}/download"' in en.text
    assert "Sample Breast Center Berlin" in en.text
    assert "You can ask the center 3 more questions about its opinion." in en.text
    assert 'href="/case/further-opinion"' in en.text


async def test_the_opinion_downloads_through_the_app_with_the_case_token(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    doc_id = fake.cases[opinion_case]["documents"][0]["document_id"]

    response = await browser.get(f"/case/documents/{doc_id}/download")

    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert "second-opinion.pdf" in response.headers["content-disposition"]
    [link] = fake.requests_to("POST", rf"/documents/{doc_id}/link$")
    assert link.headers["authorization"].startswith("Bearer ")


async def test_before_an_opinion_the_opinion_pages_lead_back_to_the_status(
    browser: Browser, fake: FakePlatform
) -> None:
    case_id = fake.add_case(status="accepted")
    await signed_in(browser, fake, case_id)

    for path in ("/case/opinion", "/case/opinion/question"):
        response = await browser.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/case/status"


# ---------------------------------------------------------------------- follow-up question


async def test_a_follow_up_question_is_sent_once_with_an_idempotency_key(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    question = "Can the surgery wait until after the summer?"

    page = await browser.get("/case/opinion/question")
    token = await browser.csrf("/case/opinion/question")
    first = await browser.client.post(
        "/case/opinion/question", data={"csrf_token": token, "question": question}
    )
    again = await browser.client.post(
        "/case/opinion/question", data={"csrf_token": token, "question": question}
    )

    assert page.status_code == 200 and "Надіслати запитання" in page.text
    assert first.status_code == again.status_code == 303
    sent = fake.requests_to("POST", r"/follow-up-questions$")
    assert [s.json() for s in sent] == [{"question": question}] * 2
    assert len({s.headers["idempotency-key"] for s in sent}) == 1
    assert len(fake.cases[opinion_case]["follow_up_questions"]) == 1
    opinion = await browser.get("/case/opinion")
    assert "Ваше запитання надіслано центру." in opinion.text
    assert question in opinion.text and "Чекаємо на відповідь центру." in opinion.text


async def test_an_empty_or_too_long_question_is_explained_and_kept(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    await english(browser, "/case/opinion/question")

    empty = await browser.post("/case/opinion/question", {"question": "  "})
    long = await browser.post("/case/opinion/question", {"question": "Why? " * 500})

    assert empty.status_code == long.status_code == 422
    assert 'class="error-summary"' in empty.text and "Write your question" in empty.text
    assert 'href="#question"' in empty.text
    assert "at most 2000 characters" in long.text
    assert "Why? Why?" in long.text  # what was typed is kept
    assert not fake.requests_to("POST", r"/follow-up-questions$")


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("window-closed", "The time to ask questions about this opinion is over."),
        ("no-questions-left", "You have asked all the questions you may ask"),
    ],
)
async def test_a_refused_follow_up_question_is_said_in_words_and_kept(
    browser: Browser, fake: FakePlatform, opinion_case: UUID, reason: str, words: str
) -> None:
    await signed_in(browser, fake, opinion_case)
    await english(browser, "/case/opinion/question")
    fake.fail_next["POST /follow-up-questions$"] = problem(
        409, "follow-up-refused", "refused", reason=reason
    )

    refused = await browser.post("/case/opinion/question", {"question": "Is it safe to fly?"})

    assert refused.status_code == 409
    assert words in refused.text
    assert "Is it safe to fly?</textarea>" in refused.text


# ------------------------------------------------------------------------- the meeting


async def test_the_meeting_shows_the_times_on_the_patients_and_the_centers_clock(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    the_meeting = fake.cases[opinion_case]["meetings"][0]
    path = f"/case/meetings/{the_meeting['id']}"

    kyiv = spaced((await browser.get(path)).text)
    warsaw = spaced((await browser.get(path + "?tz=Europe/Warsaw")).text)
    await english(browser, path)
    en = spaced((await browser.get(path)).text)

    assert "вівторок, 9 березня 2027 р., 15:30–16:15" in kyiv  # the patient's clock: Kyiv
    assert "У центрі: вівторок, 9 березня 2027 р., 14:30" in kyiv  # the center's: Berlin
    assert 'name="time_zone" value="Europe/Kyiv"' in kyiv
    assert 'data-time-zone="Europe/Kyiv"' in kyiv
    assert '<script src="/static/timezone.js" defer></script>' in kyiv
    assert "вівторок, 9 березня 2027 р., 14:30–15:15" in warsaw
    assert "Польща" in warsaw  # the zone by name
    assert 'name="time_zone" value="Europe/Warsaw"' in warsaw
    assert "Tuesday, 9 March 2027, 14:30–15:15" in en  # the session keeps the browser's zone
    assert "Germany (Berlin) Time" in en
    assert "Bring your questions." in en


async def test_booking_a_time_sends_the_slot_and_zone_once_then_shows_it_confirmed(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    the_meeting = fake.cases[opinion_case]["meetings"][0]
    path = f"/case/meetings/{the_meeting['id']}"
    chosen = the_meeting["slots"][1]["slot_id"]
    token = await browser.csrf(path)
    form = {"csrf_token": token, "slot_id": chosen, "time_zone": "Europe/Warsaw"}

    first = await browser.client.post(f"{path}/booking", data=form)
    again = await browser.client.post(f"{path}/booking", data=form)
    waiting = await browser.get(path)
    fake.confirm_booking(opinion_case, the_meeting["id"])
    booked = spaced((await browser.get(path)).text)

    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"] == path
    [sent] = fake.requests_to("POST", r"/booking$")  # the second click: that time is chosen
    assert sent.json() == {"slot_id": chosen, "time_zone": "Europe/Warsaw"}
    assert sent.headers["idempotency-key"]
    assert "Ваш час підтверджується" in waiting.text
    assert "Вашу зустріч заброньовано" in booked
    assert "середа, 10 березня 2027 р., 14:30–15:15" in booked  # on Warsaw's clock
    assert 'href="https://meet.example.org/tumour-board-7"' in booked
    assert "Перенести зустріч на цей час" in booked


async def test_a_booking_without_a_time_or_refused_by_intake_is_explained(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    the_meeting = fake.cases[opinion_case]["meetings"][0]
    path = f"/case/meetings/{the_meeting['id']}"
    await english(browser, path)

    none = await browser.post(f"{path}/booking", {"time_zone": "Europe/Kyiv"}, page=path)
    fake.fail_next["POST /booking$"] = problem(422, "slot-not-offered", "not offered")
    gone = await browser.post(
        f"{path}/booking",
        {"slot_id": the_meeting["slots"][0]["slot_id"], "time_zone": "Europe/Kyiv"},
        page=path,
    )
    fake.fail_next["POST /booking$"] = problem(
        409, "meeting-closed", "closed", meeting_status="cancelled"
    )
    closed = await browser.post(
        f"{path}/booking",
        {"slot_id": the_meeting["slots"][1]["slot_id"], "time_zone": "Europe/Kyiv"},
        page=path,
    )

    assert none.status_code == 422 and "Choose a time for the meeting" in none.text
    assert 'href="#slot_id-0"' in none.text
    assert gone.status_code == 422 and "That time is no longer offered." in gone.text
    first_slot = the_meeting["slots"][0]["slot_id"]
    assert re.search(rf'value="{first_slot}"[^>]*checked', gone.text)  # the choice is kept
    assert closed.status_code == 409 and "can no longer be changed" in closed.text


async def test_cancelling_the_meeting_asks_why_and_sends_the_reason_code(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    the_meeting = fake.cases[opinion_case]["meetings"][0]
    path = f"/case/meetings/{the_meeting['id']}"

    page = await browser.get(f"{path}/cancel")
    unanswered = await browser.post(f"{path}/cancel", {})
    done = await browser.post(f"{path}/cancel", {"reason": "none_of_the_times"})
    after = await browser.get(path)
    await english(browser, f"{path}/cancel")
    en = await browser.get(path)

    assert page.status_code == 200 and "Бажаєте скасувати зустріч?" in page.text
    assert unanswered.status_code == 422 and "Виберіть, чому ви скасовуєте зустріч" in (
        unanswered.text
    )
    assert done.status_code == 303
    [sent] = fake.requests_to("POST", r"/cancellation$")
    assert sent.json() == {"reason": "none_of_the_times"}
    assert sent.headers["idempotency-key"]
    assert "Зустріч скасовано. Ми повідомили центр." in after.text
    assert "You cancelled the meeting." in en.text and "None of the times suits me" in en.text
    assert "Book this time" not in en.text


async def test_another_cases_meeting_is_not_found_and_nothing_is_sent(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    other = fake.add_case(status="opinion_delivered", meetings=[meeting()])
    theirs = fake.cases[other]["meetings"][0]
    await signed_in(browser, fake, opinion_case)
    path = f"/case/meetings/{theirs['id']}"

    shown = await browser.get(path)
    cancel = await browser.get(f"{path}/cancel")
    token = await browser.csrf("/case/opinion")
    booked = await browser.client.post(
        f"{path}/booking", data={"csrf_token": token, "slot_id": theirs["slots"][0]["slot_id"]}
    )

    assert shown.status_code == cancel.status_code == booked.status_code == 404
    assert not fake.requests_to("POST", r"/booking$")


async def test_a_session_whose_token_is_of_another_case_sees_nothing_of_it(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    other = fake.add_case(status="opinion_delivered", opinion_outcome=OUTCOME)
    await signed_in(browser, fake, other)
    runtime = browser.client._transport.app.state.runtime  # type: ignore[attr-defined]
    session = runtime.sessions.new()
    token = fake.token_for(other)  # a token of `other` for a session of `opinion_case`
    session.open_case(opinion_case, token, datetime.now(UTC) + timedelta(minutes=10))
    await runtime.sessions.save(session)
    browser.client.cookies.set("referrals_session", session.key, domain="web.test")

    page = await browser.get("/case/opinion")

    assert page.status_code == 303 and page.headers["location"] == "/sign-in"


async def test_forms_without_the_csrf_token_are_refused(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    the_meeting = fake.cases[opinion_case]["meetings"][0]

    for path, data in (
        ("/case/opinion/question", {"question": "x"}),
        (f"/case/meetings/{the_meeting['id']}/booking", {"slot_id": "x"}),
        (f"/case/meetings/{the_meeting['id']}/cancel", {"reason": "other"}),
        ("/case/further-opinion/check", {}),
        ("/case/choose-center", {"center_code": "x"}),
    ):
        response = await browser.client.post(path, data=data)
        assert response.status_code == 403, path
    assert len([s for s in fake.seen if s.method == "POST"]) == 1  # the token, nothing else


# ------------------------------------------------------------------ a further opinion


async def test_a_further_opinion_asks_the_reason_then_the_consent_then_checks(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)

    reason_page = await browser.get("/case/further-opinion")
    no_reason = await browser.post("/case/further-opinion", {})
    reason = await browser.post("/case/further-opinion", {"reason": "conflicting_opinions"})
    sharing = await browser.get("/case/further-opinion/sharing")
    unanswered = await browser.post("/case/further-opinion/sharing", {})
    shared = await browser.post("/case/further-opinion/sharing", {"share": "no"})
    check = await browser.get("/case/further-opinion/check")
    sent = await browser.post("/case/further-opinion/check", {})
    status = await browser.get("/case/status")

    assert "Чому вам потрібен ще один висновок?" in reason_page.text
    assert "ще 2 висновки" in reason_page.text  # Ukrainian plural
    assert no_reason.status_code == 422 and 'href="#reason-0"' in no_reason.text
    assert reason.headers["location"] == "/case/further-opinion/sharing"
    # The consent is its own question, answered by nobody but the patient.
    assert "Чи може наступний центр прочитати висновок" in sharing.text
    assert "лише лікарям наступного онкологічного центру" in sharing.text
    assert "second-opinion.pdf" in sharing.text
    assert "checked" not in sharing.text
    assert unanswered.status_code == 422 and 'href="#share-0"' in unanswered.text
    assert shared.headers["location"] == "/case/further-opinion/check"
    assert "Не передається: наступний центр його не побачить" in check.text
    assert "Висновок відрізняється від того, що кажуть мої лікарі" in check.text
    assert sent.status_code == 303 and sent.headers["location"] == "/case/status"
    [request] = fake.requests_to("POST", r"/further-opinion$")
    assert request.json() == {"reason": "conflicting_opinions", "share_earlier_opinions": False}
    assert request.headers["idempotency-key"]
    assert "Ви попросили ще один висновок." in status.text


async def test_a_further_opinion_can_share_the_earlier_one_and_change_the_answer(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    await english(browser, "/case/further-opinion")

    await browser.post("/case/further-opinion", {"reason": "another_view"})
    await browser.post("/case/further-opinion/sharing", {"share": "no"})
    again = await browser.get("/case/further-opinion/sharing")
    await browser.post("/case/further-opinion/sharing", {"share": "yes"})
    check = await browser.get("/case/further-opinion/check")
    await browser.post("/case/further-opinion/check", {})

    assert re.search(r'value="no"\s+checked', again.text)  # the answer given is shown
    assert "Shared with the next center" in check.text
    [request] = fake.requests_to("POST", r"/further-opinion$")
    assert request.json() == {"reason": "another_view", "share_earlier_opinions": True}


async def test_a_refused_further_opinion_is_said_in_words(
    browser: Browser, fake: FakePlatform, opinion_case: UUID
) -> None:
    await signed_in(browser, fake, opinion_case)
    await english(browser, "/case/further-opinion")
    await browser.post("/case/further-opinion", {"reason": "other"})
    await browser.post("/case/further-opinion/sharing", {"share": "yes"})
    fake.fail_next["POST /further-opinion$"] = problem(
        409, "further-opinion-refused", "no", reason="no-opinions-left"
    )

    refused = await browser.post("/case/further-opinion/check", {})
    fake.cases[opinion_case]["further_opinions_left"] = 0
    closed = await browser.get("/case/further-opinion")

    assert refused.status_code == 409
    assert "Your case has had all the opinions it may get." in refused.text
    assert "Shared with the next center" in refused.text  # the answers are kept
    assert closed.status_code == 409 and "all the opinions it may get" in closed.text


# ---------------------------------------------------------------- choosing the center

PROPOSAL = {
    "proposals": [
        {
            "rank": 1,
            "center_code": "sample-breast-center-berlin",
            "center_name": "Sample Breast Center Berlin",
            "center_country": "DE",
            "turnaround_days": 21,
            "price": {"amount": 2500.0, "currency": "EUR"},
            "why": "Reviews C50 and reads English.",
        },
        {
            "rank": 2,
            "center_code": "sample-tumour-center-heidelberg",
            "center_name": "Sample Tumour Center Heidelberg",
            "center_country": "DE",
            "turnaround_days": 14,
            "price": None,
            "why": "Ranks second: a longer queue of C50 cases.",
        },
    ],
    "choose_by": "2027-03-12T10:00:00+00:00",
}


async def test_the_patient_chooses_one_of_the_proposed_centers(
    browser: Browser, fake: FakePlatform
) -> None:
    case_id = fake.add_case(
        status="choosing_center", patient_chooses_center=True, center_proposal=PROPOSAL
    )
    await signed_in(browser, fake, case_id)

    status = await browser.get("/case/status")
    page = spaced((await browser.get("/case/choose-center")).text)
    none = await browser.post("/case/choose-center", {})
    chosen = await browser.post(
        "/case/choose-center", {"center_code": "sample-tumour-center-heidelberg"}
    )
    after = await browser.get("/case/status")
    await english(browser, "/case/choose-center")
    closed = await browser.get("/case/choose-center")

    assert 'href="/case/choose-center"' in status.text
    assert "Чекаємо, поки ви виберете онкологічний центр" in status.text
    assert "Sample Breast Center Berlin" in page and "Німеччина" in page
    assert "через 21 день" in page and "через 14 днів" in page  # Ukrainian plurals
    assert "2 500,00 EUR" in page and "Центр не публікує ціни." in page
    assert "Reviews C50 and reads English." in page
    assert "checked" not in page  # nothing chosen for the patient
    assert none.status_code == 422 and 'href="#center_code-0"' in none.text
    assert chosen.status_code == 303
    [sent] = fake.requests_to("POST", r"/center-choice$")
    assert sent.json() == {"center_code": "sample-tumour-center-heidelberg"}
    assert sent.headers["idempotency-key"]
    assert "Ви вибрали центр Sample Tumour Center Heidelberg." in after.text
    assert closed.status_code == 409 and "The time to choose is over" in closed.text


async def test_a_closed_choice_is_explained_with_nothing_lost(
    browser: Browser, fake: FakePlatform
) -> None:
    case_id = fake.add_case(status="choosing_center", center_proposal=PROPOSAL)
    await signed_in(browser, fake, case_id)
    await english(browser, "/case/choose-center")
    fake.fail_next["POST /center-choice$"] = problem(409, "choice-closed", "too late")

    refused = await browser.post(
        "/case/choose-center", {"center_code": "sample-breast-center-berlin"}
    )

    assert refused.status_code == 409
    assert "The time to choose is over" in refused.text
    assert re.search(r'value="sample-breast-center-berlin"[^>]*checked', refused.text)


async def test_the_destination_step_asks_whether_the_patient_chooses_the_center(
    browser: Browser, fake: FakePlatform
) -> None:
    from tests.unit.web.conftest import ANSWERS, fill_new_case

    page = await browser.get("/new/destination")
    await fill_new_case(
        browser, {**ANSWERS, "destination": {**ANSWERS["destination"], "center_choice": "choose"}}
    )
    check = await browser.get("/new/check")
    await browser.post("/new/check")
    wrong = await browser.post("/new/destination", {"destination": "abroad", "center_choice": "x"})

    assert "Як обрати онкологічний центр?" in page.text
    assert re.search(r'value="automatic"\s+checked', page.text)  # routing chooses by default
    assert "Я хочу сам(а) вибрати серед найкращих онкологічних центрів" in check.text
    [create] = fake.requests_to("POST", r"/v1/cases$")
    assert create.json()["patient_chooses_center"] is True
    assert wrong.status_code == 422 and 'href="#center_choice-0"' in wrong.text
