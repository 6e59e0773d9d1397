"""A cancer center's routes, `/v1/partner/...`: with its own API key (`X-Api-Key: ccr_…`) a
center sees and answers only the referrals offered to it (accept, decline, ask for more
information, deliver the opinion, answer follow-up questions, meetings) and registers its webhook;
another center's referral is a 404, as if it did not exist. Every call is audited.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, field_validator
from sqlalchemy import select
from sqlmodel import col

from referrals_common.api.idempotency import claim_or_replay, request_fingerprint
from referrals_common.api.pagination import (
    DEFAULT_LIMIT,
    LINK_HEADER,
    Cursor,
    CursorSigner,
    OptionalLimit,
    PageOf,
    after,
)
from referrals_common.api.problems import (
    Conflict,
    FieldError,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
)
from referrals_common.contracts import (
    DeclineReason,
    MeetingPlace,
    MeetingSlot,
    OpinionOutcome,
    RequestedItem,
    RoutingExplanation,
)
from referrals_common.contracts.information import CenterText, ShipmentMaterial
from referrals_common.contracts.intake import InsurerCode, PayerKind
from referrals_common.contracts.meetings import MAX_SLOTS, CancelledBy, MeetingStatus
from referrals_common.contracts.partners import MeetingEnd
from referrals_common.outbound import TargetRefused
from referrals_common.text import PlainText
from referrals_common.webhooks import new_secret
from referrals_partners.api.deps import CenterDep, RuntimeDep, audit
from referrals_partners.bootstrap import Runtime
from referrals_partners.meetings import SlotTime
from referrals_partners.models import (
    IdempotencyRecord,
    Meeting,
    Referral,
    Webhook,
    utcnow,
)
from referrals_partners.repository import PartnersRepository
from referrals_partners.service import (
    AttachmentNotOwn,
    AttachmentNotStored,
    IllegalAction,
    InvalidAnswer,
    NotOnReferral,
    OpinionNotOwn,
    OpinionNotStored,
    ReferralNotFound,
)

router = APIRouter(prefix="/v1")


class ReferralStatus(StrEnum):
    """Where a referral stands for its center (one named enumeration in the OpenAPI document,
    for the referral's `status` and the list's filter alike)."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    INFO_REQUESTED = "info_requested"
    DECLINED = "declined"
    EXPIRED = "expired"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class ShipmentView(BaseModel):
    id: UUID = Field(description="Confirm receipt with POST .../shipments/{id}/receipt")
    material: ShipmentMaterial
    carrier: str
    tracking_number: str
    sent_on: date
    received_at: datetime | None


class InformationRequestView(BaseModel):
    """A request this center made, and the patient's answer once sent."""

    id: UUID
    status: Literal["open", "answered", "expired", "cancelled"]
    reason: str
    items: list[RequestedItem]
    due_at: datetime
    requested_at: datetime
    answered_at: datetime | None
    answer: str | None = Field(description="The patient's written answer, in their words")
    document_ids: list[UUID] = Field(
        description="Documents added in answer: fetch them like the offer's (GET "
        "/v1/referrals/{referral_id}/documents/{document_id} on records)"
    )
    new_document_ids: list[UUID] = Field(
        description="The same as `document_ids` (kept for v1 clients; a v2 drops it)",
        json_schema_extra={"deprecated": True},
    )
    shipments: list[ShipmentView]


class FollowUpView(BaseModel):
    """A patient's follow-up question on this center's opinion."""

    id: UUID = Field(description="Answer it with POST .../follow-up-questions/{id}/answer")
    question: str = Field(description="In the patient's words")
    asked_at: datetime
    answer: str | None
    answered_at: datetime | None
    document_ids: list[UUID] = Field(
        default_factory=list,
        description="Documents this center attached to its answer (its uploads for this referral)",
    )


class PayerView(BaseModel):
    """Who pays, as the accepting center reads it (never on a Kafka topic to a center)."""

    kind: PayerKind = Field(description="self_pay, insurer, or charity (a charity or fund)")
    insurer: InsurerCode | None = Field(
        default=None, description="For `insurer`: its registry code"
    )
    insurer_name: str | None = Field(
        default=None,
        description="For `insurer`: the insurer as the patient's front end named it, once the "
        "platform handed this center the policy (a moment after it accepted)",
    )
    policy_number: str | None = Field(
        default=None,
        description="For `insurer`: the patient's policy number, once the platform handed it to "
        "this center (a moment after it accepted); null when the front end gave none",
    )


