"""Who may enter the center console: a staff member signs in with a code e-mailed to their work
address (the same answer whether or not the address is known; 10 minutes, 5 tries, once), in a
session of the console's own (its cookie, its CSRF tokens), and sees only their center."""

from __future__ import annotations

from datetime import timedelta

import pytest

from referrals_web.bootstrap import Runtime
from referrals_web.models import utcnow
from referrals_web.staff import StaffError, disable_staff
from tests.unit.web.conftest import (
    CSRF,
    OTHER_STAFF_EMAIL,
    STAFF_EMAIL,
    Browser,
    RecordingMailer,
    add_staff_member,
    open_case,
    sign_in_staff,
)
from tests.unit.web.fake_platform import CENTER_KEY, OTHER_CENTER, FakePlatform

pytestmark = pytest.mark.unit


async def test_a_staff_member_gets_a_console_code_and_lands_on_the_inbox(
    browser: Browser, runtime: Runtime, mailer: RecordingMailer
) -> None:
    await add_staff_member(runtime)

    asked = await browser.post("/center/sign-in", {"email": "Dr.Weber@Center-A.example"})

    assert asked.status_code == 303 and asked.headers["location"] == "/center/sign-in/code"
    [sent] = mailer.sent
    assert (sent.to, sent.purpose, sent.locale) == (STAFF_EMAIL, "console", "en")
    signed = await browser.post("/center/sign-in/code", {"code": sent.code, "action": "check"})
    assert signed.status_code == 303 and signed.headers["location"] == "/center"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("referrals_staff=") and "Path=/center" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    inbox = await browser.get("/center")
    assert inbox.status_code == 200
    assert "Dr. Anna Weber" in inbox.text and "Offers waiting for your answer" in inbox.text
    again = await browser.post("/center/sign-in/code", {"code": sent.code}, page="/center")
    assert again.status_code == 303 and again.headers["location"] == "/center/sign-in"


async def test_an_unknown_or_disabled_address_gets_the_same_answer_and_no_email(
    browser: Browser, runtime: Runtime, mailer: RecordingMailer
) -> None:
    await add_staff_member(runtime)
    await disable_staff(runtime.staff, STAFF_EMAIL)

    disabled = await browser.post("/center/sign-in", {"email": STAFF_EMAIL})
    unknown = await browser.post("/center/sign-in", {"email": "someone@else.example"})

    assert disabled.status_code == unknown.status_code == 303
    assert mailer.sent == []
    page = await browser.get("/center/sign-in/code")
    assert "If the address is registered for a center" in page.text


async def test_a_wrong_address_is_said_plainly_and_kept(browser: Browser) -> None:
    page = await browser.post("/center/sign-in", {"email": "dr.weber-at-center-a"})

    assert page.status_code == 422
    assert 'id="error-summary"' in page.text and 'href="#email"' in page.text
    assert 'value="dr.weber-at-center-a"' in page.text


async def test_wrong_codes_run_out_and_an_old_code_expires(
    browser: Browser, runtime: Runtime, mailer: RecordingMailer
) -> None:
    member = await add_staff_member(runtime)
    await browser.post("/center/sign-in", {"email": STAFF_EMAIL})
    [sent] = mailer.sent
    wrong = "000000" if sent.code != "000000" else "111111"

    for _ in range(5):
        page = await browser.post("/center/sign-in/code", {"code": wrong, "action": "check"})
        assert page.status_code == 422
    locked = await browser.post("/center/sign-in/code", {"code": sent.code, "action": "check"})
    assert locked.status_code == 422 and "Too many tries with this code" in locked.text

    await browser.post("/center/sign-in/code", {"action": "resend"})
    fresh = mailer.sent[-1]
    stored = await runtime.staff_codes.get(member.id)
    assert stored is not None
    from dataclasses import replace

    await runtime.staff_codes.put(replace(stored, expires_at=utcnow() - timedelta(seconds=1)))
    expired = await browser.post("/center/sign-in/code", {"code": fresh.code, "action": "check"})
    assert expired.status_code == 422 and "This code has expired" in expired.text


