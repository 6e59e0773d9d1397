"""Intake's use cases: open, edit, consent, submit, withdraw; and the case's reactions to the
documents, language checks and referrals the other services report.

Every use case runs in the caller's unit of work: the state change, the timeline entry and the
outgoing events (outbox) are committed together by the caller, or not at all; none commits. Its
queries go through the repository `Intake.repository` makes on the unit of work
(`CaseRepository`, or a unit test's in-memory fake), never through the session itself. A
document's fact and a routing fact lock the case through the repository's `keep_document_fact`
and `locked_case` (in a consumer's transaction, through asyncpg, the case outside the session)
and end with its `save`, which writes what changed on the case and its new timeline entries.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

from referrals_common.contracts import (
    AgeGroup,
    CaseCenterChosen,
    CaseContactShared,
    CaseFollowUpAsked,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CasePolicyShared,
    CaseReadyForReferral,
    CaseStatus,
    CaseStatusChanged,
    CaseSubmitted,
    CaseWithdrawn,
    ClinicalSummary,
    CloudEvent,
    Destination,
    DestinationPreference,
    FurtherOpinionReason,
    Stage,
    StatusChangeReason,
    WithdrawalReason,
    new_event,
)
from referrals_common.contracts.information import PREPARATION_ITEMS, RequestedItem, Shipment
from referrals_common.contracts.intake import Payer, PayerKind, Preparation
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.db import UnitOfWork
from referrals_common.i18n import case_texts
from referrals_common.metrics import CASE_TIME_IN_STATE, CASE_TRANSITIONS, service_name
from referrals_common.native_sql import Autocommit
from referrals_intake import lifecycle
from referrals_intake.lifecycle import DocumentState, IllegalTransition
from referrals_intake.models import (
    AccessAudit,
    Case,
    CaseDocument,
    FollowUpQuestion,
    InformationRequest,
    TimelineEntry,
    new_row,
    utcnow,
)
from referrals_intake.repository import (
    Audited,
    CaseParts,
    CaseRepository,
    RepositoryFactory,
    insert_opened,
)
from referrals_intake.repository import give_consent as consent_given
from referrals_intake.schemas import CaseCreate, CaseFields, CaseUpdate

log = logging.getLogger(__name__)
R = StatusChangeReason
PEDIATRIC_BELOW_AGE = 18


class CaseNotFound(Exception):
    pass


class CaseNotEditable(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the case is {status}; only a draft can be changed")
        self.status = status


class SubmissionIncomplete(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("the case cannot be submitted yet: " + "; ".join(missing))
        self.missing = missing


class ConsentVersionUnknown(Exception):
    pass


class ChoiceRefused(Exception):
    """A choice of center the case does not take: it is not choosing (any more), the deadline
    passed (`closed`), or the center was not proposed (`unknown`). Nothing applied."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FollowUpRefused(Exception):
    """A follow-up question the case does not take now: no opinion yet, the window closed, or
    no questions left. Nothing applied."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FurtherOpinionRefused(Exception):
    """A further opinion the case does not take now: no opinion yet, or no more allowed.
    Nothing applied."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RequestNotFound(Exception):
    """No such information request on this case."""


