"""Partners' use cases against a fake unit of work and an in-memory repository: a center's
answers (accept, decline, ask for information, deliver the opinion, confirm a shipment), the
case's withdrawal and the patient's follow-up question; what each changes, the events it queues,
what it refuses, and that it never commits (its caller does). No database: the integration tests
run the same rules on a real one (tests/integration/partners)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from referrals_common.auth.api_keys import key_digest, parse_api_key, verify_secret
from referrals_common.contracts import (
    CaseFollowUpAsked,
    DeclineReason,
    DocumentStored,
    OpinionOutcome,
    RequestedItem,
)
from referrals_common.contracts.intake import (
    AgeGroup,
    CaseReadyForReferral,
    ClinicalSummary,
    ReferralReason,
)
from referrals_partners.centers import issue_key, revoke_key
from referrals_partners.models import (
    ApiClient,
    CaseDocument,
    CenterRow,
    FollowUpQuestion,
    InformationRequest,
    Meeting,
    Referral,
    RoutingCase,
    Shipment,
    Webhook,
    WebhookDelivery,
)
from referrals_partners.repository import OPEN, CenterVersion
from referrals_partners.service import (
    IllegalAction,
    InvalidAnswer,
    OpinionNotOwn,
    OpinionNotStored,
    Partners,
    ReferralNotFound,
    ShipmentNotFound,
)
from tests.unit.fakes import FakeUnitOfWork, SessionUsed, StatementCountingOutbox
from tests.unit.partners.helpers import RATES, center, destination

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE = uuid.UUID("00000000-0000-4000-8000-0000000000ca")
DOC = uuid.UUID("00000000-0000-4000-8000-0000000000d0")
CHARITE, NIO = "charite-berlin", "nio-warsaw"
PEPPER = b"pepper-for-unit-tests"


@dataclass
class FakePartnersRepository:
    """`PartnersRepository` in memory: the rows a use case reads and adds, and what it asked
    to change in bulk (deliveries cancelled, requests ended, case statuses set)."""

    cases: dict[UUID, RoutingCase] = field(default_factory=dict)
    referrals: dict[UUID, Referral] = field(default_factory=dict)
    docs: dict[UUID, CaseDocument] = field(default_factory=dict)
    requests: dict[UUID, InformationRequest] = field(default_factory=dict)
    shipments: dict[UUID, Shipment] = field(default_factory=dict)
    questions: dict[UUID, FollowUpQuestion] = field(default_factory=dict)
    centers: dict[str, CenterRow] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    added: list[Any] = field(default_factory=list)
    centers_read: list[list[str] | None] = field(default_factory=list)
    """The codes of each read of centers' rows (their profiles), in order."""
    referral_reads: int = 0
    """Queries of a case's referrals."""
    webhook_reads: int = 0
    """Queries of a center's webhook."""
    cancelled_deliveries: list[UUID] = field(default_factory=list)
    ended_requests: list[tuple[UUID, str]] = field(default_factory=list)
    locked: list[UUID] = field(default_factory=list)
    keys: dict[str, ApiClient] = field(default_factory=dict)

    def add(self, row: Any) -> None:
        self.added.append(row)
        if isinstance(row, ApiClient):
            self.keys[row.key_id] = row
        elif isinstance(row, Referral):
            self.referrals[row.id] = row
        elif isinstance(row, InformationRequest):
            self.requests[row.id] = row

    async def refresh(self, row: object) -> None:
        return None

    async def lock_case(self, case_id: UUID) -> RoutingCase:
        self.locked.append(case_id)
        return self.cases.setdefault(
            case_id, RoutingCase(case_id=case_id, status="new", attempts=0)
        )

    async def case(
        self, case_id: UUID, *, lock: bool = False, fresh: bool = False
    ) -> RoutingCase | None:
        if lock:
            self.locked.append(case_id)
        return self.cases.get(case_id)

    async def set_case_status(self, case_id: UUID, status: str, at: datetime) -> None:
        case = self.cases[case_id]
        case.status, case.updated_at = status, at

    async def referral(self, referral_id: UUID, *, fresh: bool = False) -> Referral | None:
        return self.referrals.get(referral_id)

    async def open_referral(self, case_id: UUID) -> Referral | None:
        self.referral_reads += 1
        return next(
            (r for r in self.referrals.values() if r.case_id == case_id and r.status in OPEN),
            None,
        )

    async def referrals_of_case(self, case_id: UUID) -> list[Referral]:
        self.referral_reads += 1
        mine = [r for r in self.referrals.values() if r.case_id == case_id]
        return sorted(mine, key=lambda r: r.attempt)

    async def center_versions(self, since: datetime) -> list[CenterVersion]:
        return [
            CenterVersion(row.code, row.updated_at, row.active, 0, row.code in self.webhooks)
            for row in self.centers.values()
        ]

    async def center_rows(self, codes: list[str] | None = None) -> list[CenterRow]:
        self.centers_read.append(None if codes is None else sorted(codes))
        return [row for row in self.centers.values() if codes is None or row.code in codes]

    async def center_row(self, code: str, *, lock: bool = False) -> CenterRow | None:
        return self.centers.get(code)

    async def document(self, document_id: UUID) -> CaseDocument | None:
        return self.docs.get(document_id)

    async def documents(self, ids: list[UUID]) -> list[CaseDocument]:
        return [self.docs[i] for i in ids if i in self.docs]

    async def store_document(self, stored: DocumentStored) -> None:
        self.docs.setdefault(
            stored.document_id,
            CaseDocument(
                document_id=stored.document_id,
                case_id=stored.case_id,
                kind=str(stored.kind),
                media_type=str(stored.media_type),
                referral_id=stored.referral_id,
            ),
        )

    async def shipment(self, shipment_id: UUID) -> Shipment | None:
        return self.shipments.get(shipment_id)

    async def follow_up(self, question_id: UUID) -> FollowUpQuestion | None:
        return self.questions.get(question_id)

    async def add_follow_up(self, asked: CaseFollowUpAsked, referral: Referral) -> bool:
        if asked.question_id in self.questions:
            return False
        self.questions[asked.question_id] = FollowUpQuestion(
            id=asked.question_id,
            referral_id=referral.id,
            case_id=referral.case_id,
            question=asked.question,
            asked_at=asked.asked_at,
        )
        return True

    async def end_requests(self, referral_id: UUID, status: str) -> None:
        self.ended_requests.append((referral_id, status))

    async def cancel_deliveries(self, referral_id: UUID) -> None:
        self.cancelled_deliveries.append(referral_id)

    async def webhook(self, center_code: str) -> Webhook | None:
        self.webhook_reads += 1
        return self.webhooks.get(center_code)

    async def open_meeting(self, referral_id: UUID) -> Meeting | None:
        return None

    async def api_key(self, key_id: str, *, lock: bool = False) -> ApiClient | None:
        return self.keys.get(key_id)


