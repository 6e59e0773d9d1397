"""Intake's use cases as a specification, against a fake unit of work and an in-memory
repository (`tests/unit/fakes.py`): open a case, edit the draft, record consents, submit it
(refused while incomplete), withdraw it. Each test reads what the use case changed, which events
it queued in the outbox, and that it committed nothing: its caller (an API route, a consumer)
commits. A use case that reaches past its repository to the session fails the test."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from referrals_common.contracts import (
    CaseContactShared,
    CaseReadyForReferral,
    CaseStatus,
    CaseStatusChanged,
    CaseSubmitted,
    CaseWithdrawn,
    CloudEvent,
    WithdrawalReason,
)
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_intake import service as service_module
from referrals_intake.lifecycle import (
    CONTACT_MISSING,
    CROSS_BORDER_CONSENT_MISSING,
    EVIDENCE_MISSING,
    PROCESSING_CONSENT_MISSING,
    DocumentState,
    IllegalTransition,
)
from referrals_intake.models import (
    AccessAudit,
    ApiClient,
    Case,
    CaseConsent,
    CaseDocument,
    InformationRequest,
    TimelineEntry,
    utcnow,
)
from referrals_intake.repository import FOLLOWING_STATES, CaseRepository, DocumentFact
from referrals_intake.schemas import CaseCreate, CaseUpdate
from referrals_intake.service import (
    CaseNotEditable,
    CaseNotFound,
    ConsentVersionUnknown,
    Intake,
    SubmissionIncomplete,
)
from tests.unit.fakes import FakeUnitOfWork, StatementCountingOutbox

pytestmark = pytest.mark.unit

FRONT_END = "kyivclinic01"
EMAIL = "olena.petrenko@example.org"
_, NOTIFICATIONS_PUBLIC = SealedBox.generate_keypair_base64()


class FakeCaseRepository:
    """`CaseRepository`'s surface that these use cases use, over dicts and lists."""

    def __init__(self) -> None:
        self.cases: dict[UUID, Case] = {}
        self.timeline_entries: list[TimelineEntry] = []
        self.consent_rows: dict[tuple[UUID, str], CaseConsent] = {}
        self.document_rows: list[CaseDocument] = []
        self.requests: list[InformationRequest] = []
        self.clients: dict[str, ApiClient] = {}
        self.audit_rows: list[AccessAudit] = []
        self.claimed_keys: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.flushes = 0
        self.saves = 0
        self.timeline_reads = 0

    def add_entry(self, values: dict[str, Any]) -> None:
        self.add(TimelineEntry(**values))

    def add(self, row: object) -> None:
        if isinstance(row, Case):
            self.cases[row.id] = row
        elif isinstance(row, TimelineEntry):
            self.timeline_entries.append(row)
        elif isinstance(row, CaseDocument):
            self.document_rows.append(row)
        elif isinstance(row, InformationRequest):
            self.requests.append(row)
        else:
            raise AssertionError(f"unexpected row {row!r}")

    async def insert_opened(
        self,
        case: dict[str, Any],
        entry: dict[str, Any],
        audit: dict[str, Any] | None = None,
        *,
        claim: dict[str, Any] | None = None,
    ) -> bool:
        assert case["id"] not in self.cases, "a case is opened once"
        if claim is not None:
            key = (claim["client_id"], claim["operation"], claim["key"])
            if key in self.claimed_keys:
                return False
            self.claimed_keys[key] = claim
        # Every column of each row is given, as the statement binds every one.
        assert set(case) >= {c.key for c in Case.__table__.columns}
        assert set(entry) >= {c.key for c in TimelineEntry.__table__.columns} - {"id"}
        self.cases[case["id"]] = Case(**case)
        self.timeline_entries.append(TimelineEntry(**entry))
        if audit is not None:
            assert set(audit) >= {c.key for c in AccessAudit.__table__.columns} - {"id"}
            self.audit_rows.append(AccessAudit(**audit))
        return True

    async def flush(self) -> None:
        self.flushes += 1

    async def get(self, case_id: UUID, *, for_update: bool = False) -> Case | None:
        return self.cases.get(case_id)

    async def client(self, key_id: str) -> ApiClient | None:
        return self.clients.get(key_id)

    async def consents(self, case_id: UUID) -> dict[str, CaseConsent]:
        return {kind: c for (cid, kind), c in self.consent_rows.items() if cid == case_id}

    async def upsert_consent(self, case_id: UUID, kind: str, version: str) -> CaseConsent:
        row = CaseConsent(case_id=case_id, kind=kind, version=version, granted_at=utcnow())
        self.consent_rows[case_id, kind] = row
        return row

    async def keep_document_facts(
        self, case_id: UUID, document_id: UUID, facts: dict[str, Any]
    ) -> bool:
        doc = next((d for d in self.document_rows if d.document_id == document_id), None)
        if doc is None:
            doc = CaseDocument(document_id=document_id, case_id=case_id)
            self.document_rows.append(doc)
        elif doc.case_id != case_id:
            return False
        for name, value in facts.items():
            setattr(doc, name, value)
        doc.updated_at = utcnow()
        return True

    async def documents(self, case_id: UUID, *, for_update: bool = False) -> list[CaseDocument]:
        return [d for d in self.document_rows if d.case_id == case_id]

    async def submission(
        self, case_id: UUID, claim: dict[str, Any] | None = None
    ) -> tuple[Case, dict[str, CaseConsent], list[DocumentState]] | None:
        case = self.cases.get(case_id)
        if case is None:
            return None
        return case, await self.consents(case_id), await self.document_states(case_id)

    async def locked_case(self, case_id: UUID) -> Case | None:
        return self.cases.get(case_id)

    async def keep_document_fact(
        self, case_id: UUID, document_id: UUID, facts: dict[str, Any], *, saved_after: bool = False
    ) -> DocumentFact:
        case = self.cases.get(case_id)
        if case is None:
            return DocumentFact(None)
        if not await self.keep_document_facts(case_id, document_id, facts):
            return DocumentFact(case)
        if case.status not in FOLLOWING_STATES:
            return DocumentFact(case, kept=True)
        return DocumentFact(
            case,
            True,
            await self.document_states(case_id),
            frozenset(await self.consents(case_id)),
        )

    async def save(
        self, case: Case, events: Sequence[CloudEvent[Any]] = (), *, audited: Any = None
    ) -> bool:
        # The case is this fake's own (as one of the session): the events go to the outbox.
        self.saves += 1
        return False

    # The real mapping from rows to states, over this fake's `documents`.
    document_states = CaseRepository.document_states

    async def close_requests(self, case_id: UUID, status: str, *, only: UUID | None = None) -> None:
        for r in self.requests:
            if r.case_id == case_id and r.status == "open" and only in (None, r.id):
                r.status = status

    async def entered_state_at(self, case_id: UUID) -> datetime | None:
        self.timeline_reads += 1
        times = [e.at for e in self.timeline_entries if e.case_id == case_id]
        return max(times) if times else None

    def timeline(self, case_id: UUID) -> list[tuple[str | None, str, str]]:
        return [
            (e.from_status, e.to_status, e.reason_code)
            for e in self.timeline_entries
            if e.case_id == case_id
        ]