class MeetingView(BaseModel):
    """A consultation meeting this center offered, as it stands."""

    id: UUID = Field(description="Change it with POST .../meetings/{id}/…")
    status: MeetingStatus
    place: MeetingPlace
    slots: list[MeetingSlot] = Field(description="The times offered, in time order")
    booked_slot: MeetingSlot | None = Field(description="The time the patient booked, if any")
    note: str | None
    cancelled_by: CancelledBy | None

    @classmethod
    def of(cls, m: Meeting) -> MeetingView:
        booked = (
            MeetingSlot(slot_id=m.slot_id, starts_at=m.starts_at, ends_at=m.ends_at)
            if m.slot_id and m.starts_at and m.ends_at
            else None
        )
        return cls(
            id=m.id,
            status=MeetingStatus(m.status),
            place=MeetingPlace.model_validate(m.place),
            slots=[MeetingSlot.model_validate(x) for x in m.slots],
            booked_slot=booked,
            note=m.note,
            cancelled_by=CancelledBy(m.cancelled_by) if m.cancelled_by else None,
        )


class OfferedReferral(BaseModel):
    """A referral as its center sees it: the offer (clinical summary, documents) and its state."""

    id: UUID
    case_id: UUID
    status: ReferralStatus
    attempt: int
    offered_at: datetime
    answer_due_at: datetime
    answered_at: datetime | None
    expected_opinion_at: datetime | None
    decline_reason: str | None
    info_message: str | None
    opinion_document_id: UUID | None
    outcome: OpinionOutcome | None = Field(
        default=None, description="The opinion's conclusion as this center recorded it"
    )
    offer: dict[str, Any] = Field(description="The `referral.offered` event data")
    questions: list[str] = Field(
        default_factory=list,
        description="The patient's clinical questions, in the patient's words: given only here, "
        "to the authenticated center, never on a Kafka topic",
    )
    preparation: dict[str, Any] | None = Field(
        default=None,
        description="The patient's preparation checklist (family history, current medications "
        "with doses, allergies), once this center accepted the referral; null before, or when "
        "the patient gave none",
    )
    information_requests: list[InformationRequestView] = Field(
        default_factory=list,
        description="This center's requests for information on this referral, oldest first",
    )
    follow_up_questions: list[FollowUpView] = Field(
        default_factory=list,
        description="The patient's follow-up questions on the delivered opinion, oldest first",
    )
    payer: PayerView | None = Field(
        default=None,
        description="Who pays (`kind`: self_pay, insurer or charity; `insurer`: its code; for an "
        "insurer the policy reference), once this center accepted the referral; null before, "
        "for a center that declined or only was offered it, or when the front end did not say. "
        "Never on the center's inbox topic",
    )
    meetings: list[MeetingView] = Field(
        default_factory=list,
        description="The consultation meetings this center offered on this referral, oldest "
        "first (at most one offered or booked at a time)",
    )
    routing: RoutingExplanation | None = Field(
        default=None,
        description="Why routing offered this case to this center: the rules it met (ICD-10 "
        "coverage entry, age group, destination, document languages, capacity, turnaround), its "
        "rank among the eligible centers and how many were eligible, whether the patient chose "
        "it, re-routing after declines or expiries, a further opinion; codes and figures with an "
        "English sentence each. Only this referral's center reads it; null for referrals "
        "offered before partners recorded it",
    )

    @classmethod
    def of(
        cls,
        referral: Referral,
        request: dict[str, Any] | None = None,
        information: list[InformationRequestView] | None = None,
        follow_ups: list[FollowUpView] | None = None,
        meetings: list[MeetingView] | None = None,
        policy: dict[str, Any] | None = None,
    ) -> OfferedReferral:
        """The referral as its center sees it; `request` is the case's latest
        `case.ready_for_referral` (questions, and the preparation once accepted); `policy` the
        insurance policy opened for this referral (shown only once accepted)."""
        request = request or {}
        # Accepted once (an expected opinion date), not only asked for more while offered.
        accepted = referral.status in ACCEPTED_STATES and referral.expected_opinion_at is not None
        # A center that asked for the checklist reads it once the patient answered.
        answered = any(i.status == "answered" for i in information or [])
        return cls(
            **{
                name: getattr(referral, name)
                for name in cls.model_fields
                if name
                not in {
                    "offer",
                    "status",
                    "questions",
                    "preparation",
                    "information_requests",
                    "follow_up_questions",
                    "meetings",
                    "payer",
                }
            },
            status=referral.status,
            offer=referral.offer.get("data", referral.offer),
            questions=list((request.get("clinical") or {}).get("questions") or []),
            preparation=request.get("preparation") if accepted or answered else None,
            information_requests=information or [],
            follow_up_questions=follow_ups or [],
            meetings=meetings or [],
            payer=PayerView.model_validate({**request["payer"], **(policy or {})})
            if accepted and request.get("payer")
            else None,
        )