def center_row(code: str, **fields: Any) -> CenterRow:
    profile = center(code, **fields).model_dump(mode="json")
    return CenterRow(code=code, profile=profile, active=True, updated_at=NOW)


def ready(*document_ids: UUID) -> dict[str, Any]:
    """A C50.9 adult case for abroad with English documents, as `case.ready_for_referral`."""
    return CaseReadyForReferral(
        case_id=CASE,
        clinical=ClinicalSummary(
            icd10="C50.9",
            age_group=AgeGroup.ADULT,
            reasons=[ReferralReason.CONFIRM_DIAGNOSIS_OR_STAGE],
        ),
        destination=destination("abroad"),
        cross_border_transfer_allowed=True,
        document_ids=list(document_ids) or [DOC],
        document_languages=["en"],
    ).model_dump(mode="json")


def world(
    status: str = "offered", *, due: timedelta = timedelta(hours=24), **referral: Any
) -> tuple[Partners, FakeUnitOfWork, FakePartnersRepository, Referral]:
    """A case offered to Charité (or in `status` there), Charité and NIO in the registry, the
    case's one document stored; the use cases built on the in-memory repository."""
    repo = FakePartnersRepository()
    repo.cases[CASE] = RoutingCase(
        case_id=CASE,
        status=status,
        attempts=1,
        request=ready(),
        created_at=NOW - timedelta(days=2),
        updated_at=NOW - timedelta(days=1),
    )
    offer = Referral(
        case_id=CASE,
        center_code=CHARITE,
        attempt=1,
        status=status,
        offered_at=NOW - timedelta(hours=1),
        answer_due_at=NOW + due,
        decision={"rationale": "the best-ranked eligible center"},
        **referral,
    )
    repo.referrals[offer.id] = offer
    repo.docs[DOC] = CaseDocument(
        document_id=DOC, case_id=CASE, kind="pathology_report", media_type="application/pdf"
    )
    for code in (CHARITE, NIO):
        repo.centers[code] = center_row(code)
    partners = Partners(RATES, clock=lambda: NOW, repository=lambda _session: repo)
    return partners, FakeUnitOfWork(), repo, offer