async def test_without_a_staff_session_every_console_page_goes_to_sign_in(
    browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()
    doc = fake.referral_docs[referral_id][0]["id"]
    for url in (
        "/center",
        f"/center/referrals/{referral_id}",
        f"/center/referrals/{referral_id}/accept",
        f"/center/referrals/{referral_id}/decline",
        f"/center/referrals/{referral_id}/information",
        f"/center/referrals/{referral_id}/opinion",
        f"/center/referrals/{referral_id}/documents/{doc}",
    ):
        page = await browser.get(url)
        assert page.status_code == 303 and page.headers["location"] == "/center/sign-in", url
    # A form posted without a staff session's token is refused before anything happens.
    token = await browser.csrf("/center/sign-in")
    posted = await browser.client.post(
        f"/center/referrals/{referral_id}/accept",
        data={
            "csrf_token": token,
            "opinion_day": "1",
            "opinion_month": "1",
            "opinion_year": "2099",
        },
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/center/sign-in"
    assert fake.referrals[referral_id]["status"] == "offered"
    assert not fake.requests_to("POST", "/v1/partner/")


async def test_a_patients_session_never_opens_the_console(
    browser: Browser, fake: FakePlatform, runtime: Runtime
) -> None:
    await open_case(browser)  # a patient with a case in this browser
    patient_cookie = browser.client.cookies.get("referrals_session")
    assert patient_cookie

    page = await browser.get("/center")
    assert page.status_code == 303 and page.headers["location"] == "/center/sign-in"
    # The patient's cookie value presented as the console's cookie is no session there.
    browser.client.cookies.set("referrals_staff", patient_cookie, path="/center")
    page = await browser.get("/center")
    assert page.status_code == 303 and page.headers["location"] == "/center/sign-in"
    # …and a patient page's CSRF token is no good on a console form.
    token = await browser.csrf("/case")
    posted = await browser.client.post(
        "/center/sign-in", data={"csrf_token": token, "email": STAFF_EMAIL}
    )
    assert posted.status_code == 403


async def test_a_console_form_without_its_token_is_refused(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id = fake.add_referral()

    for token in (None, "0" * 64):
        data = {"opinion_day": "1", "opinion_month": "1", "opinion_year": "2099"}
        if token:
            data["csrf_token"] = token
        posted = await staff_browser.client.post(
            f"/center/referrals/{referral_id}/accept", data=data
        )
        assert posted.status_code == 403
    assert fake.referrals[referral_id]["status"] == "offered"


async def test_staff_of_one_center_never_see_another_centers_referral(
    browser: Browser, fake: FakePlatform, runtime: Runtime, mailer: RecordingMailer
) -> None:
    ours = fake.add_referral()
    theirs = fake.add_referral(center=OTHER_CENTER)
    their_doc = fake.referral_docs[theirs][0]["id"]
    await add_staff_member(runtime)
    await sign_in_staff(browser, mailer)

    inbox = await browser.get("/center")
    assert str(ours) in inbox.text and str(theirs) not in inbox.text
    for url in (
        f"/center/referrals/{theirs}",
        f"/center/referrals/{theirs}/accept",
        f"/center/referrals/{theirs}/documents/{their_doc}",
    ):
        page = await browser.get(url)
        assert page.status_code == 404, url
        assert "Page not found" in page.text
    posted = await browser.post(
        f"/center/referrals/{theirs}/decline",
        {"reason": "no_capacity"},
        page=f"/center/referrals/{ours}/decline",
    )
    assert posted.status_code == 404
    assert fake.referrals[theirs]["status"] == "offered"
    # Every call went with this center's own key: the platform decided.
    keys = {s.headers.get("x-api-key") for s in fake.seen if "/v1/partner/" in s.url}
    assert keys == {CENTER_KEY}


async def test_a_disabled_staff_member_is_signed_out_at_the_next_request(
    staff_browser: Browser, runtime: Runtime
) -> None:
    assert (await staff_browser.get("/center")).status_code == 200

    await disable_staff(runtime.staff, STAFF_EMAIL)

    page = await staff_browser.get("/center")
    assert page.status_code == 303 and page.headers["location"] == "/center/sign-in"


async def test_a_center_without_a_usable_key_is_told_plainly(
    browser: Browser, runtime: Runtime, mailer: RecordingMailer, fake: FakePlatform
) -> None:
    await add_staff_member(runtime)
    await sign_in_staff(browser, mailer)
    fake.center_keys.clear()  # partners revoked the key

    page = await browser.get("/center")

    assert page.status_code == 503
    assert "Your center's access is not set up" in page.text


async def test_signing_out_ends_the_staff_session_only(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    await open_case(staff_browser)
    token = CSRF.search((await staff_browser.get("/center")).text)
    assert token

    out = await staff_browser.client.post("/center/sign-out", data={"csrf_token": token[1]})

    assert out.status_code == 303 and out.headers["location"] == "/center/sign-in"
    assert (await staff_browser.get("/center")).status_code == 303
    assert (await staff_browser.get("/case")).status_code == 200  # the patient's page still works


async def test_a_centers_first_member_needs_its_key_and_the_key_is_kept_sealed(
    runtime: Runtime,
) -> None:
    with pytest.raises(StaffError):
        await add_staff_member(runtime, OTHER_STAFF_EMAIL, OTHER_CENTER, key=None)
    with pytest.raises(StaffError):
        await add_staff_member(runtime, OTHER_STAFF_EMAIL, OTHER_CENTER, key="not-a-key")

    await add_staff_member(runtime)
    second = await add_staff_member(runtime, "dr.lang@center-a.example", key=None)

    assert second.center_code == "sample-center-a"
    sealed = runtime.center_keys.store.rows["sample-center-a"]  # type: ignore[attr-defined]
    assert CENTER_KEY.encode() not in sealed
    assert await runtime.center_keys.get("sample-center-a") == CENTER_KEY