ACCEPTED_STATES = frozenset({"accepted", "info_requested", "completed"})
"""Referral states in which a center that accepted sees the patient's preparation checklist."""


async def _information(
    repo: PartnersRepository, referral_ids: set[UUID]
) -> dict[UUID, list[InformationRequestView]]:
    """Each referral's information requests with their answers and shipments."""
    requests = await repo.information_of(referral_ids)
    shipments: dict[UUID, list[ShipmentView]] = {}
    for row in await repo.shipments_of([r.id for r in requests]):
        shipments.setdefault(row.request_id, []).append(
            ShipmentView(
                id=row.id,
                material=row.material,
                carrier=row.carrier,
                tracking_number=row.tracking_number,
                sent_on=row.sent_on,
                received_at=row.received_at,
            )
        )
    found: dict[UUID, list[InformationRequestView]] = {}
    for r in requests:
        answer = r.answer or {}
        found.setdefault(r.referral_id, []).append(
            InformationRequestView(
                id=r.id,
                status=r.status,
                reason=r.reason,
                items=[RequestedItem.model_validate(i) for i in r.items],
                due_at=r.due_at,
                requested_at=r.requested_at,
                answered_at=r.answered_at,
                answer=answer.get("answer"),
                document_ids=answer.get("new_document_ids") or [],
                new_document_ids=answer.get("new_document_ids") or [],
                shipments=shipments.get(r.id, []),
            )
        )
    return found


async def _follow_ups(
    repo: PartnersRepository, referral_ids: set[UUID]
) -> dict[UUID, list[FollowUpView]]:
    found: dict[UUID, list[FollowUpView]] = {}
    for q in await repo.follow_ups_of(referral_ids):
        found.setdefault(q.referral_id, []).append(
            FollowUpView(
                id=q.id,
                question=q.question,
                asked_at=q.asked_at,
                answer=q.answer,
                answered_at=q.answered_at,
                document_ids=[UUID(d) for d in q.answer_document_ids or []],
            )
        )
    return found


async def _meetings(
    repo: PartnersRepository, referral_ids: set[UUID]
) -> dict[UUID, list[MeetingView]]:
    found: dict[UUID, list[MeetingView]] = {}
    for m in await repo.meetings_of(referral_ids):
        found.setdefault(m.referral_id, []).append(MeetingView.of(m))
    return found


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptBody(_Body):
    expected_opinion_at: AwareDatetime = Field(description="When the opinion will be delivered")


class DeclineBody(_Body):
    reason: DeclineReason
    detail: PlainText | None = Field(default=None, max_length=1000, description="No personal data")


class InformationRequestBody(_Body):
    reason: PlainText = Field(
        min_length=1,
        max_length=4000,
        description="Why the center needs it, in the center's words (clinical content only); "
        "the patient reads it",
    )
    items: list[RequestedItem] = Field(
        min_length=1, max_length=20, description="What the center needs, item by item"
    )
    due_at: AwareDatetime = Field(
        description="When the patient must have answered (at least a day from now, at most 90 "
        "days); then the referral expires and the case goes to the next center"
    )


class OpinionBody(_Body):
    document_id: UUID = Field(
        description="The opinion, uploaded first to records (kind `opinion`) for this referral"
    )
    outcome: OpinionOutcome | None = Field(
        default=None,
        description="The opinion's conclusion in structured fields: diagnosis confirmed, "
        "refined or changed (with the new ICD-10 code), stage, treatment plan agreed or an "
        "alternative proposed, further tests, clinical trials. The patient reads it in plain "
        "words beside the document, and it feeds the concordance figures; please record it",
    )


class WebhookBody(_Body):
    url: HttpUrl = Field(description="HTTPS endpoint that receives offers (POST, signed)")


class WebhookCreated(BaseModel):
    url: str
    secret: str = Field(description="HMAC-SHA256 signing secret, shown once")