async def test_a_center_accepts_its_offer_in_the_callers_unit_of_work() -> None:
    partners, uow, repo, offer = world()
    expected = NOW + timedelta(days=7)

    referral = await partners.accept(uow, CHARITE, offer.id, expected)

    assert referral.status == "accepted"
    assert referral.answered_at == NOW and referral.expected_opinion_at == expected
    assert repo.cases[CASE].status == "accepted"
    assert repo.cancelled_deliveries == [offer.id]  # the center has the offer
    assert CASE in repo.locked  # under the case's lock, as on every path
    assert uow.outbox.types() == ["referrals.referral.accepted.v1"]
    accepted = uow.outbox.events[0][0].data
    assert (accepted.referral_id, accepted.center_code) == (offer.id, CHARITE)
    assert uow.committed is False  # the caller commits


async def test_another_centers_referral_is_not_found_and_nothing_changes() -> None:
    partners, uow, repo, offer = world()

    with pytest.raises(ReferralNotFound):
        await partners.accept(uow, NIO, offer.id, NOW + timedelta(days=7))

    assert offer.status == "offered" and repo.cases[CASE].status == "offered"
    assert uow.outbox.events == [] and uow.committed is False


async def test_an_offer_past_its_answer_deadline_can_no_longer_be_accepted() -> None:
    partners, uow, _, offer = world(due=-timedelta(minutes=1))

    with pytest.raises(IllegalAction) as refused:
        await partners.accept(uow, CHARITE, offer.id, NOW + timedelta(days=7))

    assert refused.value.status == "expired" and refused.value.case_id == CASE
    assert offer.status == "offered" and uow.outbox.events == []


async def test_an_expected_opinion_date_in_the_past_is_refused() -> None:
    partners, uow, _, offer = world()

    with pytest.raises(InvalidAnswer) as refused:
        await partners.accept(uow, CHARITE, offer.id, NOW - timedelta(hours=1))

    assert refused.value.pointer == "/expected_opinion_at"
    assert offer.status == "offered" and uow.outbox.events == []


def ready_case() -> tuple[Partners, FakePartnersRepository]:
    """Charité and NIO in the registry, the case's one document stored, no referral yet."""
    partners, _, repo, offer = world()
    del repo.referrals[offer.id]
    case = repo.cases[CASE]
    case.status, case.attempts, case.request = "new", 0, None
    return partners, repo


def ready_event(case_id: UUID = CASE) -> CaseReadyForReferral:
    return CaseReadyForReferral.model_validate({**ready(), "case_id": str(case_id)})


async def test_a_ready_case_is_offered_with_one_outbox_statement_and_one_read_of_referrals() -> (
    None
):
    partners, repo = ready_case()
    uow = FakeUnitOfWork()
    uow.outbox = outbox = StatementCountingOutbox()

    await partners.on_case_ready(uow, ready_event())

    assert outbox.types() == ["referrals.referral.requested.v1", "referrals.referral.offered.v1"]
    assert outbox.statements == 1  # both events in one INSERT, in this order
    # One query of the case's referrals: whether one is open, and which centers were tried.
    assert repo.referral_reads == 1
    # Whether the chosen center has a webhook came with the centers' loads.
    assert repo.webhook_reads == 0
    assert repo.cases[CASE].status == "offered"