@pytest.fixture
def repo() -> FakeCaseRepository:
    return FakeCaseRepository()


@pytest.fixture
def intake(repo: FakeCaseRepository) -> Intake:
    return Intake(
        cipher=FieldCipher.from_base64(FieldCipher.generate_key_base64()),
        contact_box=SealedBox(public_key_b64=NOTIFICATIONS_PUBLIC),
        repository=lambda session: repo,
    )


def case_create(**overrides: Any) -> CaseCreate:
    body: dict[str, Any] = {
        "diagnosis": {"icd10": "C50.9", "text": "Carcinoma of the left breast"},
        "stage": {"tnm": "cT2N1M0", "group": "IIB"},
        "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
        "destination": {"preference": "countries", "countries": ["DE"]},
        "locale": "uk",
        "date_of_birth": "1979-04-12",
        "contact": {"email": EMAIL},
    }
    body.update(overrides)
    return CaseCreate.model_validate(body)


async def open_draft(intake: Intake, **overrides: Any) -> Case:
    """A draft opened through `intake`, as its (fake) repository keeps it."""
    opened = await intake.open_case(FakeUnitOfWork(), FRONT_END, case_create(**overrides))
    assert opened is not None
    return cast(FakeCaseRepository, intake.repository(cast(Any, None))).cases[opened.id]


