"""The patient's front end, `/v1/cases/{case_id}/routing`: with the case access token, it reads
where the case went and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from referrals_common.api.problems import (
    NotFound,
    problem_responses,
)
from referrals_common.i18n import country_name, negotiate, supported
from referrals_common.i18n.case_texts import routing_explanation
from referrals_partners.api.deps import CaseAccessDep, RuntimeDep, audit

router = APIRouter(prefix="/v1")


class PatientRouting(BaseModel):
    """Where the case is and why this center, for the patient."""

    status: str
    center_name: str | None
    center_country: str | None
    center_country_name: str | None = Field(
        default=None, description="`center_country` by name, in `language` (CLDR)"
    )
    center_city: str | None
    why: str | None = Field(description="Routing's rationale, in English, as operators read it")
    explanation: list[str] = Field(
        default_factory=list,
        description="Why this center, for the patient, in short sentences in `language`: the "
        "reasons, then the rules the center met (empty for an offer routed before partners "
        "recorded them)",
    )
    language: Literal["uk", "en"] = Field(
        default="en",
        description="The language of `explanation` and `center_country_name`: the case's, or "
        "the one `Accept-Language` asks for",
    )
    answer_due_at: datetime | None
    expected_opinion_at: datetime | None


@router.get(
    "/cases/{case_id}/routing",
    response_model=PatientRouting,
    responses=problem_responses(401, 404),
    summary="Where the case is and why this center (patient)",
)
async def patient_routing(
    request: Request,
    runtime: RuntimeDep,
    access: CaseAccessDep,
    response: Response,
    accept_language: Annotated[
        str | None,
        Header(
            alias="Accept-Language",
            description="The language of the explanation (`uk` or `en`); without it, the "
            "case's. The answer's `Content-Language` says which.",
        ),
    ] = None,
) -> PatientRouting:
    """The latest referral's center (name, country, city), why routing chose it (in English,
    and for the patient in the case's language), and when it answers or delivers the opinion;
    404 until the case was routed."""
    case_id = access.case_id
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        case = await repo.case(case_id)
        if case is None:
            raise NotFound(f"Case {case_id} has not been referred yet.")
        latest = await repo.latest_referral_with_center(case_id)
    await audit(request, access.actor, case_id=case_id)
    # The case's language came with `case.ready_for_referral` (English from an older intake).
    locale = negotiate(accept_language, supported((case.request or {}).get("locale")))
    response.headers["Content-Language"] = locale
    response.headers["Vary"] = "Accept-Language"
    if latest is None:
        return PatientRouting(
            status=case.status,
            center_name=None,
            center_country=None,
            center_city=None,
            why=(case.last_decision or {}).get("rationale"),
            language=locale,
            answer_due_at=None,
            expected_opinion_at=None,
        )
    referral, row = latest
    return PatientRouting(
        status=case.status,
        center_name=row.profile.get("name"),
        center_country=row.profile.get("country"),
        center_country_name=country_name(row.profile.get("country"), locale) or None,
        center_city=row.profile.get("city"),
        why=referral.decision.get("rationale"),
        explanation=routing_explanation(referral.routing, locale),
        language=locale,
        answer_due_at=referral.answer_due_at,
        expected_opinion_at=referral.expected_opinion_at,
    )