class DeliveryView(BaseModel):
    id: UUID
    event_id: UUID
    referral_id: UUID
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class WebhookView(BaseModel):
    url: str
    created_at: datetime
    deliveries: list[DeliveryView]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        min_length=8,
        description="A unique key per intended operation (e.g. a UUID): the same request sent "
        "again with it changes nothing and returns the referral as it is (200, "
        "`Idempotent-Replayed: true`); the key with a different request is a 422",
    ),
]


# --------------------------------------------------------------------------- center side
async def _replayed(
    uow: Any, request: Request, center: str, referral_id: UUID, key: str, body: BaseModel | None
) -> bool:
    """Claim the center's `key` for this request (False: do the work), or True when the same
    request was already made with it (422 when a different one was)."""
    operation = request.scope["route"].name
    fingerprint = request_fingerprint(
        operation, request.path_params, body.model_dump(mode="json") if body else None
    )
    first = await claim_or_replay(
        uow.session,
        IdempotencyRecord(
            center_code=center,
            operation=operation,
            key=key,
            request_hash=fingerprint,
            referral_id=referral_id,
        ),
    )
    return first is not None


async def _answer(
    runtime: Runtime,
    request: Request,
    center: str,
    referral_id: UUID,
    action: Any,
    *,
    key: str | None = None,
    body: BaseModel | None = None,
    response: Response | None = None,
) -> OfferedReferral:
    """Run a center's action on one of its referrals in one transaction, audited. With an
    Idempotency-Key (`key`, for the request's `body`): the same request again changes nothing
    and answers the referral as it is, marked `Idempotent-Replayed` on `response`."""
    repo = runtime.partners.repo
    try:
        async with runtime.db.unit_of_work() as uow:
            if key is not None and await _replayed(uow, request, center, referral_id, key, body):
                referral, _ = await runtime.partners.referral_for_center(uow, center, referral_id)
                if response is not None:
                    response.headers["Idempotent-Replayed"] = "true"
            else:
                referral = await action(uow)
            request_ = (await repo(uow).ready_requests({referral.case_id})).get(referral.case_id)
            await uow.commit()
        async with runtime.db.unit_of_work() as uow:
            information = (await _information(repo(uow), {referral.id})).get(referral.id)
            follow_ups = (await _follow_ups(repo(uow), {referral.id})).get(referral.id)
            meetings = (await _meetings(repo(uow), {referral.id})).get(referral.id)
    except ReferralNotFound:
        # Audited with the case the referral is about, if it exists (another center's): the
        # caller learns nothing of it, the case's audit trail shows the attempt.
        async with runtime.db.unit_of_work() as uow:
            other = await repo(uow).referral(referral_id)
        await audit(
            request,
            f"center:{center}",
            case_id=other.case_id if other else None,
            referral_id=referral_id,
            outcome="denied",
        )
        raise NotFound(f"There is no referral {referral_id} for this center.") from None
    except IllegalAction as exc:
        await audit(
            request,
            f"center:{center}",
            case_id=exc.case_id,
            referral_id=referral_id,
            outcome="refused",
        )
        raise Conflict(str(exc), extensions={"referral_status": exc.status}) from None
    except NotOnReferral as exc:
        await audit(
            request,
            f"center:{center}",
            referral_id=referral_id,
            outcome="not_found",
        )
        raise NotFound(str(exc)) from None
    except InvalidAnswer as exc:
        raise Unprocessable(
            str(exc),
            errors=[
                FieldError(pointer=exc.pointer, location="body", code="invalid", message=str(exc))
            ],
        ) from None
    except OpinionNotOwn as exc:
        await audit(
            request,
            f"center:{center}",
            referral_id=referral_id,
            outcome="denied",
        )
        raise Unprocessable(
            f"Document {exc.args[0]} is not a document this referral uploaded: a center "
            "attaches to a follow-up answer only documents it uploaded to records for this "
            "referral (POST /v1/referrals/{referral_id}/follow-up-questions/{question_id}/"
            "documents on records)."
            if isinstance(exc, AttachmentNotOwn)
            else f"Document {exc.args[0]} is not an opinion this referral uploaded: a center "
            "delivers only the opinion it uploaded to records for this referral "
            "(POST /v1/referrals/{referral_id}/opinion on records).",
            errors=[
                FieldError(
                    pointer=exc.pointer,
                    location="body",
                    code="not_own_opinion",
                    message="not an opinion uploaded for this referral",
                )
            ],
        ) from None
    except OpinionNotStored as exc:
        await audit(
            request,
            f"center:{center}",
            referral_id=referral_id,
            outcome="not_known_yet",
        )
        raise ProblemError(
            f"Document {exc.args[0]} is not a stored document of this referral's case. Upload "
            "it to records first; if you just did, retry in a few seconds."
            if isinstance(exc, AttachmentNotStored)
            else f"Document {exc.args[0]} is not a stored opinion of this referral's case. "
            "Upload it to records first (kind `opinion`); if you just did, retry in a few "
            "seconds.",
            status=409,
            title="The opinion document is not known yet",
            type_slug="opinion-not-stored",
            headers={"Retry-After": "2"},
        ) from None
    await audit(
        request,
        f"center:{center}",
        case_id=referral.case_id,
        referral_id=referral.id,
    )
    return OfferedReferral.of(
        referral, request_, information, follow_ups, meetings, runtime.partners.policy_of(referral)
    )


