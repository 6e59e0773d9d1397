"""The center console, after it offered the consultation meeting: new times (with an
Idempotency-Key), a cancellation in the center's words, and held or missed once the booked time
has started; each only while the meeting allows it, partners' problems on the form with what was
typed kept, another center's referral not found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import OTHER_CENTER, FakePlatform, problem

pytestmark = pytest.mark.unit


def _slot(start: datetime) -> dict[str, str]:
    return {
        "slot_id": str(uuid4()),
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=60)).isoformat(),
    }


def with_meeting(fake: FakePlatform, status: str = "offered", **fields: Any) -> tuple[UUID, str]:
    start = datetime.now(UTC) + timedelta(days=2)
    meeting = {
        "key": "",
        "id": str(uuid4()),
        "status": status,
        "place": {"mode": "video", "join_url": "https://meet.example.org/a", "time_zone": "UTC"},
        "slots": [_slot(start)],
        "booked_slot": None,
        "note": None,
        "cancelled_by": None,
        **fields,
    }
    referral_id = fake.add_referral(
        status="completed",
        expected_opinion_at=datetime.now(UTC).isoformat(),
        meetings=[meeting],
    )
    return referral_id, meeting["id"]


def times(days: int, clock: str = "10:00") -> dict[str, str]:
    when = datetime.now(UTC) + timedelta(days=days)
    return {
        "time_zone": "Europe/Berlin",
        "slot_1_day": str(when.day),
        "slot_1_month": str(when.month),
        "slot_1_year": str(when.year),
        "slot_1_time": clock,
        "slot_1_minutes": "45",
    }


async def test_the_referral_page_offers_the_actions_the_meeting_allows(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    base = f"/center/referrals/{referral_id}/meetings/{meeting_id}"

    page = await staff_browser.get(f"/center/referrals/{referral_id}")

    assert f'href="{base}/times"' in page.text
    assert f'href="{base}/cancel"' in page.text
    assert f'href="{base}/outcome"' not in page.text  # nothing booked, nothing started
    assert (await staff_browser.get(f"{base}/outcome")).status_code == 303


async def test_new_times_are_sent_once_with_an_idempotency_key(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    url = f"/center/referrals/{referral_id}/meetings/{meeting_id}/times"

    page = await staff_browser.get(url)
    token = await staff_browser.csrf(url)
    first = await staff_browser.client.post(url, data={"csrf_token": token, **times(5)})
    again = await staff_browser.client.post(url, data={"csrf_token": token, **times(5)})

    assert page.status_code == 200 and "Offer new times for the consultation meeting" in page.text
    assert '<option value="UTC" selected>' in page.text  # the meeting's own zone
    assert first.status_code == 303
    sent = fake.requests_to("POST", r"/meetings/[0-9a-f-]+/slots$")
    assert len({s.headers["idempotency-key"] for s in sent}) == 1
    starts = datetime.fromisoformat(sent[0].json()["slots"][0]["starts_at"])
    assert (starts.hour, starts.minute) == (10, 0)
    assert starts.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Berlin's clock
    assert again.status_code == 303  # the meeting is still open: partners replays the key
    shown = await staff_browser.get(f"/center/referrals/{referral_id}")
    assert "The new times were sent." in shown.text
    assert "Offered new times for the consultation meeting" in shown.text  # who did what


async def test_a_new_time_partners_refuses_is_shown_beside_its_row_and_kept(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    url = f"/center/referrals/{referral_id}/meetings/{meeting_id}/times"
    now = datetime.now(UTC)

    refused = await staff_browser.post(url, {**times(0, now.strftime("%H:%M")), "time_zone": "UTC"})
    empty = await staff_browser.post(url, {"time_zone": "UTC"})

    assert refused.status_code == 422
    assert "A time starts at least 2 hours from now." in refused.text
    assert 'href="#slot_1_day"' in refused.text
    assert f'value="{now.strftime("%H:%M")}"' in refused.text
    assert empty.status_code == 422 and "Offer at least one time" in empty.text


async def test_the_center_cancels_in_its_own_words(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    url = f"/center/referrals/{referral_id}/meetings/{meeting_id}/cancel"
    words = "Our tumour board moved to Thursday; we will offer new times."

    page = await staff_browser.get(url)
    blank = await staff_browser.post(url, {"reason": "   "})
    done = await staff_browser.post(url, {"reason": words})

    assert "the patient is told at once" in page.text.lower()
    assert blank.status_code == 422 and "Say why you cancel" in blank.text
    assert done.status_code == 303
    [sent] = fake.requests_to("POST", r"/cancellation$")
    assert sent.json() == {"reason": words}
    shown = await staff_browser.get(f"/center/referrals/{referral_id}")
    assert "The meeting was cancelled." in shown.text
    assert f"/meetings/{meeting_id}/cancel" not in shown.text  # nothing left to do with it
    assert (await staff_browser.get(url)).status_code == 303


async def test_a_cancellation_partners_refuses_keeps_the_words(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    url = f"/center/referrals/{referral_id}/meetings/{meeting_id}/cancel"
    await staff_browser.get(url)
    fake.fail_next["POST /cancellation$"] = problem(
        409, "meeting-closed", "The meeting was held already.", meeting_status="held"
    )

    refused = await staff_browser.post(url, {"reason": "We cannot make it."})

    assert refused.status_code == 409
    assert "The meeting was held already." in refused.text
    assert "We cannot make it.</textarea>" in refused.text


async def test_held_or_missed_is_recorded_once_the_booked_time_started(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    started = _slot(datetime.now(UTC) - timedelta(minutes=5))
    referral_id, meeting_id = with_meeting(fake, status="booked", booked_slot=started)
    url = f"/center/referrals/{referral_id}/meetings/{meeting_id}/outcome"

    referral = await staff_browser.get(f"/center/referrals/{referral_id}")
    page = await staff_browser.get(url)
    none = await staff_browser.post(url, {})
    done = await staff_browser.post(url, {"outcome": "missed"})

    assert f'href="{url}"' in referral.text
    assert "Did the consultation meeting take place?" in page.text
    assert none.status_code == 422 and 'href="#outcome-0"' in none.text
    assert done.status_code == 303
    [sent] = fake.requests_to("POST", r"/outcome$")
    assert sent.json() == {"outcome": "missed"}
    assert fake.referrals[referral_id]["meetings"][0]["status"] == "missed"


async def test_a_booked_meeting_before_its_start_cannot_be_recorded(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    ahead = _slot(datetime.now(UTC) + timedelta(days=1))
    referral_id, meeting_id = with_meeting(fake, status="booked", booked_slot=ahead)

    page = await staff_browser.get(f"/center/referrals/{referral_id}")
    response = await staff_browser.get(
        f"/center/referrals/{referral_id}/meetings/{meeting_id}/outcome"
    )

    assert "/outcome" not in page.text
    assert response.status_code == 303


async def test_another_centers_referral_or_meeting_is_not_found(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    fake.referrals[referral_id]["center_code"] = OTHER_CENTER
    own_id, _ = with_meeting(fake)

    theirs = await staff_browser.get(f"/center/referrals/{referral_id}/meetings/{meeting_id}/times")
    no_such = await staff_browser.get(f"/center/referrals/{own_id}/meetings/{uuid4()}/cancel")

    assert theirs.status_code == no_such.status_code == 404
    assert not fake.requests_to("POST", r"/meetings/")


async def test_the_meeting_pages_are_in_ukrainian_too(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    referral_id, meeting_id = with_meeting(fake)
    await staff_browser.client.get(f"/center/language/uk?next=/center/referrals/{referral_id}")
    base = f"/center/referrals/{referral_id}/meetings/{meeting_id}"

    times_page = await staff_browser.get(f"{base}/times")
    cancel_page = await staff_browser.get(f"{base}/cancel")

    assert '<html lang="uk">' in times_page.text
    assert "Запропонувати інший час консультаційної зустрічі" in times_page.text
    assert "Скасувати консультаційну зустріч" in cancel_page.text
