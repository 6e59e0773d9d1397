"""What a front end and a case's holder both read back: the case as the patient sees it
(`to_public`), and the case an `Idempotency-Key` made or changed before (`claim_or_replay`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from referrals_common.api.idempotency import claim_or_replay as claim_key
from referrals_common.api.idempotency import first_request
from referrals_common.api.problems import NotFound
from referrals_common.db import UnitOfWork
from referrals_common.i18n import country_name
from referrals_intake import meetings as meeting_use_cases
from referrals_intake import rendering
from referrals_intake.bootstrap import Runtime
from referrals_intake.lifecycle import still_missing
from referrals_intake.models import Case, IdempotencyRecord, utcnow
from referrals_intake.repository import Audited, CaseParts, CaseRepository
from referrals_intake.schemas import CasePublic, case_reference


async def to_public(
    runtime: Runtime,
    repo: CaseRepository,
    case: Case,
    locale: str | None = None,
    *,
    audited: Audited | None = None,
) -> CasePublic:
    """The case as the front end reads it, its texts in `locale` (default: the case's), with
    what this transaction changed (its next step the one a transition just set), its parts read
    in one statement (`CaseRepository.parts`), which also writes the access audit row of
    `audited`."""
    return public_case(runtime, case, await repo.parts(case.id, audited), locale)


def public_case(
    runtime: Runtime, case: Case, parts: CaseParts, locale: str | None = None
) -> CasePublic:
    """`case` with its `parts` as the front end reads it, its texts in `locale` (default: the
    case's)."""
    locale = locale or case.locale
    consents, documents = parts.consents, parts.documents
    requests, follow_ups = parts.information_requests, parts.follow_up_questions
    fields = runtime.intake.public_fields(case)
    return CasePublic.model_validate(
        {
            **fields,
            "destination": {
                **fields["destination"],
                "country_names": [
                    country_name(c, locale) for c in fields["destination"]["countries"]
                ],
            },
            "id": case.id,
            "reference": case_reference(case.id),
            "status": case.status,
            "created_at": case.created_at,
            "updated_at": case.updated_at,
            "submitted_at": case.submitted_at,
            "consents": [
                {"kind": c.kind, "version": c.version, "granted_at": c.granted_at}
                for c in consents.values()
            ],
            "documents": [rendering.document_check(d, locale) for d in documents],
            "next_step": rendering.next_step(parts.last_entry, locale),
            "center_proposal": rendering.center_proposal(case.center_proposal, locale),
            "opinion_outcome": case.opinion_outcome,
            "follow_up_questions": [
                {
                    "id": q.id,
                    "center_code": q.center_code,
                    "question": q.question,
                    "asked_at": q.asked_at,
                    "answer": q.answer,
                    "answered_at": q.answered_at,
                    "document_ids": q.answer_document_ids,
                }
                for q in follow_ups
            ],
            "follow_up_questions_left": runtime.intake.follow_up_left(case, len(follow_ups)),
            "meetings": [meeting_use_cases.public(m) for m in parts.meetings],
            "opinion_round": case.opinion_round,
            "further_opinions_left": runtime.intake.further_opinions_left(case),
            "information_requests": [
                {
                    "id": r.id,
                    "center_code": r.center_code,
                    "status": r.status,
                    "reason": r.reason,
                    "items": r.items,
                    "due_at": r.due_at,
                    "requested_at": r.requested_at,
                    "answered_at": r.answered_at,
                    "answer": r.answer,
                    "document_ids": r.document_ids,
                    "shipments": r.shipments,
                }
                for r in requests
            ],
            "still_missing": [
                missing
                for r in requests
                if r.status == "open"
                for missing in still_missing(r.items, case.preparation, locale)
            ],
        }
    )


async def load(repo: CaseRepository, case_id: UUID) -> Case:
    """The case as the transaction has it (`CaseRepository.known`: not read again once a use
    case read it); 404 when there is none."""
    case = await repo.known(case_id)
    if case is None:
        raise NotFound(f"There is no case {case_id}.")
    return case


def key_claim(
    client_id: str, operation: str, key: str, fingerprint: str, case_id: UUID
) -> dict[str, Any]:
    """The row that claims an `Idempotency-Key` for `case_id` (a pointer to the case, never the
    personal data of the response), as values of `idempotency_keys`."""
    return {
        "client_id": client_id,
        "operation": operation,
        "key": key,
        "request_hash": fingerprint,
        "status_code": 200,
        "response": {"case_id": str(case_id)},
        "created_at": utcnow(),
    }


async def replayed_case(uow: UnitOfWork, claim: dict[str, Any]) -> UUID:
    """The case id of the first request with the key of `claim`, a claim that found its key
    claimed already; 422 `key_reused` when that request was a different one."""
    first = await first_request(uow.session, IdempotencyRecord, claim)
    return UUID(first.response["case_id"])


async def claim_or_replay(
    uow: UnitOfWork,
    client_id: str,
    operation: str,
    key: str | None,
    fingerprint: str,
    case_id: UUID,
) -> UUID | None:
    """With an Idempotency-Key: the case id of the first request made with it (replay), or None
    after claiming the key for this request's `case_id` (`referrals_common.api.idempotency`:
    a concurrent twin replays the first, one case, never two; a different request with the key
    is a 422). The record keeps a pointer to the case, never the personal data of the
    response."""
    if key is None:
        return None
    first = await claim_key(
        uow.session,
        IdempotencyRecord(**key_claim(client_id, operation, key, fingerprint, case_id)),
    )
    return None if first is None else UUID(first.response["case_id"])