@router.get(
    "/partner/referrals",
    response_model=list[OfferedReferral],
    responses={200: {"headers": LINK_HEADER}, **problem_responses(401, 422)},
    summary="Referrals offered to this center",
)
async def list_referrals(
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    status_: Annotated[ReferralStatus | None, Query(alias="status")] = None,
    limit: OptionalLimit = None,
    cursor: Cursor = None,
) -> list[OfferedReferral]:
    """Newest first, optionally only those in one `status` (`offered`: the ones waiting for an
    answer). Each as `GET /v1/partner/referrals/{referral_id}` gives it. With `limit`, a page:
    the `Link` header names the next one (its cursor works only for this center and the same
    `status`)."""
    scope = {"list": "partners.referrals", "center": center, "status": status_}
    signer = CursorSigner(runtime.pepper)
    position = signer.position(cursor, scope)
    query = select(Referral).where(col(Referral.center_code) == center)
    if status_:
        query = query.where(col(Referral.status) == status_)
    query = after(query, (col(Referral.offered_at), col(Referral.id)), position)
    paged = limit is not None or cursor is not None
    page_size = limit or DEFAULT_LIMIT
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        rows = await repo.referrals_page(query.limit(page_size + 1) if paged else query)
        if paged:
            page: PageOf[Referral] = signer.page(
                rows, page_size, scope, request, key=lambda r: (r.offered_at, r.id)
            )
            rows = page.items
            page.link(response)
        requests = await repo.ready_requests({r.case_id for r in rows})
        information = await _information(repo, {r.id for r in rows})
        follow_ups = await _follow_ups(repo, {r.id for r in rows})
        meetings = await _meetings(repo, {r.id for r in rows})
        referrals = [
            OfferedReferral.of(
                r,
                requests.get(r.case_id),
                information.get(r.id),
                follow_ups.get(r.id),
                meetings.get(r.id),
                runtime.partners.policy_of(r),
            )
            for r in rows
        ]
    await audit(request, f"center:{center}")
    return referrals


@router.get(
    "/partner/referrals/{referral_id}",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404),
    summary="One referral offered to this center",
)
async def read_referral(
    referral_id: UUID, center: CenterDep, runtime: RuntimeDep, request: Request
) -> OfferedReferral:
    """The offer (clinical summary, documents, the patient's questions), its state, and what
    happened since: information requests and answers, follow-up questions, meetings. Another
    center's referral is a 404."""

    async def read(uow: Any) -> Referral:
        referral, _ = await runtime.partners.referral_for_center(uow, center, referral_id)
        return referral

    return await _answer(runtime, request, center, referral_id, read)