async def test_a_routed_case_makes_its_referral_and_delivery_without_the_models_constructors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The referral and its webhook delivery are made by `models.new_row`, not the table
    models' constructors (each sets every field through SQLAlchemy's instrumentation and asks
    pydantic about each default factory: ~10 times the CPU), and read as they would."""
    partners, repo = ready_case()
    for code in repo.centers:
        repo.webhooks[code] = Webhook(
            center_code=code, url="https://x.example/h", secret_encrypted="s"
        )

    def refused(self: object, **fields: Any) -> None:
        raise AssertionError(f"{type(self).__name__}(...) called")

    monkeypatch.setattr(Referral, "__init__", refused)
    monkeypatch.setattr(WebhookDelivery, "__init__", refused)

    await partners.on_case_ready(FakeUnitOfWork(), ready_event())

    (referral,) = [r for r in repo.added if isinstance(r, Referral)]
    (delivery,) = [d for d in repo.added if isinstance(d, WebhookDelivery)]
    assert (referral.attempt, referral.status, referral.outcome) == (1, "offered", None)
    assert referral.offer["data"]["referral_id"] == str(referral.id)
    assert (delivery.referral_id, delivery.status, delivery.attempts) == (referral.id, "pending", 0)
    assert delivery.payload == referral.offer


async def test_centers_profiles_are_read_again_only_when_their_row_changed() -> None:
    partners, repo = ready_case()

    await partners.on_case_ready(FakeUnitOfWork(), ready_event())
    assert repo.centers_read == [sorted([CHARITE, NIO])]  # validated once, then kept

    await partners.on_case_ready(FakeUnitOfWork(), ready_event(uuid.uuid4()))
    assert repo.centers_read == [sorted([CHARITE, NIO])]  # nothing changed: no profile read

    repo.centers[NIO].updated_at = NOW + timedelta(minutes=1)  # ops edited NIO's profile
    await partners.on_case_ready(FakeUnitOfWork(), ready_event(uuid.uuid4()))
    assert repo.centers_read[1:] == [[NIO]]

    repo.centers[CHARITE].active = False  # paused: a new version of its row, whatever the time
    uow = FakeUnitOfWork()
    await partners.on_case_ready(uow, ready_event(uuid.uuid4()))
    assert repo.centers_read[2:] == [[CHARITE]]
    assert uow.outbox.of_type("referrals.referral.offered.v1")[0].data.center_code == NIO


async def test_declined_referral_is_rerouted_to_the_next_center_never_the_same() -> None:
    partners, uow, repo, offer = world()
    repo.webhooks[NIO] = Webhook(
        center_code=NIO, url="https://nio.example/hook", secret_encrypted="x"
    )

    await partners.decline(uow, CHARITE, offer.id, DeclineReason.NO_CAPACITY, None)

    assert offer.status == "declined" and offer.decline_reason == "no_capacity"
    assert (offer.id, "cancelled") in repo.ended_requests
    assert uow.outbox.types() == [
        "referrals.referral.declined.v1",
        "referrals.referral.requested.v1",
        "referrals.referral.offered.v1",
    ]
    new = next(r for r in repo.added if isinstance(r, Referral))
    assert (new.center_code, new.attempt, new.status) == (NIO, 2, "offered")
    assert repo.cases[CASE].status == "offered" and repo.cases[CASE].attempts == 2
    offered = uow.outbox.of_type("referrals.referral.offered.v1")[0].data
    assert offered.clinical.questions == []  # the patient's words never go on a center's topic
    # NIO has a webhook: the offer is queued for it, in the same unit of work (known from the
    # centers' versions, not asked again).
    (delivery,) = [r for r in repo.added if isinstance(r, WebhookDelivery)]
    assert (delivery.center_code, delivery.referral_id) == (NIO, new.id)
    assert repo.webhook_reads == 0
    assert uow.committed is False


async def test_the_last_center_declining_makes_the_case_unroutable() -> None:
    partners, uow, repo, offer = world()
    del repo.centers[NIO]

    await partners.decline(uow, CHARITE, offer.id, DeclineReason.NO_CAPACITY, "full")

    assert uow.outbox.types() == [
        "referrals.referral.declined.v1",
        "referrals.case.unroutable.v1",
    ]
    unroutable = uow.outbox.of_type("referrals.case.unroutable.v1")[0].data
    assert str(unroutable.reason) == "all_centers_declined"
    assert unroutable.centers_tried == [CHARITE]
    assert repo.cases[CASE].status == "unroutable"


async def test_a_center_asks_for_information_and_the_referral_waits() -> None:
    partners, uow, repo, offer = world()
    due = NOW + timedelta(days=5)
    items = [RequestedItem(kind="imaging", detail="the latest CT report")]

    await partners.request_info(
        uow, CHARITE, offer.id, reason="staging is unclear", items=items, due_at=due
    )

    (asked,) = repo.requests.values()
    assert (asked.referral_id, asked.due_at, asked.resume_status) == (offer.id, due, "offered")
    assert asked.reminders_sent == 0  # both reminders are still to come
    assert offer.status == "info_requested" and repo.cases[CASE].status == "info_requested"
    assert uow.outbox.types() == ["referrals.referral.info_requested.v1"]
    assert uow.committed is False


async def test_the_patient_is_given_at_least_a_day_to_answer() -> None:
    partners, uow, repo, offer = world()

    with pytest.raises(InvalidAnswer) as refused:
        await partners.request_info(
            uow,
            CHARITE,
            offer.id,
            reason="staging is unclear",
            items=[RequestedItem(kind="imaging", detail="CT")],
            due_at=NOW + timedelta(hours=2),
        )

    assert refused.value.pointer == "/due_at"
    assert repo.requests == {} and offer.status == "offered" and uow.outbox.events == []


async def test_a_center_delivers_only_the_opinion_it_uploaded_for_this_referral() -> None:
    partners, uow, repo, offer = world("accepted", expected_opinion_at=NOW + timedelta(days=3))
    opinion = uuid.uuid4()

    with pytest.raises(OpinionNotStored):  # records' word of the upload is on its way
        await partners.deliver_opinion(uow, CHARITE, offer.id, opinion)
    with pytest.raises(OpinionNotOwn):  # the patient's pathology report
        await partners.deliver_opinion(uow, CHARITE, offer.id, DOC)
    assert offer.status == "accepted" and uow.outbox.events == []

    repo.docs[opinion] = CaseDocument(
        document_id=opinion,
        case_id=CASE,
        kind="opinion",
        media_type="application/pdf",
        referral_id=offer.id,
    )
    outcome = OpinionOutcome(diagnosis="confirmed", stage="confirmed", treatment="agreed")
    await partners.deliver_opinion(uow, CHARITE, offer.id, opinion, outcome)

    assert offer.status == "completed" and offer.opinion_document_id == opinion
    assert offer.outcome is not None and offer.outcome["diagnosis"] == "confirmed"
    assert repo.cases[CASE].status == "completed"
    assert uow.outbox.types() == ["referrals.referral.opinion_delivered.v1"]
    assert uow.committed is False and uow._after_commit  # the figures count once committed


async def test_an_opinion_is_delivered_only_on_an_accepted_referral() -> None:
    partners, uow, _, offer = world()

    with pytest.raises(IllegalAction) as refused:
        await partners.deliver_opinion(uow, CHARITE, offer.id, DOC)

    assert refused.value.status == "offered" and uow.outbox.events == []


async def test_a_shipment_is_confirmed_once_and_only_on_its_own_referral() -> None:
    partners, uow, repo, offer = world("accepted", expected_opinion_at=NOW + timedelta(days=3))
    shipment = Shipment(
        id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        referral_id=offer.id,
        case_id=CASE,
        material="slides",
        carrier="DHL",
        tracking_number="JD0001",
        sent_on=NOW.date(),
    )
    repo.shipments[shipment.id] = shipment

    with pytest.raises(ShipmentNotFound):
        await partners.confirm_shipment(uow, CHARITE, offer.id, uuid.uuid4())
    await partners.confirm_shipment(uow, CHARITE, offer.id, shipment.id)
    await partners.confirm_shipment(uow, CHARITE, offer.id, shipment.id)

    assert shipment.received_at == NOW
    assert uow.outbox.types() == ["referrals.referral.shipment_received.v1"]


async def test_a_withdrawn_case_ends_its_open_referral() -> None:
    partners, uow, repo, offer = world()

    await partners.on_case_withdrawn(uow, CASE)

    assert repo.cases[CASE].status == "withdrawn"
    assert offer.status == "withdrawn" and offer.answered_at == NOW
    assert repo.cancelled_deliveries == [offer.id]
    assert repo.ended_requests == [(offer.id, "cancelled")]
    assert uow.outbox.events == [] and uow.committed is False


async def test_a_follow_up_question_is_kept_once_and_the_center_told_without_its_words() -> None:
    partners, uow, repo, offer = world("completed")
    asked = CaseFollowUpAsked(
        case_id=CASE,
        referral_id=offer.id,
        question_id=uuid.uuid4(),
        question="Should I start the treatment before the scan?",
        asked_at=NOW,
    )

    await partners.on_follow_up_asked(uow, asked)
    await partners.on_follow_up_asked(uow, asked)  # redelivered

    assert repo.questions[asked.question_id].question == asked.question
    assert uow.outbox.types() == ["referrals.referral.follow_up_asked.v1"]
    told = uow.outbox.events[0][0].model_dump(mode="json")
    assert asked.question not in str(told)


async def test_a_centers_key_is_shown_once_kept_hashed_and_announced_to_records() -> None:
    repo, uow = FakePartnersRepository(), FakeUnitOfWork()

    key = await issue_key(
        uow,
        PEPPER,
        role="center",
        name=CHARITE,
        center_code=CHARITE,
        repository=lambda _session: repo,
    )

    _, key_id, secret = parse_api_key(key)
    row = repo.keys[key_id]
    assert (row.role, row.center_code, row.revoked_at) == ("center", CHARITE, None)
    assert secret not in row.secret_hash and verify_secret(secret, row.secret_hash, PEPPER)
    (issued,) = uow.outbox.of_type("referrals.center.credential_issued.v1")
    assert issued.data.key_sha256 == key_digest(secret)  # records keeps the digest's hash
    assert key not in issued.model_dump_json() and uow.committed is False


async def test_an_operators_key_is_not_announced_to_records() -> None:
    repo, uow = FakePartnersRepository(), FakeUnitOfWork()

    await issue_key(uow, PEPPER, role="ops", name="desk", repository=lambda _session: repo)

    assert [k.role for k in repo.keys.values()] == ["ops"] and uow.outbox.events == []


async def test_a_key_is_revoked_once_and_records_told_once() -> None:
    repo, uow = FakePartnersRepository(), FakeUnitOfWork()
    key = await issue_key(
        uow, PEPPER, role="center", name=NIO, center_code=NIO, repository=lambda _: repo
    )
    _, key_id, _ = parse_api_key(key)

    first = await revoke_key(uow, key_id, repository=lambda _session: repo)
    assert first is not None and first.revoked_at is not None
    again = await revoke_key(uow, key_id, repository=lambda _session: repo)
    unknown = await revoke_key(uow, "no-such-key", repository=lambda _session: repo)

    assert again is first and again.revoked_at == first.revoked_at and unknown is None
    (revoked,) = uow.outbox.of_type("referrals.center.credential_revoked.v1")
    assert (revoked.data.key_id, revoked.data.center_code) == (key_id, NIO)
    assert uow.committed is False


async def test_a_use_case_that_went_around_its_repository_fails_the_test() -> None:
    # The guard this file relies on: the use cases above touched no session.
    partners = Partners(RATES, clock=lambda: NOW)  # the real repository, on the guard
    with pytest.raises(SessionUsed):
        await partners.accept(FakeUnitOfWork(), CHARITE, uuid.uuid4(), NOW + timedelta(days=7))
