"""A further opinion told to the patient: the request confirmed (another center, never offered the
case before; the earlier opinions with it or not, as the patient chose; what happens next), and a
further opinion no center can give, which must not read as "no center takes your case": the
opinion the patient has stands.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from referrals_common.contracts import (
    CaseFurtherOpinionRequested,
    CaseUnroutable,
    FurtherOpinionReason,
    UnroutableReason,
    new_event,
)
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications import consumers
from referrals_notifications.messages import UnroutableOpsAlert
from referrals_notifications.models import OpsAlert
from referrals_notifications.rendering import Renderer, build_webhook_message
from referrals_notifications.sender import Sender
from referrals_notifications.service import FRONT_END, OPS, PATIENT, Notifications

from .samples import CASE_REF
from .test_service import CASE, CENTER_CODE, FakeSession, as_the_sender_reads_it, deliveries

pytestmark = pytest.mark.unit

LOCALES = ("uk", "en")
OPINIONS = (uuid.UUID("7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"), uuid.uuid4())
CENTERS_TRIED = [CENTER_CODE, "nki-amsterdam"]
WEBHOOKS = frozenset({"kyiv-clinic"})


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def further_opinion(shared: int = 1, *, consent: bool = True) -> CaseFurtherOpinionRequested:
    return CaseFurtherOpinionRequested(
        case_id=CASE,
        opinion_round=len(OPINIONS) + 1 if shared > 1 else 2,
        reason=FurtherOpinionReason.CONFLICTING_OPINIONS,
        share_earlier_opinions=consent,
        shared_document_ids=list(OPINIONS[:shared]),
    )


def unroutable(opinion_round: int | None = 2, **overrides: Any) -> CaseUnroutable:
    fields: dict[str, Any] = {
        "case_id": CASE,
        "reason": UnroutableReason.ALL_CENTERS_DECLINED,
        "centers_tried": CENTERS_TRIED,
        "opinion_round": opinion_round,
        **overrides,
    }
    return CaseUnroutable(**fields)


def every_text(renderer: Renderer, trigger: T, row: dict[str, Any], locale: str) -> list[str]:
    """Everything a patient or a front end gets from the row: the e-mail's subject, text and
    HTML, the SMS, and last the webhook's body (which names the case by its id, as every webhook
    does)."""
    context = as_the_sender_reads_it(row, locale)
    email = renderer.render(trigger, context, C.EMAIL)
    sms = renderer.render(trigger, context, C.SMS)
    webhook = build_webhook_message(
        trigger,
        context,
        case_id=CASE,
        notification_id=uuid.uuid4(),
        occurred_at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    return [email.subject, email.text, email.html or "", sms.subject, sms.text, webhook.text]


def email_text(renderer: Renderer, trigger: T, row: dict[str, Any], locale: str) -> str:
    return renderer.render(trigger, as_the_sender_reads_it(row, locale), C.EMAIL).text


def test_the_consumer_handles_a_further_opinion_on_the_cases_topic() -> None:
    assert CaseFurtherOpinionRequested in consumers.HANDLED
    assert CaseFurtherOpinionRequested.topic in consumers.SUBSCRIBED_TOPICS
    assert CaseUnroutable in consumers.HANDLED


# The request confirmed.


async def test_a_further_opinion_is_further_opinion_requested_with_what_goes_along() -> None:
    rows = await deliveries(further_opinion(), rows={}, front_ends=WEBHOOKS)
    assert {(row["trigger"], row["audience"]) for row in rows} == {
        (T.FURTHER_OPINION_REQUESTED, PATIENT),
        (T.FURTHER_OPINION_REQUESTED, FRONT_END),
    }
    for row in rows:
        # whether, and how many, earlier opinions go: never the patient's reason or the ids
        assert row["facts"] == {"share_earlier_opinions": True, "shared_opinions": 1}


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_further_opinion_is_asked_of_a_center_never_offered_the_case(
    renderer: Renderer, locale: str
) -> None:
    [row] = await deliveries(further_opinion(), rows={})
    text = email_text(renderer, T.FURTHER_OPINION_REQUESTED, row, locale)
    expected = {
        "uk": [
            "ми звертаємося до іншого онкологічного центру по ще одну лікарську думку",
            "центр, якому ваш запит раніше ніколи не пропонували",
            "Як ви й вирішили, попередній висновок надсилається разом із запитом: новий центр "
            "зможе його прочитати.",
            "Ми напишемо вам, щойно центр прийме ваш запит.",
            "Висновок, який ви вже отримали, залишається на сторінці запиту",
        ],
        "en": [
            "we are now asking another cancer center for a further opinion on your case",
            "a center that has never been offered your request before",
            "As you chose, the earlier opinion goes with your request: the new center can read it.",
            "We will write to you as soon as a center accepts your request.",
            "The opinion you already have stays on your request page",
        ],
    }
    for phrase in expected[locale]:
        assert phrase in text, phrase


@pytest.mark.parametrize(
    ("shared", "consent", "uk", "en"),
    [
        (
            0,
            False,
            "Як ви й вирішили, попередні висновки не надсилаються разом із запитом",
            "As you chose, no earlier opinion goes with your request",
        ),
        (
            0,
            True,
            "Попередній висновок не надсилається разом із запитом, бо жодного ще не збережено",
            "No earlier opinion goes with your request, as none is stored yet",
        ),
        (
            2,
            True,
            "Як ви й вирішили, 2 попередні висновки надсилаються разом із запитом: новий центр "
            "зможе їх прочитати.",
            "As you chose, the 2 earlier opinions go with your request: the new center can read "
            "them.",
        ),
    ],
    ids=["not-shared", "consent-nothing-stored", "two-shared"],
)
async def test_the_earlier_opinions_go_only_as_the_patient_chose(
    renderer: Renderer, shared: int, consent: bool, uk: str, en: str
) -> None:
    [row] = await deliveries(further_opinion(shared, consent=consent), rows={})
    assert row["facts"] == {"share_earlier_opinions": consent, "shared_opinions": shared}
    uk_text = email_text(renderer, T.FURTHER_OPINION_REQUESTED, row, "uk")
    en_text = email_text(renderer, T.FURTHER_OPINION_REQUESTED, row, "en")
    assert uk in uk_text and en in en_text
    if not shared:
        assert "can read" not in en_text and "зможе його прочитати" not in uk_text


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_further_opinions_reason_and_documents_reach_no_message(
    renderer: Renderer, locale: str
) -> None:
    rows = await deliveries(further_opinion(2), rows={}, front_ends=WEBHOOKS)
    secrets = [*map(str, OPINIONS), "conflicting", "opinion_round"]
    for row in rows:
        *patient, webhook = every_text(renderer, T.FURTHER_OPINION_REQUESTED, row, locale)
        for part in (*patient, webhook):
            for secret in secrets:
                assert secret not in part, (secret, part)
        for part in patient:
            assert str(CASE) not in part and CASE_REF in part


def test_a_further_opinion_makes_the_case_ready_for_a_front_end(renderer: Renderer) -> None:
    row = {"trigger": T.FURTHER_OPINION_REQUESTED, "facts": {"share_earlier_opinions": False}}
    body = json.loads(every_text(renderer, T.FURTHER_OPINION_REQUESTED, row, "en")[-1])
    assert (body["trigger"], body["case_status"], body["action_required"]) == (
        "further_opinion_requested",
        "ready",
        False,
    )
    assert body["facts"] == {"share_earlier_opinions": False, "shared_opinions": 0}


# A further opinion no center can give: the opinion the patient has stands.

NO_CENTER_TAKES_IT = {
    "uk": ["ми не змогли знайти онкологічний центр", "не вдалося знайти центр"],
    "en": ["we have not been able to find a cancer center", "we could not find a center"],
}
"""What `case_unroutable` says: true of a first opinion, false of a further one."""


async def test_a_further_opinion_no_center_gives_is_its_own_notification() -> None:
    session = FakeSession({})
    uow = SimpleNamespace(session=session, native=None)
    await Notifications().on_event(uow, new_event(unroutable()))  # type: ignore[arg-type]
    [alert] = [row for row in session.added if isinstance(row, OpsAlert)]
    assert alert.kind == "further_opinion_unavailable"
    assert "opinion 2" in alert.detail and "charite-berlin, nki-amsterdam" in alert.detail

    rows = await deliveries(unroutable(), rows={}, front_ends=WEBHOOKS)
    by_audience = {row["audience"]: row for row in rows}
    assert set(by_audience) == {PATIENT, FRONT_END, OPS}
    for audience in (PATIENT, FRONT_END):
        row = by_audience[audience]
        assert row["trigger"] == T.FURTHER_OPINION_UNAVAILABLE != T.CASE_UNROUTABLE
        assert row["facts"] == {"reason": "all_centers_declined"}  # no center codes
    assert by_audience[OPS]["facts"] == {
        "reason": "all_centers_declined",
        "centers_tried": CENTERS_TRIED,
        "opinion_round": 2,
    }


async def test_a_first_opinion_no_center_gives_is_still_case_unroutable() -> None:
    rows = await deliveries(unroutable(None), rows={})
    assert {(row["trigger"], row["audience"]) for row in rows} == {
        (T.CASE_UNROUTABLE, PATIENT),
        (T.CASE_UNROUTABLE, OPS),
    }
    [patient] = [row for row in rows if row["audience"] == PATIENT]
    assert patient["facts"] == {"reason": "all_centers_declined"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("reason", list(UnroutableReason))
async def test_no_further_opinion_says_the_opinion_stands_not_that_no_center_takes_the_case(
    renderer: Renderer, locale: str, reason: UnroutableReason
) -> None:
    further = await deliveries(unroutable(reason=reason), rows={})
    [row] = [row for row in further if row["audience"] == PATIENT]
    *patient, webhook = every_text(renderer, T.FURTHER_OPINION_UNAVAILABLE, row, locale)
    for part in (*patient, webhook):
        for wrong in NO_CENTER_TAKES_IT[locale]:
            assert wrong not in part, (wrong, part)
        for code in (*CENTERS_TRIED, "opinion_round"):
            assert code not in part, (code, part)
    for part in patient:
        assert str(CASE) not in part and CASE_REF in part
    text = patient[1]
    expected = {
        "uk": [
            "жоден інший онкологічний центр не може надати ще одну лікарську думку",
            "Ваш висновок залишається в силі",
            "У висновку, який ви вже отримали, нічого не змінюється",
            "обговорити його зі своїм лікарем",
            "додаткові запитання на сторінці запиту, доки не минув строк",
        ],
        "en": [
            "no other cancer center can give a further opinion on your case at the moment",
            "Your opinion stands",
            "Nothing changes about the opinion you already have",
            "discuss it with your treating doctor",
            "follow-up questions on your request page, as long as the time for questions",
        ],
    }
    for phrase in expected[locale]:
        assert phrase in text, phrase

    # the same reason for a first opinion reads the other way
    first = await deliveries(unroutable(None, reason=reason), rows={})
    [first_row] = [row for row in first if row["audience"] == PATIENT]
    first_text = email_text(renderer, T.CASE_UNROUTABLE, first_row, locale)
    assert NO_CENTER_TAKES_IT[locale][0] in first_text
    assert first_text != text


def test_no_further_opinion_leaves_the_case_with_its_opinion_for_a_front_end(
    renderer: Renderer,
) -> None:
    row = {"trigger": T.FURTHER_OPINION_UNAVAILABLE, "facts": {"reason": "no_eligible_center"}}
    body = json.loads(every_text(renderer, T.FURTHER_OPINION_UNAVAILABLE, row, "en")[-1])
    assert (body["case_status"], body["action_required"]) == ("opinion_delivered", False)
    assert body["facts"] == {"reason": "no_eligible_center"}


def test_the_operators_read_which_opinion_could_not_be_had(renderer: Renderer) -> None:
    channels = SimpleNamespace(ops_email="ops@example.org", email="the e-mail channel")
    sender = Sender(db=None, renderer=renderer, box=None, channels=channels)  # type: ignore[arg-type]
    delivery = SimpleNamespace(
        case_id=CASE,
        facts={"reason": "no_eligible_center", "centers_tried": [], "opinion_round": 3},
        occurred_at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    channel, recipient, message = sender._ops_alert(delivery)  # type: ignore[arg-type,misc]
    assert (channel, recipient) == ("the e-mail channel", "ops@example.org")
    assert message.subject == (
        f"[referrals] Case {CASE_REF}: no center for further opinion 3 (no_eligible_center)"
    )
    assert "keeps the opinion it has" in message.text
    assert "no other center can give a further opinion now" in message.text
    assert "contact them about the options" not in message.text

    first = UnroutableOpsAlert(
        case_id=CASE,
        case_ref=CASE_REF,
        reason="no_eligible_center",
        occurred_at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    first_message = renderer.render_ops_alert(first)
    assert (
        first_message.subject == f"[referrals] Case {CASE_REF} is unroutable (no_eligible_center)"
    )
    assert "no cancer center will give an opinion on it" in first_message.text
    assert "further opinion" not in first_message.text