@router.post(
    "/partner/referrals/{referral_id}/accept",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Accept a referral",
)
async def accept(
    referral_id: UUID,
    body: AcceptBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """Before the answer deadline; the case is the center's until it delivers its opinion."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.accept(uow, center, referral_id, body.expected_opinion_at),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/decline",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Decline a referral",
)
async def decline(
    referral_id: UUID,
    body: DeclineBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """The case goes to the next eligible center, never back to this one."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.decline(uow, center, referral_id, body.reason, body.detail),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/information-requests",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Ask the patient for more information",
)
async def request_information(
    referral_id: UUID,
    body: InformationRequestBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """From an offered or accepted referral: what (items), why (reason), by when (due_at). The
    referral waits (`info_requested`); the patient is told and answers with documents (checked
    like any other), words, the preparation checklist, or shipments of slides or blocks. The
    answer gives the referral back as it was (an offer with a new answer deadline, or accepted
    with the expected opinion date moved on by the wait) and is listed in
    `information_requests`. Reminders go to the patient 3 days and 8 hours before `due_at`;
    unanswered by then, the referral expires and the case goes to the next center. While it
    waits the center may still decline; asking again waits for the first answer (409)."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.request_info(
            uow, center, referral_id, reason=body.reason, items=body.items, due_at=body.due_at
        ),
        key=idempotency_key,
        body=body,
        response=response,
    )


class FollowUpAnswerBody(_Body):
    answer: CenterText = Field(description="The answer, in the center's words (up to 1,000)")
    document_ids: list[UUID] = Field(
        default_factory=list,
        max_length=5,
        description="Documents to attach (up to 5, each once): each one this center uploaded to "
        "records for this referral "
        "(`POST /v1/referrals/{referral_id}/follow-up-questions/{question_id}/documents` there); "
        "the patient reads them with the case",
    )

    @field_validator("document_ids")
    @classmethod
    def _each_once(cls, value: list[UUID]) -> list[UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a document is attached twice")
        return value


@router.post(
    "/partner/referrals/{referral_id}/follow-up-questions/{question_id}/answer",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Answer the patient's follow-up question on the opinion",
)
async def answer_follow_up(
    referral_id: UUID,
    question_id: UUID,
    body: FollowUpAnswerBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """Once per question (409 when answered already), in words and optionally with documents
    this center uploaded to records for this referral (422 for the patient's document or
    another referral's; 409 `opinion-not-stored` while records' word of a fresh upload is on its
    way); the patient is told and reads the answer, and the documents, with the case."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.answer_follow_up(
            uow, center, referral_id, question_id, body.answer, body.document_ids
        ),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/shipments/{shipment_id}/receipt",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Confirm receipt of slides or blocks the patient sent",
)
async def confirm_shipment(
    referral_id: UUID,
    shipment_id: UUID,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """Once per shipment (again changes nothing); the patient is told."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.confirm_shipment(uow, center, referral_id, shipment_id),
        key=idempotency_key,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/opinion",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Deliver the written opinion",
)
async def deliver_opinion(
    referral_id: UUID,
    body: OpinionBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """Upload the opinion to records first (`POST /v1/referrals/{referral_id}/opinion` there),
    then reference its document id here."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.partners.deliver_opinion(
            uow, center, referral_id, body.document_id, body.outcome
        ),
        key=idempotency_key,
        body=body,
        response=response,
    )


class SlotBody(_Body):
    starts_at: AwareDatetime = Field(description="When the meeting would start")
    ends_at: AwareDatetime = Field(description="When it would end (15 minutes to 3 hours later)")


class MeetingOfferBody(_Body):
    place: MeetingPlace
    slots: list[SlotBody] = Field(
        min_length=1, max_length=MAX_SLOTS, description="The times offered (1 to 20)"
    )
    note: CenterText | None = Field(
        default=None, description="What the patient should prepare, in the center's words"
    )


class MeetingSlotsBody(_Body):
    slots: list[SlotBody] = Field(
        min_length=1, max_length=MAX_SLOTS, description="The new times (1 to 20)"
    )


class MeetingCancelBody(_Body):
    reason: CenterText = Field(description="Why, in the center's words: the patient reads it")


class MeetingEndBody(_Body):
    outcome: MeetingEnd = Field(description="held, or missed (the patient did not come)")


def _times(slots: list[SlotBody]) -> list[SlotTime]:
    return [SlotTime(starts_at=s.starts_at, ends_at=s.ends_at) for s in slots]