class RequestClosed(Exception):
    """The request was answered, expired or cancelled, or the case no longer waits for it."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class AnswerInvalid(ValueError):
    """The answer names a document it may not, or holds nothing: nothing applied."""

    def __init__(self, pointer: str, message: str, code: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.code = code


class DocumentsNotReady(Exception):
    """A document of the answer is still being stored or checked (`pending`), or failed its
    check (`refused`): the answer waits for it, or the patient replaces it."""

    def __init__(self, pending: list[str], refused: list[str]) -> None:
        super().__init__(
            "; ".join(
                part
                for part in (
                    f"still being checked: {', '.join(pending)}" if pending else "",
                    f"not accepted (see the case's documents): {', '.join(refused)}"
                    if refused
                    else "",
                )
                if part
            )
        )
        self.pending = pending
        self.refused = refused


@dataclass(frozen=True)
class OpenedCase:
    """A case `Intake.open_case` just wrote (its row stays out of the session): what the front
    end's answer needs of it."""

    id: UUID
    status: str
    locale: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Intake:
    """What the use cases need besides the unit of work (built once by the bootstrap)."""

    cipher: FieldCipher
    processing_consent_versions: tuple[str, ...] = ("2026-01",)
    cross_border_consent_versions: tuple[str, ...] = ("2026-01",)
    contact_box: SealedBox | None = None
    """Seals contact details to notifications' public key; None: no contact is shared."""
    policy_box: SealedBox | None = None
    """Seals the insurance policy to partners' public key; None: the policy is never shared."""
    follow_up_max_questions: int = 3
    follow_up_window: timedelta = timedelta(days=30)
    max_opinions: int = 3
    """Opinions a case may get: the first, then further ones (seed 003)."""
    repository: RepositoryFactory = CaseRepository
    """Makes the use cases' repository on their unit of work (`CaseRepository.on` the
    database's: a consumer's hottest statements through asyncpg; a unit test passes an
    in-memory fake's factory)."""

    def _repo(self, uow: UnitOfWork) -> CaseRepository:
        return self.repository(uow)

    # ------------------------------------------------------------------ personal data at rest

    def seal(self, case_id: UUID, fields: CaseFields | dict[str, Any]) -> bytes:
        data = fields.model_dump(mode="json") if isinstance(fields, CaseFields) else fields
        personal = {k: data.get(k) for k in ("date_of_birth", "contact", "insurance")}
        return self.cipher.encrypt_json(personal, bound_to=str(case_id))

    def unseal(self, case: Case) -> dict[str, Any]:
        # `seal` always seals a JSON object.
        return cast(
            dict[str, Any], self.cipher.decrypt_json(case.personal_sealed, bound_to=str(case.id))
        )

    # -------------------------------------------------------------------------- front end

    async def open_case(
        self,
        uow: UnitOfWork | Autocommit,
        client_id: str,
        data: CaseCreate,
        case_id: UUID | None = None,
        *,
        audited_as: str | None = None,
        claim: dict[str, Any] | None = None,
    ) -> OpenedCase | None:
        """A new draft case owned by the front end `client_id`, inserted with its first timeline
        entry and, for `audited_as`, the access audit row of that actor's `create_case`, as
        rows (not models: nothing enters the session; `OpenedCase` says what was written), in
        one statement: in `uow`'s transaction, or on a connection in autocommit, where that
        statement, atomic on its own, commits by itself (one round trip, no BEGIN or COMMIT).
        `claim`: the row of the request's `Idempotency-Key`, claimed with the case (one
        statement); None, and nothing inserted, when that key was claimed before (the request
        is replayed)."""
        new_id = case_id or uuid4()
        now = utcnow()
        case = new_row(
            Case,
            id=new_id,
            client_id=client_id,
            status=CaseStatus.DRAFT,
            created_at=now,
            updated_at=now,
            status_since=now,
            personal_sealed=self.seal(new_id, data),
            further_opinions=[],
            **_clinical_columns(data),
        )
        entry = new_row(
            TimelineEntry,
            **_entry_values(
                new_id, None, CaseStatus.DRAFT, "case_opened", {}, DRAFT_NEXT_STEP, now
            ),
        )
        audit = (
            None
            if audited_as is None
            else new_row(
                AccessAudit,
                actor=audited_as[:120],
                action="create_case",
                case_id=new_id,
                outcome="ok",
                at=now,
            )
        )
        inserted = (
            await insert_opened(uow, case, entry, audit, claim=claim)
            if isinstance(uow, Autocommit)
            else await self._repo(uow).insert_opened(case, entry, audit, claim=claim)
        )
        if not inserted:
            return None
        return OpenedCase(
            id=new_id, status=CaseStatus.DRAFT, locale=data.locale, created_at=now, updated_at=now
        )

    async def edit_case(self, uow: UnitOfWork, case_id: UUID, changes: CaseUpdate) -> Case:
        """Apply the given fields to a draft; CaseNotEditable once it was submitted."""
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        if case.status not in lifecycle.EDITABLE_STATES:
            raise CaseNotEditable(case.status)
        current = CaseCreate.model_validate({**self.public_fields(case)})
        merged = CaseCreate.model_validate(
            {
                **current.model_dump(mode="json"),
                **changes.model_dump(mode="json", exclude_unset=True),
            }
        )
        for column, value in _clinical_columns(merged).items():
            setattr(case, column, value)
        case.personal_sealed = self.seal(case.id, merged)
        case.updated_at = utcnow()
        return case

    async def give_consent(self, uow: UnitOfWork, case_id: UUID, kind: str, version: str) -> None:
        """Record the patient's consent of `kind` to the text of `version`, now, in `uow`'s
        transaction."""
        self._published(kind, version)
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        if case.status not in lifecycle.OPEN_STATES:
            raise CaseNotEditable(case.status)
        await repo.upsert_consent(case_id, kind, version)
        case.updated_at = utcnow()

    async def give_consent_now(
        self, connection: Autocommit, case_id: UUID, kind: str, version: str, *, audited: Audited
    ) -> tuple[Case, CaseParts]:
        """Record the patient's consent of `kind` to the text of `version`, now, on a
        connection in autocommit (the front end's request): in one statement that commits by
        itself, with the access audit row of `audited`, answering the case as changed with its
        parts (`repository.give_consent`)."""
        self._published(kind, version)
        given = await consent_given(
            connection, case_id, kind, version, sorted(lifecycle.OPEN_STATES), audited
        )
        if given is None:
            raise CaseNotFound(str(case_id))
        if given.parts is None:
            raise CaseNotEditable(given.case.status)
        return given.case, given.parts

    def _published(self, kind: str, version: str) -> None:
        """Refuse a version of the consent text of `kind` that was never published."""
        known = (
            self.processing_consent_versions
            if kind == "processing"
            else self.cross_border_consent_versions
        )
        if version not in known:
            raise ConsentVersionUnknown(
                f"{version!r} is not a published version of the {kind} consent "
                f"(known: {', '.join(known)})"
            )

    async def submit_case(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        *,
        claim: dict[str, Any] | None = None,
        audited: Audited | None = None,
    ) -> Case:
        """Submit a draft that has evidence of the diagnosis and the consents it needs.
        `claim`: the row of the request's `Idempotency-Key`, claimed with the case's lock
        (`KeyClaimedBefore`, nothing done, when it was claimed before: the caller replays the
        first request). `audited`: whoever submits it, whose access audit row is written with
        the case. With the repository of `CaseRepository.on`, on a unit of work that has sent
        nothing yet, the whole transaction runs on asyncpg itself (`submission`)."""
        repo = self._repo(uow)
        # The case locked with its consents and documents (and the key claimed): one statement.
        found = await repo.submission(case_id, claim)
        if found is None:
            raise CaseNotFound(str(case_id))
        case, consents, docs = found
        if case.status != CaseStatus.DRAFT:
            raise IllegalTransition(CaseStatus(case.status), R.PATIENT_SUBMITTED)
        contact = self.unseal(case).get("contact") or {}
        # Every step is told to the patient: by e-mail, SMS, or the front end's webhook (whose
        # row is read only for a case with neither address).
        reachable = bool(contact.get("email") or contact.get("phone"))
        if not reachable:
            front_end = await repo.client(case.client_id)
            reachable = bool(front_end and front_end.takes_webhooks)
        missing = lifecycle.missing_for_submission(
            docs,
            has_processing_consent="processing" in consents,
            needs_cross_border_consent=_destination(case).crosses_border,
            has_cross_border_consent="cross_border" in consents,
            can_reach_patient=reachable,
        )
        if missing:
            raise SubmissionIncomplete(missing)
        case.submitted_at = utcnow()
        # The submission's events (and, when its documents were all checked, the move to ready
        # with its event) are written in one statement, in this order.
        events: list[CloudEvent[Any]] = [
            new_event(
                CaseSubmitted(
                    case_id=case.id,
                    clinical=_clinical_summary(case),
                    destination=_destination(case),
                    locale=case.locale,
                    processing_consent_version=consents["processing"].version,
                    cross_border_consent_version=(
                        consents["cross_border"].version if "cross_border" in consents else None
                    ),
                    submitted_at=case.submitted_at,
                )
            )
        ]
        if (shared := self._contact_shared(case)) is not None:
            events.append(shared)
        await _move(uow, repo, case, R.PATIENT_SUBMITTED, queue=events)
        await self._follow_documents(uow, repo, case, docs, queue=events, consents=consents)
        await _save(uow, repo, case, events, audited=audited)
        return case

    def _contact_shared(self, case: Case) -> CloudEvent[Any] | None:
        """The event that hands the contact details to notifications, sealed, on its private
        topic (None without notifications' key)."""
        if self.contact_box is None:
            log.warning("no notifications public key: case %s's contact is not shared", case.id)
            return None
        contact = self.unseal(case).get("contact") or {}
        return new_event(
            CaseContactShared(
                case_id=case.id,
                sealed_contact=self.contact_box.seal_json(
                    {
                        "email": contact.get("email"),
                        "phone": contact.get("phone"),
                        "preferred_channel": contact.get("preferred_channel", "email"),
                    },
                    bound_to=str(case.id),
                ),
                locale=case.locale,
                front_end=case.client_id,
            )
        )

    async def share_policy(self, uow: UnitOfWork, case_id: UUID, referral_id: UUID) -> None:
        """A center accepted the case's referral: when an insurer pays and the front end gave the
        policy, hand it to partners, sealed to its key for this referral alone, on the cases
        topic (never a center's inbox); partners shows it to that center through its API."""
        case = await self._repo(uow).get(case_id)
        payer = Payer.model_validate(case.payer) if case and case.payer else None
        if case is None or payer is None or payer.kind is not PayerKind.INSURER:
            return
        insurance = self.unseal(case).get("insurance") or {}
        if not insurance.get("policy_number"):
            return
        if self.policy_box is None:
            log.warning("no partners public key: case %s's policy is not shared", case.id)
            return
        await uow.outbox.add(
            new_event(
                CasePolicyShared(
                    case_id=case.id,
                    referral_id=referral_id,
                    sealed_policy=self.policy_box.seal_json(
                        {
                            "insurer": payer.insurer,
                            "provider": insurance.get("provider"),
                            "policy_number": insurance["policy_number"],
                        },
                        bound_to=f"{case.id}/{referral_id}",
                    ),
                )
            )
        )

    async def withdraw_case(
        self, uow: UnitOfWork, case_id: UUID, reason: WithdrawalReason | None
    ) -> Case:
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        await _move(uow, repo, case, R.PATIENT_WITHDREW)
        await repo.close_requests(case.id, "cancelled")
        case.withdrawal_reason = reason
        await uow.outbox.add(new_event(CaseWithdrawn(case_id=case.id, reason=reason)))
        return case

    def public_fields(self, case: Case) -> dict[str, Any]:
        personal = self.unseal(case)
        return {
            "diagnosis": {
                "icd10": case.icd10,
                "text": case.diagnosis_text,
                "histology": case.histology,
                "morphology": case.morphology,
            },
            "stage": (
                {"tnm": case.stage_tnm, "group": case.stage_group}
                if case.stage_tnm or case.stage_group
                else None
            ),
            "reasons": case.reasons,
            "questions": case.questions,
            "preparation": case.preparation,
            "destination": {
                "preference": case.destination_preference,
                "countries": case.destination_countries,
            },
            "locale": case.locale,
            "patient_chooses_center": case.patient_chooses_center,
            "payer": case.payer,
            **personal,
        }

    # ------------------------------------------------------------- events of other services

    async def on_upload_rejected(
        self, uow: UnitOfWork, case_id: UUID, reason: str, detail: str
    ) -> None:
        """An upload records refused: nothing was stored; the timeline tells the patient why."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        if case is None:
            log.warning("rejected upload of unknown case %s ignored", case_id)
            return
        _note(repo, case, R.DOCUMENT_REJECTED, {"reason": reason, "detail": detail}, "upload_again")

    async def on_document(
        self, uow: UnitOfWork, case_id: UUID, document_id: UUID, **facts: Any
    ) -> None:
        """Fold a fact about a document into the projection, then see whether the case moves.

        Records' and translation's events travel on different topics, so a language check may
        arrive before the document's `stored` event: either creates the row.
        """
        repo = self._repo(uow)
        # The case locked, the fact kept on the document's row (made or changed, never another
        # case's) and, for a case that moves on what all of its documents say (submitted,
        # action required), them all as they are now and its consents: one statement, nothing
        # read again (a draft's documents are judged at its submit).
        fact = await repo.keep_document_fact(case_id, document_id, facts, saved_after=True)
        case = fact.case
        if case is None:
            log.warning("document %s of unknown case %s ignored", document_id, case_id)
            return
        if not fact.kept:
            log.error("document %s belongs to another case than %s", document_id, case_id)
            return
        if fact.documents is None:
            return
        events: list[CloudEvent[Any]] = []
        await self._follow_documents(
            uow, repo, case, fact.documents, queue=events, consents=fact.consents
        )
        await _save(uow, repo, case, events)

    async def _follow_documents(
        self,
        uow: UnitOfWork,
        repo: CaseRepository,
        case: Case,
        docs: list[DocumentState],
        *,
        queue: list[CloudEvent[Any]] | None = None,
        consents: Collection[str] | None = None,
    ) -> None:
        """Move a submitted case when its documents (`docs`, all of them as they are now: the
        caller read them, oldest first) say so (ready, or action required). Its events go to
        the outbox in one statement, or onto `queue`, which the caller writes. `consents`: the
        kinds of the case's consents (or them by kind), if the caller read them (else read here
        when needed)."""
        if case.status not in (CaseStatus.SUBMITTED, CaseStatus.ACTION_REQUIRED):
            return
        events: list[CloudEvent[Any]] = [] if queue is None else queue
        verdict = lifecycle.documents_verdict(docs)
        needs_action = verdict in (R.TRANSLATION_REQUIRED, R.DOCUMENT_UNREADABLE)
        if case.status == CaseStatus.ACTION_REQUIRED and not needs_action:
            await _move(uow, repo, case, R.DOCUMENTS_UPDATED, queue=events)
        if case.status == CaseStatus.SUBMITTED and needs_action:
            assert verdict is not None
            params = _action_params(docs, verdict)
            await _move(uow, repo, case, verdict, params=params, queue=events)
        elif case.status == CaseStatus.SUBMITTED and verdict == R.DOCUMENTS_ACCEPTED:
            await _move(uow, repo, case, R.DOCUMENTS_ACCEPTED, queue=events)
            current = lifecycle.current_documents(docs)
            if consents is None:
                consents = await repo.consents(case.id)
            events.append(
                new_event(
                    CaseReadyForReferral(
                        case_id=case.id,
                        clinical=_clinical_summary(case),
                        destination=_destination(case),
                        cross_border_transfer_allowed="cross_border" in consents,
                        document_ids=[UUID(d.document_id) for d in current],
                        document_languages=list(
                            dict.fromkeys(d.language for d in current if d.language)
                        )
                        or ["en"],
                        preparation=Preparation.model_validate(case.preparation)
                        if case.preparation
                        else None,
                        patient_chooses=case.patient_chooses_center,
                        payer=Payer.model_validate(case.payer) if case.payer else None,
                        locale=case.locale,
                    )
                )
            )
        if queue is None:
            await uow.outbox.add_all(events)

    async def on_referral(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        reason: StatusChangeReason,
        params: dict[str, Any] | None = None,
        *,
        outcome: dict[str, Any] | None = None,
        opinion_referral_id: UUID | None = None,
        opinion_center_code: str | None = None,
    ) -> None:
        """A routing fact: a transition (requested, accepted, opinion, unroutable) or, for a
        decline or an expiry of a `referred` case, a timeline entry only (partners routes the
        case to the next center). A decline of a case that waits for the patient's answer ends
        the wait: the case is `referred` again. `params`: the timeline sentence's
        (`referrals_common.i18n.case_texts`)."""
        repo = self._repo(uow)
        case = await repo.locked_case(case_id)
        if case is None:
            log.warning("routing event for unknown case %s ignored", case_id)
            return
        events: list[CloudEvent[Any]] = []
        await self._route(
            uow,
            repo,
            case,
            reason,
            params,
            outcome,
            opinion_referral_id,
            opinion_center_code,
            queue=events,
        )
        await _save(uow, repo, case, events)

    async def _route(
        self,
        uow: UnitOfWork,
        repo: CaseRepository,
        case: Case,
        reason: StatusChangeReason,
        params: dict[str, Any] | None,
        outcome: dict[str, Any] | None,
        opinion_referral_id: UUID | None,
        opinion_center_code: str | None,
        *,
        queue: list[CloudEvent[Any]],
    ) -> None:
        """`on_referral` on the case it locked (`repo.save` writes what changes on it); its
        status event goes onto `queue`, which the caller writes."""
        waiting = case.status == CaseStatus.INFORMATION_REQUESTED
        if waiting and reason == R.REFERRAL_DECLINED:
            await repo.close_requests(case.id, "cancelled")
            await _move(uow, repo, case, reason, params=params, queue=queue)
            return
        rerouted = reason == R.REFERRAL_REQUESTED and case.status == CaseStatus.REFERRED
        if rerouted or reason in (R.REFERRAL_DECLINED, R.REFERRAL_EXPIRED):
            _note(repo, case, reason, params, "next_center")
            return
        if reason == R.NO_ELIGIBLE_CENTER and case.opinion_round > 1:
            # A further opinion no center can give: the case keeps the opinion it has.
            reason, params = R.FURTHER_OPINION_UNAVAILABLE, {}
        try:
            await _move(uow, repo, case, reason, params=params, queue=queue)
        except IllegalTransition as exc:
            # Refused and logged, never applied: the event stays recorded in the inbox.
            log.warning("illegal transition refused for case %s: %s", case.id, exc)
            return
        if reason == R.OPINION_DELIVERED:
            case.opinion_outcome = outcome
            case.opinion_referral_id = opinion_referral_id
            case.opinion_center_code = opinion_center_code
            case.opinion_delivered_at = utcnow()

    # ----------------------------------------------------------------- a further opinion

    def further_opinions_left(self, case: Case) -> int:
        if case.status != CaseStatus.OPINION_DELIVERED:
            return 0
        return max(0, self.max_opinions - case.opinion_round)

    async def request_further_opinion(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        reason: FurtherOpinionReason,
        share_earlier_opinions: bool,
    ) -> Case:
        """After an opinion, one more from another center: the case is `ready` again and partners
        routes it to a center it was never offered to. The earlier opinions go with it only when
        the patient agreed (`share_earlier_opinions`, the consent step)."""
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        if case.status != CaseStatus.OPINION_DELIVERED:
            raise FurtherOpinionRefused(
                "no-opinion",
                f"The case is {case.status}: a further opinion follows a delivered opinion.",
            )
        if case.opinion_round >= self.max_opinions:
            raise FurtherOpinionRefused(
                "no-opinions-left",
                f"This case has had the {self.max_opinions} opinions a case may get.",
            )
        opinions = [
            d.document_id for d in await repo.documents(case.id) if d.kind == "opinion" and d.stored
        ]
        shared = opinions if share_earlier_opinions else []
        now = utcnow()
        case.opinion_round += 1
        case.further_opinions = [
            *case.further_opinions,
            {
                "round": case.opinion_round,
                "reason": reason.value,
                "share_earlier_opinions": share_earlier_opinions,
                "consented_at": now.isoformat() if share_earlier_opinions else None,
                "shared_document_ids": [str(d) for d in shared],
                "requested_at": now.isoformat(),
            },
        ]
        await uow.outbox.add(
            new_event(
                CaseFurtherOpinionRequested(
                    case_id=case.id,
                    opinion_round=case.opinion_round,
                    reason=reason,
                    share_earlier_opinions=share_earlier_opinions,
                    shared_document_ids=shared,
                )
            )
        )
        await _move(
            uow,
            repo,
            case,
            R.FURTHER_OPINION_REQUESTED,
            params={"shared": bool(shared)},
        )
        return case

    # --------------------------------------------------------------- the patient's choice

    async def on_centers_proposed(
        self, uow: UnitOfWork, case_id: UUID, proposal: dict[str, Any]
    ) -> None:
        """Partners proposes centers to a patient who asked to choose: the case waits for it."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        if case is None or case.status != CaseStatus.READY:
            log.warning("centers proposed for case %s ignored", case_id)
            return
        case.center_proposal = proposal
        await _move(
            uow,
            repo,
            case,
            R.CENTERS_PROPOSED,
            params={
                "names": [p["center_name"] for p in proposal["proposals"]],
                "by": proposal["choose_by"],
            },
        )

    async def choose_center(
        self, uow: UnitOfWork, case_id: UUID, center_code: str, *, now: datetime | None = None
    ) -> Case:
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        proposal = case.center_proposal or {}
        if case.status != CaseStatus.CHOOSING_CENTER:
            raise ChoiceRefused(
                "closed", f"The case is {case.status}: it is not waiting for a choice."
            )
        if proposal.get("chosen"):
            raise ChoiceRefused("closed", f"{proposal['chosen']} was chosen already.")
        if (now or utcnow()) >= datetime.fromisoformat(proposal["choose_by"]):
            raise ChoiceRefused(
                "closed", "The time to choose is over: the first-ranked center gets the case."
            )
        proposed = {p["center_code"]: p for p in proposal.get("proposals", [])}
        if center_code not in proposed:
            raise ChoiceRefused("unknown", f"{center_code} is not one of the proposed centers.")
        case.center_proposal = {**proposal, "chosen": center_code}
        await uow.outbox.add(new_event(CaseCenterChosen(case_id=case.id, center_code=center_code)))
        _note(
            repo,
            case,
            "center_chosen",
            {"name": proposed[center_code]["center_name"]},
            "wait_for_center",
        )
        await repo.flush()
        return case

    # ------------------------------------------------------------ questions after the opinion

    def follow_up_left(self, case: Case, asked: int, now: datetime | None = None) -> int:
        """How many follow-up questions the case may still ask now."""
        if case.status != CaseStatus.OPINION_DELIVERED or case.opinion_delivered_at is None:
            return 0
        if (now or utcnow()) > case.opinion_delivered_at + self.follow_up_window:
            return 0
        return max(0, self.follow_up_max_questions - asked)

    async def ask_follow_up(
        self, uow: UnitOfWork, case_id: UUID, question: str, *, now: datetime | None = None
    ) -> FollowUpQuestion:
        """A follow-up question to the center that gave the opinion: while the case has one,
        within the window after it, up to the allowed number (FollowUpRefused otherwise)."""
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        now = now or utcnow()
        if (
            case.status != CaseStatus.OPINION_DELIVERED
            or case.opinion_referral_id is None
            or case.opinion_center_code is None
            or case.opinion_delivered_at is None
        ):
            raise FollowUpRefused(
                "no-opinion", f"The case is {case.status}: questions follow a delivered opinion."
            )
        closes = case.opinion_delivered_at + self.follow_up_window
        if now > closes:
            raise FollowUpRefused(
                "window-closed",
                f"Follow-up questions could be asked until {closes:%Y-%m-%d}; that time is over.",
            )
        asked = await repo.follow_up_questions(case.id)
        if len(asked) >= self.follow_up_max_questions:
            raise FollowUpRefused(
                "no-questions-left",
                f"All {self.follow_up_max_questions} follow-up questions were asked.",
            )
        row = FollowUpQuestion(
            case_id=case.id,
            referral_id=case.opinion_referral_id,
            center_code=case.opinion_center_code,
            question=question,
            asked_at=now,
        )
        repo.add(row)
        await repo.flush()  # the unit of work does not autoflush: the case view reads it
        await uow.outbox.add(
            new_event(
                CaseFollowUpAsked(
                    case_id=case.id,
                    question_id=row.id,
                    referral_id=row.referral_id,
                    question=question,
                    asked_at=now,
                )
            )
        )
        _note(repo, case, "follow_up_asked", {"center": row.center_code}, "wait_for_center")
        return row

    async def on_follow_up_answered(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        question_id: UUID,
        answer: str,
        at: datetime,
        document_ids: list[UUID] | None = None,
    ) -> None:
        """The center's answer (its words and the documents it attached, which the patient
        downloads from records with the case's token) is kept with the question."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        row = await repo.follow_up_question(question_id)
        if case is None or row is None or row.case_id != case_id or row.answered_at is not None:
            return
        row.answer, row.answered_at = answer, at
        row.answer_document_ids = [str(d) for d in document_ids or []]
        attached = len(row.answer_document_ids)
        _note(
            repo,
            case,
            "follow_up_answered",
            {"center": row.center_code, "attached": attached},
            "read_answer_and_document" if attached else "read_answer",
        )

    # ----------------------------------------------------------------- the information loop

    async def on_info_requested(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        *,
        request_id: UUID,
        referral_id: UUID,
        center_code: str,
        message: str,
        items: list[RequestedItem],
        due_at: datetime | None,
        resumes_as: str | None,
    ) -> None:
        """A center asks for more: the case waits for the patient's answer (what, why, by when)."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        if case is None:
            log.warning("information request for unknown case %s ignored", case_id)
            return
        if await repo.information_request(request_id) is not None:
            return  # the same request again (a replayed event): applied once
        if case.status not in (CaseStatus.REFERRED, CaseStatus.ACCEPTED):
            log.warning("information request for case %s in %s refused", case_id, case.status)
            return
        resume = (
            CaseStatus.ACCEPTED
            if resumes_as == "accepted" or (resumes_as is None and case.status == "accepted")
            else CaseStatus.REFERRED
        )
        listed = [item.model_dump(mode="json") for item in items] or [
            {"kind": "question", "detail": message[:1000]}
        ]
        repo.add(
            InformationRequest(
                id=request_id,
                case_id=case.id,
                referral_id=referral_id,
                center_code=center_code,
                reason=message,
                items=listed,
                due_at=due_at,
                resume_status=resume,
                document_ids=[],
                shipments=[],
            )
        )
        await _move(
            uow,
            repo,
            case,
            R.INFO_REQUESTED,
            params={
                "center": center_code,
                "items": [{"kind": i["kind"], "detail": i["detail"]} for i in listed],
                "message": message,
                "due": due_at.isoformat() if due_at else None,
            },
        )

    async def set_preparation(
        self, uow: UnitOfWork, case_id: UUID, preparation: Preparation
    ) -> Case:
        """Complete the preparation checklist (family history, medications, allergies) while the
        case is open: the center that asked for it reads it once the answer is sent."""
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        if case.status not in lifecycle.PREPARATION_STATES:
            raise CaseNotEditable(case.status)
        case.preparation = preparation.model_dump(mode="json")
        case.updated_at = utcnow()
        return case

    async def answer_request(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        request_id: UUID,
        *,
        answer: str | None,
        document_ids: list[UUID] | None,
        shipments: list[Shipment],
        now: datetime | None = None,
    ) -> Case:
        """The patient's answer to an open request, sent to the center ("send to the center").

        `document_ids` None means every document the patient added since the request was made.
        Refused, with nothing applied: an unknown request (RequestNotFound), one no longer open
        or past its due date (RequestClosed), a document that is not the patient's of this case
        or an answer with nothing in it (AnswerInvalid), a document still being checked or
        refused by its check (DocumentsNotReady)."""
        repo = self._repo(uow)
        case = await _locked(repo, case_id)
        request = await repo.information_request(request_id, for_update=True)
        if request is None or request.case_id != case.id:
            raise RequestNotFound(request_id)
        now = now or utcnow()
        if request.status != "open" or case.status != CaseStatus.INFORMATION_REQUESTED:
            raise RequestClosed(
                request.status,
                f"This request is {request.status}: it can no longer be answered."
                if request.status != "open"
                else f"The case is {case.status}: it does not wait for this answer.",
            )
        if request.due_at is not None and now >= request.due_at:
            raise RequestClosed(
                "expired",
                f"This request was due at {request.due_at.isoformat()}: the center no longer "
                "waits for it.",
            )
        docs = {d.document_id: d for d in await repo.documents(case.id)}
        if document_ids is None:
            chosen = [
                d
                for d in docs.values()
                if d.kind != "opinion" and d.created_at >= request.requested_at
            ]
        else:
            chosen = []
            for index, doc_id in enumerate(document_ids):
                doc = docs.get(doc_id)
                if doc is None or doc.kind == "opinion":
                    raise AnswerInvalid(
                        f"/document_ids/{index}",
                        f"Document {doc_id} is not one of the patient's documents of this case.",
                        "unknown_document",
                    )
                chosen.append(doc)
        # A translation stands in for its original, as everywhere else.
        current_ids = {
            s.document_id for s in lifecycle.current_documents(await repo.document_states(case.id))
        }
        pending = [str(d.document_id) for d in chosen if not d.stored or d.check == "pending"]
        refused = [
            str(d.document_id)
            for d in chosen
            if d.stored
            and d.check not in ("pending", "accepted")
            and str(d.document_id) in current_ids
        ]
        if pending or refused:
            raise DocumentsNotReady(pending, refused)
        new_ids = [d.document_id for d in chosen if str(d.document_id) in current_ids]
        # A request for parts of the checklist is answered by completing it
        # (PUT /v1/cases/{id}/preparation) and sending.
        asked_checklist = any(i.get("kind") in PREPARATION_ITEMS for i in request.items)
        checklist = asked_checklist and not lifecycle.still_missing(request.items, case.preparation)
        if not (answer or new_ids or shipments or checklist):
            raise AnswerInvalid(
                "",
                "The answer is empty: write an answer, add documents (upload them first), "
                "record a shipment, or complete the checklist items the center asked for.",
                "empty_answer",
            )
        request.status = "answered"
        request.answered_at = now
        request.answer = answer
        request.document_ids = [str(i) for i in new_ids]
        request.shipments = [{**s.model_dump(mode="json"), "received_at": None} for s in shipments]
        all_ids = [UUID(i) for i in sorted(current_ids, key=lambda i: _order(docs, i))]
        await uow.outbox.add(
            new_event(
                CaseInformationProvided(
                    case_id=case.id,
                    request_id=request.id,
                    referral_id=request.referral_id,
                    answer=answer,
                    new_document_ids=new_ids,
                    document_ids=all_ids,
                    shipments=shipments,
                    preparation=Preparation.model_validate(case.preparation)
                    if case.preparation
                    else None,
                )
            )
        )
        await _move(
            uow,
            repo,
            case,
            R.INFORMATION_PROVIDED,
            params={
                "center": request.center_code,
                "documents": len(new_ids),
                "shipments": len(shipments),
                "answer": bool(answer),
                "checklist": bool(checklist),
            },
            resume=CaseStatus(request.resume_status),
        )
        return case

    async def on_information_expired(
        self, uow: UnitOfWork, case_id: UUID, request_id: UUID | None, center_code: str
    ) -> None:
        """The patient did not answer in time: partners expired the referral and routes on."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        if case is None:
            return
        await repo.close_requests(case.id, "expired", only=request_id)
        params = {"center": center_code}
        if case.status in (CaseStatus.INFORMATION_REQUESTED, CaseStatus.ACCEPTED):
            await _move(uow, repo, case, R.INFORMATION_NOT_PROVIDED, params=params)
        else:
            _note(
                repo,
                case,
                R.INFORMATION_NOT_PROVIDED,
                params,
                lifecycle.NEXT_STEPS[R.INFORMATION_NOT_PROVIDED],
            )

    async def on_loop_fact(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        code: str,
        params: dict[str, Any],
        next_step: str | None = None,
    ) -> None:
        """A fact of the loop that changes no state (a reminder, the center resumed): a
        timeline entry (its sentence's code and parameters, and its next step's code)."""
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        if case is not None:
            _note(repo, case, code, params, next_step)

    async def on_shipment_received(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        request_id: UUID,
        shipment_id: UUID,
        received_at: datetime,
        center_code: str,
    ) -> None:
        repo = self._repo(uow)
        case = await repo.get(case_id, for_update=True)
        request = await repo.information_request(request_id, for_update=True)
        if case is None or request is None:
            return
        request.shipments = [
            {**s, "received_at": received_at.isoformat()}
            if s.get("shipment_id") == str(shipment_id)
            else s
            for s in request.shipments
        ]
        _note(
            repo,
            case,
            "shipment_received",
            {"center": center_code, "shipment": str(shipment_id)[:8]},
            None,
        )


def _order(docs: dict[UUID, CaseDocument], doc_id: str) -> datetime:
    doc = docs.get(UUID(doc_id))
    return doc.created_at if doc else utcnow()


def _entry_values(
    case_id: UUID,
    before: str | None,
    after: str,
    code: str,
    params: dict[str, Any],
    next_step: str | None,
    at: datetime,
) -> dict[str, Any]:
    """A timeline entry's values by column (`TimelineEntry`'s, its serial id left out): kept as
    codes (rendered in the case's language when read), with its English words beside them for
    the status event and for readers of the table."""
    return {
        "case_id": case_id,
        "at": at,
        "from_status": before,
        "to_status": after,
        "reason_code": code,
        "reason": (case_texts.reason(code, params, "en") or code.replace("_", " "))[:500],
        "next_step": case_texts.next_step(next_step, "en"),
        "params": params,
        "next_step_code": next_step,
    }


def _note(
    repo: CaseRepository,
    case: Case,
    code: str,
    params: dict[str, Any] | None,
    next_step: str | None,
) -> None:
    """A timeline entry that changes no state: its sentence's code and parameters
    (`referrals_common.i18n.case_texts`), and its next step's code."""
    repo.add_entry(
        _entry_values(case.id, case.status, case.status, code, params or {}, next_step, utcnow())
    )


DRAFT_NEXT_STEP = "draft"
"""The next step of a new draft (a code of `referrals_common.i18n.case_texts`)."""


async def _save(
    uow: UnitOfWork,
    repo: CaseRepository,
    case: Case,
    events: list[CloudEvent[Any]],
    *,
    audited: Audited | None = None,
) -> None:
    """Write what the use case changed on `case`, its `events` (in their order) and the access
    audit row of `audited`: in one statement when the repository read the case through asyncpg
    (`repo.save`), else the events to the outbox now and the case and the audit row by the
    session's flush."""
    if await repo.save(case, events, audited=audited):
        return
    await uow.outbox.add_all(events)
    if audited is not None:
        repo.audit(audited.actor, audited.action, case.id)


async def _locked(repo: CaseRepository, case_id: UUID) -> Case:
    case = await repo.get(case_id, for_update=True)
    if case is None:
        raise CaseNotFound(str(case_id))
    return case


async def _move(
    uow: UnitOfWork,
    repo: CaseRepository,
    case: Case,
    reason_code: StatusChangeReason,
    *,
    params: dict[str, Any] | None = None,
    resume: CaseStatus | None = None,
    queue: list[CloudEvent[Any]] | None = None,
) -> None:
    """Apply one lifecycle transition: state, timeline entry and status event together.
    `params`: what the entry's sentence says besides its code (a center, a date). The status
    event goes to the outbox now, or onto `queue`, which the caller writes with its other
    events in one statement."""
    before = CaseStatus(case.status)
    after = lifecycle.next_status(before, reason_code, resume=resume)
    # On the row (read with the case); a row an older version moved has only its timeline.
    entered = case.status_since or await repo.entered_state_at(case.id)
    case.status = after
    case.updated_at = case.status_since = utcnow()
    stayed = (case.updated_at - (entered or case.created_at)).total_seconds()
    uow.after_commit(CASE_TRANSITIONS.labels(service_name(), before, after).inc)
    uow.after_commit(lambda: CASE_TIME_IN_STATE.labels(service_name(), before).observe(stayed))
    entry = _entry_values(
        case.id,
        before,
        after,
        reason_code,
        params or {},
        lifecycle.NEXT_STEPS.get(reason_code),
        case.status_since,
    )
    repo.add_entry(entry)
    changed: CloudEvent[Any] = new_event(
        CaseStatusChanged(
            case_id=case.id,
            from_status=before,
            to_status=after,
            reason_code=reason_code,
            reason=entry["reason"],
        )
    )
    if queue is None:
        await uow.outbox.add(changed)
    else:
        queue.append(changed)


def _action_params(docs: list[DocumentState], verdict: StatusChangeReason) -> dict[str, Any]:
    """The documents that need the patient's action (of all the case's, `docs`, oldest first),
    as the timeline entry names them."""
    wanted = "translation_required" if verdict == R.TRANSLATION_REQUIRED else "unreadable"
    docs = [d for d in docs if d.check == wanted]
    return {
        "documents": [
            {
                "kind": d.kind,
                "check": d.check,
                "language": d.language,
                "acceptable_languages": d.acceptable_languages,
                "unreadable_reason": d.unreadable_reason,
            }
            for d in docs
        ]
    }


def _age_group(born: date, today: date | None = None) -> AgeGroup:
    today = today or datetime.now(UTC).date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return AgeGroup.PEDIATRIC if age < PEDIATRIC_BELOW_AGE else AgeGroup.ADULT


def _clinical_columns(data: CaseFields) -> dict[str, Any]:
    return {
        "icd10": data.diagnosis.icd10,
        "diagnosis_text": data.diagnosis.text,
        "histology": data.diagnosis.histology,
        "morphology": data.diagnosis.morphology,
        "stage_tnm": data.stage.tnm if data.stage else None,
        "stage_group": data.stage.group if data.stage else None,
        "reasons": [str(r) for r in data.reasons],
        "questions": list(data.questions),
        "preparation": data.preparation.model_dump(mode="json") if data.preparation else None,
        "destination_preference": str(data.destination.preference),
        "destination_countries": list(data.destination.countries),
        "patient_chooses_center": data.patient_chooses_center,
        "payer": data.payer.model_dump(mode="json") if data.payer else None,
        "locale": data.locale,
        "age_group": str(_age_group(data.date_of_birth)),
    }


def _destination(case: Case) -> Destination:
    return Destination(
        preference=DestinationPreference(case.destination_preference),
        countries=case.destination_countries,
    )


def _clinical_summary(case: Case) -> ClinicalSummary:
    stage = (
        Stage(tnm=case.stage_tnm, group=case.stage_group)
        if case.stage_tnm or case.stage_group
        else None
    )
    return ClinicalSummary(
        icd10=case.icd10,
        morphology=case.morphology,
        stage=stage,
        age_group=AgeGroup(case.age_group),
        reasons=case.reasons,
        questions=case.questions,
    )