def store_document(repo: FakeCaseRepository, case: Case, kind: str, check: str) -> None:
    repo.add(
        CaseDocument(
            document_id=uuid4(), case_id=case.id, kind=kind, stored=True, check=check, language="uk"
        )
    )


async def complete(intake: Intake, repo: FakeCaseRepository, case: Case, check: str) -> None:
    """Evidence of the diagnosis (its language check `check`) and both consents."""
    store_document(repo, case, "pathology_report", check)
    uow = FakeUnitOfWork()
    await intake.give_consent(uow, case.id, "processing", "2026-01")
    await intake.give_consent(uow, case.id, "cross_border", "2026-01")
    assert uow.committed is False


async def test_opening_a_case_adds_a_draft_with_its_personal_data_sealed(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    uow = FakeUnitOfWork()

    opened = await intake.open_case(uow, FRONT_END, case_create())

    assert opened is not None
    assert list(repo.cases) == [opened.id]
    case = repo.cases[opened.id]
    assert (opened.status, opened.locale, opened.created_at) == (
        case.status,
        case.locale,
        case.created_at,
    )
    assert (case.status, case.client_id, case.icd10, case.age_group) == (
        CaseStatus.DRAFT,
        FRONT_END,
        "C50.9",
        "adult",
    )
    assert EMAIL.encode() not in case.personal_sealed
    assert intake.unseal(case)["contact"]["email"] == EMAIL
    assert repo.timeline(case.id) == [(None, CaseStatus.DRAFT, "case_opened")]
    assert uow.outbox.events == []
    assert repo.audit_rows == []
    assert uow.committed is False


async def test_opening_a_case_for_an_actor_writes_its_audit_row_with_the_case(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    uow = FakeUnitOfWork()

    case = await intake.open_case(uow, FRONT_END, case_create(), audited_as=f"client:{FRONT_END}")

    assert case is not None
    [row] = repo.audit_rows
    assert (row.actor, row.action, row.case_id, row.outcome) == (
        f"client:{FRONT_END}",
        "create_case",
        case.id,
        "ok",
    )
    assert row.at == case.created_at
    assert uow.committed is False


async def test_opening_a_case_under_a_key_claimed_before_opens_nothing(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    claim = {"client_id": FRONT_END, "operation": "create_case", "key": "k-1", "request_hash": "h"}
    first = await intake.open_case(
        FakeUnitOfWork(), FRONT_END, case_create(), audited_as="client:x", claim=claim
    )

    again = await intake.open_case(
        FakeUnitOfWork(), FRONT_END, case_create(), audited_as="client:x", claim=dict(claim)
    )

    assert first is not None
    assert again is None
    assert list(repo.cases) == [first.id]
    assert len(repo.audit_rows) == 1
    assert repo.timeline(first.id) == [(None, CaseStatus.DRAFT, "case_opened")]


async def test_editing_a_draft_changes_only_the_fields_given(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    uow = FakeUnitOfWork()

    edited = await intake.edit_case(
        uow,
        case.id,
        CaseUpdate.model_validate({"diagnosis": {"icd10": "C34.1", "text": "Lung, upper lobe"}}),
    )

    assert edited is repo.cases[case.id]
    assert (edited.icd10, edited.diagnosis_text, edited.stage_tnm) == (
        "C34.1",
        "Lung, upper lobe",
        "cT2N1M0",
    )
    assert intake.unseal(edited)["contact"]["email"] == EMAIL
    assert uow.outbox.events == []
    assert uow.committed is False


async def test_a_submitted_case_can_no_longer_be_edited(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    await intake.submit_case(FakeUnitOfWork(), case.id)

    with pytest.raises(CaseNotEditable):
        await intake.edit_case(
            FakeUnitOfWork(), case.id, CaseUpdate.model_validate({"questions": ["Surgery?"]})
        )
    assert case.icd10 == "C50.9"


async def test_an_unknown_case_or_consent_version_is_refused(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)

    with pytest.raises(CaseNotFound):
        await intake.submit_case(FakeUnitOfWork(), uuid4())
    with pytest.raises(ConsentVersionUnknown):
        await intake.give_consent(FakeUnitOfWork(), case.id, "processing", "1999-01")
    assert repo.consent_rows == {}


async def test_an_incomplete_case_is_not_submitted_and_says_what_it_lacks(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake, contact={"email": None, "phone": None})
    uow = FakeUnitOfWork()

    with pytest.raises(SubmissionIncomplete) as refused:
        await intake.submit_case(uow, case.id)

    assert refused.value.missing == [
        CONTACT_MISSING,
        EVIDENCE_MISSING,
        PROCESSING_CONSENT_MISSING,
        CROSS_BORDER_CONSENT_MISSING,  # Germany is abroad
    ]
    assert (case.status, case.submitted_at) == (CaseStatus.DRAFT, None)
    assert repo.timeline(case.id) == [(None, CaseStatus.DRAFT, "case_opened")]
    assert uow.outbox.events == []
    assert uow.committed is False


async def test_a_front_end_that_takes_webhooks_reaches_a_patient_without_contact(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    repo.clients[FRONT_END] = ApiClient(
        key_id=FRONT_END, name="Kyiv clinic", secret_hash="0" * 64, takes_webhooks=True
    )
    case = await open_draft(intake, contact={"email": None, "phone": None})
    await complete(intake, repo, case, check="pending")

    submitted = await intake.submit_case(FakeUnitOfWork(), case.id)

    assert submitted.status == CaseStatus.SUBMITTED


async def test_a_complete_case_is_submitted_and_its_events_queued_without_personal_data(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    uow = FakeUnitOfWork()
    uow.outbox = outbox = StatementCountingOutbox()

    submitted = await intake.submit_case(uow, case.id)

    assert submitted.status == CaseStatus.SUBMITTED
    assert submitted.submitted_at is not None
    assert repo.timeline(case.id)[-1] == (
        CaseStatus.DRAFT,
        CaseStatus.SUBMITTED,
        "patient_submitted",
    )
    assert uow.outbox.types() == [
        CaseSubmitted.event_type,
        CaseContactShared.event_type,
        CaseStatusChanged.event_type,
    ]
    assert outbox.statements == 1  # the submission's events in one statement
    (event,) = uow.outbox.of_type(CaseSubmitted.event_type)
    assert event.subject == str(case.id)
    assert (event.data.processing_consent_version, event.data.cross_border_consent_version) == (
        "2026-01",
        "2026-01",
    )
    # The contact travels sealed to notifications, never readable in an event.
    for published, _topic in uow.outbox.events:
        assert EMAIL not in published.model_dump_json()
    assert uow.committed is False


async def test_a_case_whose_documents_are_all_accepted_is_ready_for_referral_on_submission(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="accepted")
    uow = FakeUnitOfWork()
    uow.outbox = outbox = StatementCountingOutbox()

    ready = await intake.submit_case(uow, case.id)

    assert ready.status == CaseStatus.READY
    assert [to for _, to, _ in repo.timeline(case.id)] == [
        CaseStatus.DRAFT,
        CaseStatus.SUBMITTED,
        CaseStatus.READY,
    ]
    assert uow.outbox.types() == [
        CaseSubmitted.event_type,
        CaseContactShared.event_type,
        CaseStatusChanged.event_type,
        CaseStatusChanged.event_type,
        CaseReadyForReferral.event_type,
    ]
    assert outbox.statements == 1
    (event,) = uow.outbox.of_type(CaseReadyForReferral.event_type)
    assert event.data.cross_border_transfer_allowed is True
    assert event.data.document_languages == ["uk"]
    assert uow.committed is False


async def test_a_transition_counts_the_time_in_state_from_the_case_row_not_its_timeline(
    intake: Intake, repo: FakeCaseRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the case entered its state is on its row (set at opening and by every
    transition, the same time as the transition's timeline entry): no statement reads the
    timeline. A row an older version moved (no time on it) falls back to its last entry."""
    observed: list[tuple[str, float]] = []

    class TimeInState:
        def labels(self, service: str, state: str) -> Any:
            return type("Child", (), {"observe": lambda _, s: observed.append((state, s))})()

    monkeypatch.setattr(service_module, "CASE_TIME_IN_STATE", TimeInState())
    case = await open_draft(intake)
    assert case.status_since == case.created_at
    await complete(intake, repo, case, check="accepted")
    case.status_since = case.created_at - timedelta(hours=2)  # opened two hours ago
    uow = FakeUnitOfWork()

    await intake.submit_case(uow, case.id)
    await uow.commit()

    assert repo.timeline_reads == 0
    *_, submitted, ready = [e for e in repo.timeline_entries if e.case_id == case.id]
    assert case.status_since == ready.at == case.updated_at
    assert [state for state, _ in observed] == [CaseStatus.DRAFT, CaseStatus.SUBMITTED]
    assert 7200 <= observed[0][1] < 7260
    assert observed[1][1] == (ready.at - submitted.at).total_seconds()

    legacy = await open_draft(intake)
    await complete(intake, repo, legacy, check="accepted")
    legacy.status_since = None
    await intake.submit_case(FakeUnitOfWork(), legacy.id)
    assert repo.timeline_reads == 1  # the first transition only: it sets the row's time


async def test_the_last_language_check_moves_the_case_to_ready_with_one_outbox_statement(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    await intake.submit_case(FakeUnitOfWork(), case.id)
    (document,) = repo.document_rows
    uow = FakeUnitOfWork()
    uow.outbox = outbox = StatementCountingOutbox()

    await intake.on_document(uow, case.id, document.document_id, check="accepted", language="uk")

    assert case.status == CaseStatus.READY
    assert uow.outbox.types() == [CaseStatusChanged.event_type, CaseReadyForReferral.event_type]
    assert outbox.statements == 1


async def test_a_case_submitted_twice_is_refused_the_second_time(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    await intake.submit_case(FakeUnitOfWork(), case.id)
    uow = FakeUnitOfWork()

    with pytest.raises(IllegalTransition):
        await intake.submit_case(uow, case.id)
    assert uow.outbox.events == []


async def test_withdrawing_closes_the_case_and_cancels_its_open_requests(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    await intake.submit_case(FakeUnitOfWork(), case.id)
    request = InformationRequest(
        id=uuid4(),
        case_id=case.id,
        referral_id=uuid4(),
        center_code="charite",
        reason="The pathology slides, please",
        items=[{"kind": "slides", "detail": "H&E"}],
        resume_status=CaseStatus.REFERRED,
    )
    repo.add(request)
    uow = FakeUnitOfWork()

    withdrawn = await intake.withdraw_case(uow, case.id, WithdrawalReason.PATIENT_REQUEST)

    assert (withdrawn.status, withdrawn.withdrawal_reason) == (
        CaseStatus.WITHDRAWN,
        WithdrawalReason.PATIENT_REQUEST,
    )
    assert request.status == "cancelled"
    assert uow.outbox.types() == [CaseStatusChanged.event_type, CaseWithdrawn.event_type]
    (event,) = uow.outbox.of_type(CaseWithdrawn.event_type)
    assert event.data.reason == WithdrawalReason.PATIENT_REQUEST
    assert uow.committed is False


async def test_a_withdrawn_case_cannot_be_withdrawn_again(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    case = await open_draft(intake)
    await intake.withdraw_case(FakeUnitOfWork(), case.id, None)
    uow = FakeUnitOfWork()

    with pytest.raises(IllegalTransition):
        await intake.withdraw_case(uow, case.id, None)
    assert uow.outbox.events == []
    assert case.status == CaseStatus.WITHDRAWN


async def test_a_transition_counts_in_the_metrics_only_once_committed(
    intake: Intake, repo: FakeCaseRepository
) -> None:
    from referrals_common.metrics import CASE_TRANSITIONS, service_name

    case = await open_draft(intake)
    await complete(intake, repo, case, check="pending")
    counter = CASE_TRANSITIONS.labels(service_name(), CaseStatus.DRAFT, CaseStatus.SUBMITTED)
    before = counter._value.get()
    uow = FakeUnitOfWork()

    await intake.submit_case(uow, case.id)
    assert counter._value.get() == before
    await uow.commit()  # the caller's commit
    assert counter._value.get() == before + 1