@router.post(
    "/partner/referrals/{referral_id}/meetings",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Offer the patient times for the consultation meeting",
)
async def offer_meeting(
    referral_id: UUID,
    body: MeetingOfferBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """On a referral this center accepted, before or after the opinion: the meeting at which the
    doctors explain the opinion (about an hour; seeds 000, 001). By video (an https link) or in
    person (the center's address). Times start at least 2 hours from now, within 90 days, and do
    not overlap. One meeting is open at a time (409 otherwise). The patient picks a time; the
    center's inbox is told (`referral.meeting_changed`)."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.meetings.offer(
            uow,
            center,
            referral_id,
            body.place,
            _times(body.slots),
            body.note,
            key=idempotency_key,
        ),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/meetings/{meeting_id}/slots",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Offer new times for the meeting (re-schedule)",
)
async def reschedule_meeting(
    referral_id: UUID,
    meeting_id: UUID,
    body: MeetingSlotsBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """The new times replace the offered ones; a time the patient booked is released, and the
    patient is asked to choose again (their calendar entry is withdrawn)."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.meetings.reschedule(
            uow, center, referral_id, meeting_id, _times(body.slots), key=idempotency_key
        ),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/meetings/{meeting_id}/cancellation",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Cancel the meeting",
)
async def cancel_meeting(
    referral_id: UUID,
    meeting_id: UUID,
    body: MeetingCancelBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """An offered or booked meeting; again changes nothing. The patient is told, with the
    center's words. A new meeting may be offered afterwards."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.meetings.cancel(uow, center, referral_id, meeting_id, body.reason),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.post(
    "/partner/referrals/{referral_id}/meetings/{meeting_id}/outcome",
    response_model=OfferedReferral,
    responses=problem_responses(401, 404, 409, 422),
    summary="Record whether the meeting took place",
)
async def record_meeting_outcome(
    referral_id: UUID,
    meeting_id: UUID,
    body: MeetingEndBody,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OfferedReferral:
    """Once the booked time has started (409 before): held, or missed. Once; the same answer
    again changes nothing."""
    return await _answer(
        runtime,
        request,
        center,
        referral_id,
        lambda uow: runtime.meetings.record_end(uow, center, referral_id, meeting_id, body.outcome),
        key=idempotency_key,
        body=body,
        response=response,
    )


@router.put(
    "/partner/webhook",
    response_model=WebhookCreated,
    responses=problem_responses(401, 422),
    summary="Register (or replace) this center's webhook",
)
async def put_webhook(
    body: WebhookBody, center: CenterDep, runtime: RuntimeDep, request: Request
) -> WebhookCreated:
    """Offers are then also POSTed to `url`, signed (`X-Referrals-Signature`); a new signing
    secret is issued each time and shown once. The URL must be HTTPS and its host must resolve
    to public addresses only (checked now and again before every delivery): the scheduler POSTs
    from inside the platform's network, and a center must not point it at internal services."""
    url = str(body.url)
    try:
        await runtime.outbound.resolve(url)
    except TargetRefused as refused:
        await audit(request, f"center:{center}", outcome="refused")
        raise Unprocessable(
            refused.reason,
            errors=[
                FieldError(
                    pointer="/url", location="body", code="webhook_target", message=refused.reason
                )
            ],
        ) from None
    secret = new_secret()
    sealed = runtime.cipher.encrypt_json(secret, bound_to=center).hex()
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        hook = await repo.webhook(center)
        if hook is None:
            repo.add(Webhook(center_code=center, url=url, secret_encrypted=sealed))
        else:
            hook.url, hook.secret_encrypted, hook.created_at = url, sealed, utcnow()
        await uow.commit()
    await audit(request, f"center:{center}")
    return WebhookCreated(url=url, secret=secret)


@router.get(
    "/partner/webhook",
    response_model=WebhookView,
    responses=problem_responses(401, 404),
    summary="This center's webhook and its recent deliveries",
)
async def get_webhook(center: CenterDep, runtime: RuntimeDep, request: Request) -> WebhookView:
    """Its URL (never the secret) and the last 100 deliveries with their attempts and errors;
    404 when the center has none."""
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        hook = await repo.webhook(center)
        if hook is None:
            await audit(request, f"center:{center}", outcome="not_found")
            raise NotFound("This center has no webhook.")
        deliveries = [
            DeliveryView.model_validate(d, from_attributes=True)
            for d in await repo.recent_deliveries(center, 100)
        ]
    await audit(request, f"center:{center}")
    return WebhookView(url=hook.url, created_at=hook.created_at, deliveries=deliveries)


@router.delete(
    "/partner/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404),
    summary="Remove this center's webhook",
)
async def delete_webhook(center: CenterDep, runtime: RuntimeDep, request: Request) -> Response:
    """Offers are then no longer POSTed; the center reads them with `GET
    /v1/partner/referrals`."""
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        hook = await repo.webhook(center)
        if hook is None:
            await audit(request, f"center:{center}", outcome="not_found")
            raise NotFound("This center has no webhook.")
        await repo.remove(hook)
        await uow.commit()
    await audit(request, f"center:{center}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
