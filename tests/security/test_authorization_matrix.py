"""Authorization matrix: every route of every HTTP service × every identity, on real data.

The services with an HTTP API are intake, records and partners (translation and notifications
have none: they only consume and publish Kafka events). Their routes are enumerated from the
apps themselves (`app.routes`); `ROUTES` below holds the expectation for each, and a route the
table does not know fails the run. Public by design, and so outside the matrix: `/health`,
`/metrics`, `/docs`, `/redoc`, `/openapi.json` and intake's JWKS (`test_public_routes...`).

For each route the same request (same path, same body) is sent as each identity in
`IDENTITIES`; only the credentials differ. The rightful identity (the case's token, the
opening front end's key, the offered center's key, an operator's key) must get the route's 2xx
(the positive control, sent last, so a state-changing request that an attacker managed to make
first shows up as the control's 409 or 200-instead-of-201); every other identity must get
exactly the status the table says, with an RFC 9457 problem body (and a `WWW-Authenticate`
challenge on 401) that contains none of the target's data: the case id, the patient's name,
e-mail, phone, date of birth, street, insurance number, the question's marker, document ids,
file names and hashes, the referral id, unless the caller itself put that value in the request
(the case id in the path is echoed as the problem's `instance`).

Statuses: no service uses 403. A missing, malformed, expired, forged or revoked credential is a
401; a *valid* credential for something else (another patient's case token, another front end's
key on a case it did not open, another center's key on a referral not offered to it) is a 404,
exactly like a case or referral that does not exist, so that a caller learns nothing about what
is not theirs (docs/architecture.md, "A token for another case gets 404, never 403").
Exceptions, for resources that are the caller's own: another front end may open its own cases
(201), another center lists its own referrals (200, without the target's) and manages its own
webhook.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_partners.models import ApiClient
from referrals_records.main import create_app as create_records_app
from referrals_records.models import CaseState, CenterReferral

from .world import CaseHandle, Patient, World, forge_api_key, wait_for

pytestmark = pytest.mark.security

APP_FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}
PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/v1/.well-known/jwks.json",
        "/fhir/CodeSystem",
        "/fhir/CodeSystem/{code_system_id}",
        "/v1/consent-texts",
        "/v1/consent-texts/{kind}/{version}",
    }
)
PUBLIC_EXAMPLES = {
    "/fhir/CodeSystem/{code_system_id}": "/fhir/CodeSystem/document-kind",
    "/v1/consent-texts/{kind}/{version}": "/v1/consent-texts/processing/2026-01",
}
"""The path requested for a public route with a parameter."""
CAPABILITY_PATHS = frozenset({"/v1/downloads/{token}"})
"""Routes whose URL is its own credential (records' download links: a signed, short-lived,
revocable token naming one document and whom it was issued to); tested in
test_hostile_center (revocation, audit) and records' integration tests (forged, expired)."""
PROBLEM = "application/problem+json"


# ---------------------------------------------------------------------------- identities

IDENTITIES: dict[str, str] = {
    "anonymous": "no credentials at all",
    "case_token": "the target case's own valid token",
    "other_patient_token": "a valid token of another patient's case (another front end)",
    "expired_token": "the target case's token, signed by intake, expired two hours ago",
    "forged_token_foreign_key": "valid claims and intake's kid, signed with another Ed25519 key",
    "forged_token_alg_none": "an unsigned token (alg none) naming the target case",
    "forged_token_tampered": "another patient's genuine token with `sub` set to the target case",
    "forged_token_hs256": "HS256 keyed with intake's public key (algorithm confusion)",
    "front_end_key": "the opening front end's valid API key",
    "other_front_end_key": "another front end's valid API key",
    "revoked_front_end_key": "a front end key revoked in intake",
    "forged_front_end_key": "the opening front end's key id with a secret of its own",
    "center_key": "the valid key of the center the referral was offered to",
    "other_center_key": "the valid key of a center the referral was not offered to",
    "revoked_center_key": "a key of the offered center, revoked in partners only",
    "forged_center_key": "the offered center's key id with a secret of its own",
    "ops_key": "a valid operator key",
    "revoked_ops_key": "an operator key revoked through the ops API",
    "forged_ops_key": "the operator key id with a secret of its own",
}


def identity_headers(world: World, identity: str, case: CaseHandle) -> dict[str, str]:
    """The credentials `identity` presents; tokens are about `case`."""
    keys = world.keys
    bearer = {
        "case_token": lambda: case.token,
        "other_patient_token": lambda: world.other_patient.token,
        "expired_token": lambda: world.expired_token(case),
        "forged_token_foreign_key": lambda: world.forged_token_foreign_key(case),
        "forged_token_alg_none": lambda: world.forged_token_alg_none(case),
        "forged_token_tampered": lambda: world.forged_token_tampered(case),
        "forged_token_hs256": lambda: world.forged_token_hs256(case),
    }
    api_key = {
        "front_end_key": lambda: keys.front_end,
        "other_front_end_key": lambda: keys.other_front_end,
        "revoked_front_end_key": lambda: keys.revoked_front_end,
        "forged_front_end_key": lambda: forge_api_key(keys.front_end),
        "center_key": lambda: keys.center,
        "other_center_key": lambda: keys.other_center,
        "revoked_center_key": lambda: keys.revoked_center,
        "forged_center_key": lambda: forge_api_key(keys.center),
        "ops_key": lambda: keys.ops,
        "revoked_ops_key": lambda: keys.revoked_ops,
        "forged_ops_key": lambda: forge_api_key(keys.ops),
    }
    if identity == "anonymous":
        return {}
    if identity in bearer:
        return {"Authorization": f"Bearer {bearer[identity]()}"}
    return {"X-Api-Key": api_key[identity]()}


# ---------------------------------------------------------------------------- expectations


class Auth(StrEnum):
    CASE = "case token"
    FRONT_END = "front end key"
    CENTER = "center key"
    OPS = "operator key"


RIGHTFUL = {
    Auth.CASE: "case_token",
    Auth.FRONT_END: "front_end_key",
    Auth.CENTER: "center_key",
    Auth.OPS: "ops_key",
}
# A valid credential for something that is not the caller's: 404, as if it did not exist.
NOT_THEIRS = {
    Auth.CASE: "other_patient_token",
    Auth.FRONT_END: "other_front_end_key",
    Auth.CENTER: "other_center_key",
}


@dataclass(frozen=True)
class Expect:
    statuses: frozenset[int]
    why: str

    @classmethod
    def status(cls, status: int, why: str) -> Expect:
        return cls(frozenset({status}), why)


DENIED = Expect.status(401, "not a valid credential for this route")
HIDDEN = Expect.status(404, "a valid credential, but not for this: as if it did not exist")
OWN_CASE = Expect.status(201, "a front end opens its own case")
OWN_LIST = Expect.status(200, "its own referrals only")
OWN_WEBHOOK = Expect(frozenset({200, 204, 404}), "its own webhook, never the target's")


def expected(auth: Auth, identity: str, overrides: dict[str, Expect]) -> Expect:
    if identity in overrides:
        return overrides[identity]
    if NOT_THEIRS.get(auth) == identity:
        return HIDDEN
    return DENIED


# --------------------------------------------------------------------------------- routes


@dataclass
class Target:
    """One prepared request: the case it is about, its URL and body, and what must not leak."""

    case: CaseHandle
    path: str
    body: Callable[[], dict[str, Any]] = dict
    secrets: list[str] = field(default_factory=list)
    shown_to_owner: list[str] = field(default_factory=list)
    """What the rightful caller's 2xx must contain (so the leak check looks for real data)."""
    untouched: Callable[[], Awaitable[None]] | None = None
    """Asserts, after every denied attempt and before the control, that nothing changed."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers every identity sends besides its credentials (a required Idempotency-Key)."""


Prepare = Callable[[World], Awaitable[Target]]


@dataclass(frozen=True)
class Route:
    auth: Auth
    ok: int
    prepare: Prepare
    overrides: dict[str, Expect] = field(default_factory=dict)


def main_target(path: str, *, shown: Callable[[World], list[str]] | None = None) -> Prepare:
    async def prepare(world: World) -> Target:
        main = world.main
        doc = main.documents[0]
        resolved = path.format(
            case_id=main.case_id,
            document_id=doc.id,
            referral_id=main.referral_id,
            code=world.centers["berlin"],
        )
        return Target(main, resolved, shown_to_owner=shown(world) if shown else [])

    return prepare


def _json(**values: Any) -> Callable[[], dict[str, Any]]:
    return lambda: {"json": values}


async def _case_view(world: World, case: CaseHandle) -> dict[str, Any]:
    r = await world.intake.get(f"/v1/cases/{case.case_id}", headers=case.bearer)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# intake ---------------------------------------------------------------------------------


async def create_case(world: World) -> Target:
    patient = Patient.random()
    return Target(
        world.main,
        "/v1/cases",
        _json(**patient.case_body()),
        shown_to_owner=[patient.email],
    )


async def list_own_cases(world: World) -> Target:
    """The opening front end's list, narrowed to the main case by its short reference (the
    front end opened many more): another front end gets its own list, without the main case."""
    reference = world.main.case_id.replace("-", "")[:8]
    return Target(
        world.main, f"/v1/cases?reference={reference}", shown_to_owner=[world.main.case_id]
    )


async def edit_draft(world: World) -> Target:
    case = await world.open_case()
    question = f"Is a lumpectomy enough? {secrets.token_hex(4)}"

    async def untouched() -> None:
        assert question not in (await _case_view(world, case))["questions"]

    return Target(
        case,
        f"/v1/cases/{case.case_id}",
        _json(questions=[question]),
        shown_to_owner=[question],
        untouched=untouched,
    )


async def give_consent(world: World) -> Target:
    case = await world.open_case()

    async def untouched() -> None:
        assert (await _case_view(world, case))["consents"] == []

    return Target(
        case,
        f"/v1/cases/{case.case_id}/consents/processing",
        _json(version="2026-01"),
        shown_to_owner=[case.case_id, "processing"],
        untouched=untouched,
    )


async def submit(world: World) -> Target:
    case = await world.submittable_case()

    async def untouched() -> None:
        assert (await _case_view(world, case))["status"] == "draft"

    return Target(
        case, f"/v1/cases/{case.case_id}/submit", shown_to_owner=[case.case_id], untouched=untouched
    )


async def withdraw(world: World) -> Target:
    case = await world.open_case()

    async def untouched() -> None:
        assert (await _case_view(world, case))["status"] == "draft"

    return Target(
        case,
        f"/v1/cases/{case.case_id}/withdraw",
        _json(reason="patient_request"),
        shown_to_owner=["withdrawn"],
        untouched=untouched,
    )


# records --------------------------------------------------------------------------------


async def upload_document(world: World) -> Target:
    case = await world.open_case()
    name = f"{case.patient.family_name}_discharge_{secrets.token_hex(2)}.pdf"
    content = case.patient.report_pdf()

    async def untouched() -> None:
        r = await world.records.get(f"/v1/cases/{case.case_id}/documents", headers=case.bearer)
        assert r.json() == [], r.text

    return Target(
        case,
        f"/v1/cases/{case.case_id}/documents",
        lambda: {
            "data": {"kind": "discharge_summary"},
            "files": {"file": (name, content, "application/pdf")},
        },
        shown_to_owner=[name],
        untouched=untouched,
    )


async def delete_document(world: World) -> Target:
    case = await world.draft_with_document()
    doc = case.documents[0]

    async def untouched() -> None:
        r = await world.records.get(
            f"/v1/cases/{case.case_id}/documents/{doc.id}", headers=case.bearer
        )
        assert r.status_code == 200, r.text

    return Target(case, f"/v1/cases/{case.case_id}/documents/{doc.id}", untouched=untouched)


def _opinion_pdf(case: CaseHandle) -> tuple[str, bytes]:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, f"Second opinion {secrets.token_hex(8)}: we agree with the diagnosis.")
    return f"opinion_{secrets.token_hex(3)}.pdf", bytes(pdf.output())


async def _center_documents(world: World, case: CaseHandle) -> list[dict[str, Any]]:
    r = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents", headers={"X-Api-Key": world.keys.center}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def upload_opinion(world: World) -> Target:
    case = await world.accepted_case()
    name, content = _opinion_pdf(case)

    async def untouched() -> None:
        assert all(d["kind"] != "opinion" for d in await _center_documents(world, case))

    return Target(
        case,
        f"/v1/referrals/{case.referral_id}/opinion",
        lambda: {"files": {"file": (name, content, "application/pdf")}},
        shown_to_owner=[name],
        untouched=untouched,
    )


# records' resumable uploads: a small DICOM file (one part) or a PDF opinion, opened by the
# rightful caller when the route is about an upload that exists.

SMALL_STUDY = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 4000


async def _upload_state(world: World, upload_id: str) -> tuple[str, int]:
    from referrals_records.models import UploadPart, UploadSession

    async with world.runtimes["records"].db.unit_of_work() as uow:
        session = await uow.session.get(UploadSession, uuid.UUID(upload_id))
        assert session is not None
        parts = await uow.session.scalar(
            select(func.count()).where(UploadPart.upload_id == session.id)
        )
        return session.state, int(parts or 0)


async def _uploads_of(world: World, case_id: str) -> int:
    from referrals_records.models import UploadSession

    async with world.runtimes["records"].db.unit_of_work() as uow:
        count = await uow.session.scalar(
            select(func.count()).where(UploadSession.case_id == uuid.UUID(case_id))
        )
        return int(count or 0)


def _resumable(
    *, center: bool, opened: bool, parts_sent: int = 0, action: str = "", shown: bool = True
) -> Prepare:
    """A Target on a resumable upload: its creation (`opened` False), or an upload the
    rightful caller opened (with `parts_sent` parts) and `action` on it (`shown`: the 2xx names
    the file)."""

    async def prepare(world: World) -> Target:
        if center:
            case = await world.accepted_case()
            name, content = _opinion_pdf(case)
            base = f"/v1/referrals/{case.referral_id}/opinion/uploads"
            owner = {"X-Api-Key": world.keys.center}
            declared = {"file_name": name, "size_bytes": len(content)}
        else:
            case = await world.open_case()
            name, content = f"{case.patient.family_name}_CT.dcm", SMALL_STUDY
            base = f"/v1/cases/{case.case_id}/uploads"
            owner = case.bearer
            declared = {"kind": "imaging_study", "file_name": name, "size_bytes": len(content)}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        if not opened:

            async def nothing_opened() -> None:
                assert await _uploads_of(world, case.case_id) == 0

            return Target(
                case,
                base,
                lambda: {"json": declared},
                shown_to_owner=[name],
                untouched=nothing_opened,
                headers=key,
            )
        r = await world.records.post(base, json=declared, headers={**owner, **key})
        assert r.status_code == 201, r.text
        upload_id = r.json()["id"]
        for number in range(1, parts_sent + 1):
            r = await world.records.put(
                f"{base}/{upload_id}/parts/{number}", content=content, headers=owner
            )
            assert r.status_code == 200, r.text
        before = await _upload_state(world, upload_id)

        async def untouched() -> None:
            assert await _upload_state(world, upload_id) == before

        return Target(
            case,
            f"{base}/{upload_id}{action}",
            (lambda: {"content": content}) if action.startswith("/parts/") else dict,
            shown_to_owner=[name] if shown else [],
            untouched=untouched,
        )

    return prepare


# partners -------------------------------------------------------------------------------
# partners -------------------------------------------------------------------------------


def offered_referral(action: str, **body: Any) -> Prepare:
    async def prepare(world: World) -> Target:
        case = world.take_routed()
        return Target(
            case,
            f"/v1/partner/referrals/{case.referral_id}/{action}",
            _json(**body),
            shown_to_owner=[case.case_id],
        )

    return prepare


def ask_body() -> dict[str, Any]:
    return {
        "reason": "The board needs the biopsy re-reviewed.",
        "items": [{"kind": "pathology_review", "detail": "The stained slides of the core biopsy"}],
        "due_at": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
    }


async def _ask(world: World, case: CaseHandle) -> str:
    """The center asks for information on `case`'s offer; returns the request id once intake
    shows the case waiting for the answer."""
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/information-requests",
        json=ask_body(),
        headers={"X-Api-Key": world.keys.center},
    )
    assert r.status_code == 200, r.text
    request_id = str(r.json()["information_requests"][-1]["id"])

    async def waiting() -> bool:
        return (await _case_view(world, case))["status"] == "information_requested"

    await wait_for(waiting, "intake to show the case waiting for information")
    return request_id


async def answer_request(world: World) -> Target:
    case = world.take_routed()
    request_id = await _ask(world, case)
    answer = f"The slides were sent today {secrets.token_hex(4)}."

    async def untouched() -> None:
        view = await _case_view(world, case)
        assert view["status"] == "information_requested", view["status"]
        assert view["information_requests"][-1]["answer"] is None

    return Target(
        case,
        f"/v1/cases/{case.case_id}/information-requests/{request_id}/answer",
        _json(answer=answer),
        shown_to_owner=[answer, "referred"],
        untouched=untouched,
    )


async def set_preparation(world: World) -> Target:
    case = world.take_routed()
    medicine = f"Letrozole-{secrets.token_hex(3)}"

    async def untouched() -> None:
        assert medicine not in json.dumps((await _case_view(world, case))["preparation"])

    return Target(
        case,
        f"/v1/cases/{case.case_id}/preparation",
        _json(medications=[{"medicine": medicine, "dose": "2.5 mg once a day"}]),
        shown_to_owner=[medicine],
        untouched=untouched,
    )


async def confirm_shipment(world: World) -> Target:
    case = world.take_routed()
    request_id = await _ask(world, case)
    tracking = f"JD{secrets.randbelow(10**12):012d}"
    r = await world.intake.post(
        f"/v1/cases/{case.case_id}/information-requests/{request_id}/answer",
        json={
            "shipments": [
                {
                    "material": "slides",
                    "carrier": "DHL Express",
                    "tracking_number": tracking,
                    "sent_on": datetime.now(UTC).date().isoformat(),
                }
            ]
        },
        headers=case.bearer,
    )
    assert r.status_code == 200, r.text
    center = {"X-Api-Key": world.keys.center}

    async def shipment() -> dict[str, Any] | None:
        view = await world.partners.get(f"/v1/partner/referrals/{case.referral_id}", headers=center)
        shipments = view.json()["information_requests"][-1]["shipments"]
        return shipments[0] if shipments else None

    sent = await wait_for(shipment, "partners to know the shipment")

    async def untouched() -> None:
        assert (await shipment() or {}).get("received_at") is None

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/shipments/{sent['id']}/receipt",
        shown_to_owner=[tracking],
        untouched=untouched,
    )


async def _opinion_delivered(world: World) -> CaseHandle:
    """A case whose center delivered its opinion, as intake shows it."""
    case = await world.accepted_case()
    opinion = await world.upload_opinion(case)
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/opinion",
        json={"document_id": opinion},
        headers={"X-Api-Key": world.keys.center},
    )
    assert r.status_code == 200, r.text

    async def delivered() -> bool:
        return (await _case_view(world, case))["status"] == "opinion_delivered"

    await wait_for(delivered, "intake to show the opinion")
    return case


async def choose_center(world: World) -> Target:
    case = await world.submittable_case()
    r = await world.intake.patch(
        f"/v1/cases/{case.case_id}", json={"patient_chooses_center": True}, headers=case.bearer
    )
    assert r.status_code == 200, r.text
    r = await world.intake.post(f"/v1/cases/{case.case_id}/submit", headers=case.bearer)
    assert r.status_code == 200, r.text

    async def proposal() -> dict[str, Any] | None:
        view = await _case_view(world, case)
        return view["center_proposal"] if view["status"] == "choosing_center" else None

    proposed = await wait_for(proposal, "partners to propose centers to choose from")
    second = proposed["proposals"][1]

    async def untouched() -> None:
        assert not (await _case_view(world, case))["center_proposal"].get("chosen")

    return Target(
        case,
        f"/v1/cases/{case.case_id}/center-choice",
        _json(center_code=second["center_code"]),
        shown_to_owner=[second["center_name"]],
        untouched=untouched,
    )


async def ask_follow_up(world: World) -> Target:
    case = await _opinion_delivered(world)
    question = f"Is radiotherapy still needed? {secrets.token_hex(4)}"

    async def untouched() -> None:
        assert (await _case_view(world, case))["follow_up_questions"] == []

    return Target(
        case,
        f"/v1/cases/{case.case_id}/follow-up-questions",
        _json(question=question),
        shown_to_owner=[question],
        untouched=untouched,
    )


async def answer_follow_up(world: World) -> Target:
    case = await _opinion_delivered(world)
    r = await world.intake.post(
        f"/v1/cases/{case.case_id}/follow-up-questions",
        json={"question": "Can I join the trial from Ukraine?"},
        headers=case.bearer,
    )
    assert r.status_code == 201, r.text
    center = {"X-Api-Key": world.keys.center}

    async def question() -> dict[str, Any] | None:
        view = await world.partners.get(f"/v1/partner/referrals/{case.referral_id}", headers=center)
        found = view.json()["follow_up_questions"]
        return found[0] if found else None

    asked = await wait_for(question, "partners to know the follow-up question")
    answer = f"Yes, from Warsaw {secrets.token_hex(4)}."

    async def untouched() -> None:
        assert (await question() or {}).get("answer") is None

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/follow-up-questions/{asked['id']}/answer",
        _json(answer=answer),
        shown_to_owner=[answer],
        untouched=untouched,
    )


async def upload_follow_up_document(world: World) -> Target:
    """The center that gave the opinion uploads a document for the patient's open question."""
    case = await _opinion_delivered(world)
    r = await world.intake.post(
        f"/v1/cases/{case.case_id}/follow-up-questions",
        json={"question": "Could you send the staging table?"},
        headers=case.bearer,
    )
    assert r.status_code == 201, r.text
    question = r.json()["follow_up_questions"][0]["id"]
    name, content = _opinion_pdf(case)

    async def untouched() -> None:
        listed = await world.records.get(f"/v1/cases/{case.case_id}/documents", headers=case.bearer)
        assert [d["kind"] for d in listed.json()].count("opinion") == 1  # the opinion only

    path = f"/v1/referrals/{case.referral_id}/follow-up-questions/{question}/documents"

    async def known() -> bool:
        # records hears of the question from intake's event: the rightful upload then works.
        async with world.runtimes["records"].db.unit_of_work() as uow:
            return (
                await world.runtimes["records"].records.open_question(
                    uow, uuid.UUID(case.referral_id), uuid.UUID(question)
                )
                is not None
            )

    await wait_for(known, "records to know the follow-up question")
    return Target(
        case,
        path,
        lambda: {"files": {"file": (name, content, "application/pdf")}},
        shown_to_owner=["opinion"],
        untouched=untouched,
    )


async def deliver_opinion(world: World) -> Target:
    case = await world.accepted_case()
    opinion = await world.upload_opinion(case)
    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/opinion",
        _json(document_id=opinion),
        secrets=[opinion],
        shown_to_owner=[opinion, "completed"],
    )


VIDEO = {"mode": "video", "join_url": "https://video.example.org/r/7", "time_zone": "Europe/Berlin"}


def _slots(*hours: float) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    return [
        {
            "starts_at": (now + timedelta(hours=h)).isoformat(),
            "ends_at": (now + timedelta(hours=h, minutes=45)).isoformat(),
        }
        for h in hours
    ]


async def _center_meeting(world: World, case: CaseHandle) -> dict[str, Any]:
    r = await world.partners.get(
        f"/v1/partner/referrals/{case.referral_id}", headers={"X-Api-Key": world.keys.center}
    )
    assert r.status_code == 200, r.text
    return r.json()["meetings"][-1]  # type: ignore[no-any-return]


async def _meeting_offered(world: World) -> tuple[CaseHandle, dict[str, Any]]:
    """An accepted case whose center offered a meeting, as intake shows it."""
    case = await world.accepted_case()
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/meetings",
        json={"place": VIDEO, "slots": _slots(24, 48)},
        headers={"X-Api-Key": world.keys.center},
    )
    assert r.status_code == 200, r.text

    async def shown() -> dict[str, Any] | None:
        meetings = (await _case_view(world, case))["meetings"]
        return meetings[0] if meetings else None

    return case, await wait_for(shown, "intake to show the meeting")


async def offer_meeting(world: World) -> Target:
    case = await world.accepted_case()
    note = f"Bring the scans {secrets.token_hex(4)}"

    async def untouched() -> None:
        r = await world.partners.get(
            f"/v1/partner/referrals/{case.referral_id}", headers={"X-Api-Key": world.keys.center}
        )
        assert r.json()["meetings"] == [], r.text

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/meetings",
        _json(place=VIDEO, slots=_slots(30), note=note),
        shown_to_owner=[note],
        untouched=untouched,
    )


async def reschedule_meeting(world: World) -> Target:
    case, meeting = await _meeting_offered(world)
    before = [s["slot_id"] for s in meeting["slots"]]

    async def untouched() -> None:
        assert [s["slot_id"] for s in (await _center_meeting(world, case))["slots"]] == before

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/meetings/{meeting['id']}/slots",
        _json(slots=_slots(72)),
        secrets=[meeting["id"]],
        untouched=untouched,
    )


async def cancel_meeting_by_center(world: World) -> Target:
    case, meeting = await _meeting_offered(world)

    async def untouched() -> None:
        assert (await _center_meeting(world, case))["status"] == "offered"

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/meetings/{meeting['id']}/cancellation",
        _json(reason="Our doctor is ill."),
        secrets=[meeting["id"]],
        shown_to_owner=["cancelled"],
        untouched=untouched,
    )


async def record_meeting_outcome(world: World) -> Target:
    """A booked meeting whose time has come (its start moved into the past in partners' table:
    the only way to be after a meeting's start without waiting for it)."""
    from referrals_partners.models import Meeting

    case, meeting = await _meeting_offered(world)
    r = await world.intake.post(
        f"/v1/cases/{case.case_id}/meetings/{meeting['id']}/booking",
        json={"slot_id": meeting["slots"][0]["slot_id"]},
        headers=case.bearer,
    )
    assert r.status_code == 200, r.text

    async def booked() -> bool:
        return (await _center_meeting(world, case))["status"] == "booked"

    await wait_for(booked, "partners to book the meeting")
    async with world.runtimes["partners"].db.unit_of_work() as uow:
        row = await uow.session.get(Meeting, uuid.UUID(meeting["id"]))
        assert row is not None
        assert row.starts_at is not None
        assert row.ends_at is not None
        row.starts_at -= timedelta(days=2)
        row.ends_at -= timedelta(days=2)
        await uow.commit()

    async def untouched() -> None:
        assert (await _center_meeting(world, case))["status"] == "booked"

    return Target(
        case,
        f"/v1/partner/referrals/{case.referral_id}/meetings/{meeting['id']}/outcome",
        _json(outcome="missed"),
        secrets=[meeting["id"]],
        shown_to_owner=["missed"],
        untouched=untouched,
    )


async def ask_further_opinion(world: World) -> Target:
    case = await _opinion_delivered(world)

    async def untouched() -> None:
        view = await _case_view(world, case)
        assert (view["status"], view["opinion_round"]) == ("opinion_delivered", 1)

    return Target(
        case,
        f"/v1/cases/{case.case_id}/further-opinion",
        _json(reason="conflicting_opinions", share_earlier_opinions=True),
        shown_to_owner=['"status":"ready"'],
        untouched=untouched,
    )


async def book_meeting(world: World) -> Target:
    case, meeting = await _meeting_offered(world)

    async def untouched() -> None:
        assert (await _case_view(world, case))["meetings"][0]["status"] == "offered"

    return Target(
        case,
        f"/v1/cases/{case.case_id}/meetings/{meeting['id']}/booking",
        _json(slot_id=meeting["slots"][1]["slot_id"], time_zone="Europe/Kyiv"),
        secrets=[meeting["id"]],
        shown_to_owner=["booking"],
        untouched=untouched,
    )


async def cancel_meeting_by_patient(world: World) -> Target:
    case, meeting = await _meeting_offered(world)

    async def untouched() -> None:
        assert (await _case_view(world, case))["meetings"][0]["status"] == "offered"

    return Target(
        case,
        f"/v1/cases/{case.case_id}/meetings/{meeting['id']}/cancellation",
        _json(reason="cannot_attend"),
        secrets=[meeting["id"]],
        shown_to_owner=["cancelled"],
        untouched=untouched,
    )


async def _register_webhook(world: World) -> str:
    url = f"https://hooks-{secrets.token_hex(4)}.berlin.example.org/offers"
    r = await world.partners.put(
        "/v1/partner/webhook", json={"url": url}, headers={"X-Api-Key": world.keys.center}
    )
    assert r.status_code == 200, r.text
    return url


def webhook(change: bool) -> Prepare:
    async def prepare(world: World) -> Target:
        url = await _register_webhook(world)

        async def untouched() -> None:
            r = await world.partners.get(
                "/v1/partner/webhook", headers={"X-Api-Key": world.keys.center}
            )
            assert r.status_code == 200 and r.json()["url"] == url, r.text

        new_url = f"https://hooks-{secrets.token_hex(4)}.berlin.example.org/v2"
        return Target(
            world.main,
            "/v1/partner/webhook",
            _json(url=new_url) if change else dict,
            secrets=[url],
            shown_to_owner=[new_url] if change else [],
            untouched=untouched,
        )

    return prepare


async def read_webhook(world: World) -> Target:
    url = await _register_webhook(world)
    return Target(world.main, "/v1/partner/webhook", secrets=[url], shown_to_owner=[url])


async def _subscribe_front_end(world: World) -> str:
    """The opening front end's webhook, subscribed; its address."""
    url = f"https://hooks-{secrets.token_hex(4)}.kyiv.example.org/updates"
    r = await world.intake.put(
        "/v1/front-end/webhook", json={"url": url}, headers={"X-Api-Key": world.keys.front_end}
    )
    assert r.status_code in (200, 201), r.text
    return url


def front_end_webhook(path: str, *, change: bool = False, shown: bool = False) -> Prepare:
    async def prepare(world: World) -> Target:
        url = await _subscribe_front_end(world)

        async def untouched() -> None:
            r = await world.intake.get(
                "/v1/front-end/webhook", headers={"X-Api-Key": world.keys.front_end}
            )
            assert r.status_code == 200 and r.json()["url"] == url, r.text

        new_url = f"https://hooks-{secrets.token_hex(4)}.kyiv.example.org/v2"
        return Target(
            world.main,
            path,
            _json(url=new_url) if change else dict,
            secrets=[url],
            shown_to_owner=[new_url] if change else ([url] if shown else []),
            untouched=untouched,
        )

    return prepare


OWN_SUBSCRIPTION = Expect(frozenset({200, 201}), "it subscribes its own webhook, not the target's")
OWN_PING = Expect(frozenset({202, 404}), "its own webhook (none, or its own), never the target's")
OWN_LOG = Expect.status(200, "its own delivery log, without the target's")


async def _centers(world: World) -> dict[str, dict[str, Any]]:
    r = await world.partners.get("/v1/ops/centers", headers={"X-Api-Key": world.keys.ops})
    assert r.status_code == 200, r.text
    return {c["code"]: c for c in r.json()}


def _spare_secrets(world: World) -> list[str]:
    return [world.seed["spare"]["contact"]["email"], world.seed["spare"]["name"]]


async def list_centers(world: World) -> Target:
    return Target(
        world.main,
        "/v1/ops/centers",
        secrets=_spare_secrets(world),
        shown_to_owner=[world.centers["spare"], world.seed["spare"]["contact"]["email"]],
    )


async def add_center(world: World) -> Target:
    code = f"sec-new-{secrets.token_hex(3)}"
    profile = {**world.seed["spare"], "code": code, "name": f"New Center {code}"}

    async def untouched() -> None:
        assert code not in await _centers(world)

    return Target(
        world.main, "/v1/ops/centers", _json(**profile), shown_to_owner=[code], untouched=untouched
    )


async def replace_center(world: World) -> Target:
    code = world.centers["spare"]
    before = (await _centers(world))[code]["profile"]["name"]
    renamed = f"{world.seed['spare']['name']} renamed {secrets.token_hex(3)}"

    async def untouched() -> None:
        assert (await _centers(world))[code]["profile"]["name"] == before

    return Target(
        world.main,
        f"/v1/ops/centers/{code}",
        _json(**{**world.seed["spare"], "name": renamed}),
        shown_to_owner=[renamed],
        untouched=untouched,
    )


def set_active(action: str) -> Prepare:
    async def prepare(world: World) -> Target:
        code = world.centers["spare"]
        ops = {"X-Api-Key": world.keys.ops}
        start = "resume" if action == "pause" else "pause"  # the state the action changes
        r = await world.partners.post(f"/v1/ops/centers/{code}/{start}", headers=ops)
        assert r.status_code == 200, r.text

        async def untouched() -> None:
            assert (await _centers(world))[code]["active"] == (start == "resume")

        return Target(
            world.main,
            f"/v1/ops/centers/{code}/{action}",
            secrets=_spare_secrets(world),
            shown_to_owner=[code],
            untouched=untouched,
        )

    return prepare


async def issue_center_key(world: World) -> Target:
    code = world.centers["spare"]
    partners = world.runtimes["partners"]

    async def count() -> int:
        async with partners.db.unit_of_work() as uow:
            query = select(func.count()).select_from(ApiClient).where(ApiClient.center_code == code)
            return int((await uow.session.execute(query)).scalar_one())

    before = await count()

    async def untouched() -> None:
        assert await count() == before

    return Target(
        world.main, f"/v1/ops/centers/{code}/keys", shown_to_owner=["ccr_"], untouched=untouched
    )


async def revoke_key(world: World) -> Target:
    key = await world.center_key("spare")

    async def untouched() -> None:
        r = await world.partners.get("/v1/partner/referrals", headers={"X-Api-Key": key})
        assert r.status_code == 200, r.text

    return Target(world.main, f"/v1/ops/keys/{key.split('_')[1]}", untouched=untouched)


async def ops_concordance(world: World) -> Target:
    return Target(world.main, "/v1/ops/concordance", shown_to_owner=["plan_changed_share"])


async def ops_dead_letter_topics(world: World) -> Target:
    return Target(world.main, "/v1/ops/dead-letters", shown_to_owner=["referrals.cases.v1.dlq"])


async def _main_case_dead_letter(world: World) -> dict[str, Any]:
    """A dead letter of the main case on referrals.cases.v1 (made as a consumer makes one), as
    the ops API lists it."""
    from types import SimpleNamespace

    from referrals_common.messaging.dlq import DeadLetterPublisher

    ops = {"X-Api-Key": world.keys.ops}
    listed = await world.partners.get("/v1/ops/dead-letters/referrals.cases.v1", headers=ops)
    found = [d for d in listed.json() if d["case_id"] == world.main.case_id]
    if found:
        return found[0]  # type: ignore[no-any-return]
    record = SimpleNamespace(
        topic="referrals.cases.v1",
        partition=0,
        offset=1,
        key=world.main.case_id.encode(),
        headers=[],
    )
    dead = DeadLetterPublisher(world.bootstrap)
    await dead.start()
    try:
        body = json.dumps({"id": str(uuid.uuid4()), "type": "referrals.case.withdrawn.v1"})
        await dead.publish(record, body.encode(), consumer="intake", error=ValueError("poison"))
    finally:
        await dead.stop()
    listed = await world.partners.get("/v1/ops/dead-letters/referrals.cases.v1", headers=ops)
    (letter,) = [d for d in listed.json() if d["case_id"] == world.main.case_id]
    return letter  # type: ignore[no-any-return]


async def ops_dead_letters(world: World) -> Target:
    await _main_case_dead_letter(world)
    return Target(
        world.main, "/v1/ops/dead-letters/referrals.cases.v1", shown_to_owner=[world.main.case_id]
    )


async def replay_dead_letter(world: World) -> Target:
    letter = await _main_case_dead_letter(world)
    replays = len(letter["replays"])

    async def untouched() -> None:
        again = await _main_case_dead_letter(world)
        assert len(again["replays"]) == replays, again

    return Target(
        world.main,
        f"/v1/ops/dead-letters/referrals.cases.v1/{letter['partition']}/{letter['offset']}/replay",
        shown_to_owner=[world.main.case_id],
        untouched=untouched,
        headers={"Idempotency-Key": f"replay-{uuid.uuid4()}"},
    )


async def ops_cases(world: World) -> Target:
    return Target(world.main, "/v1/ops/cases?status=offered", shown_to_owner=[world.main.case_id])


ROUTES: dict[tuple[str, str, str], Route] = {
    # intake: the partner front end (key) and the patient (case token)
    ("intake", "POST", "/v1/cases"): Route(
        Auth.FRONT_END, 201, create_case, {"other_front_end_key": OWN_CASE}
    ),
    ("intake", "GET", "/v1/cases"): Route(
        Auth.FRONT_END,
        200,
        list_own_cases,
        {"other_front_end_key": Expect.status(200, "its own cases only, never the target")},
    ),
    ("intake", "POST", "/v1/cases/{case_id}/access-token"): Route(
        Auth.FRONT_END, 200, main_target("/v1/cases/{case_id}/access-token")
    ),
    ("intake", "GET", "/v1/cases/{case_id}"): Route(
        Auth.CASE, 200, main_target("/v1/cases/{case_id}", shown=lambda w: [w.main.patient.email])
    ),
    ("intake", "PATCH", "/v1/cases/{case_id}"): Route(Auth.CASE, 200, edit_draft),
    ("intake", "PUT", "/v1/cases/{case_id}/consents/{kind}"): Route(Auth.CASE, 200, give_consent),
    ("intake", "POST", "/v1/cases/{case_id}/submit"): Route(Auth.CASE, 200, submit),
    ("intake", "POST", "/v1/cases/{case_id}/withdraw"): Route(Auth.CASE, 200, withdraw),
    ("intake", "PUT", "/v1/cases/{case_id}/preparation"): Route(Auth.CASE, 200, set_preparation),
    ("intake", "POST", "/v1/cases/{case_id}/center-choice"): Route(Auth.CASE, 200, choose_center),
    ("intake", "POST", "/v1/cases/{case_id}/follow-up-questions"): Route(
        Auth.CASE, 201, ask_follow_up
    ),
    ("intake", "POST", "/v1/cases/{case_id}/further-opinion"): Route(
        Auth.CASE, 200, ask_further_opinion
    ),
    ("intake", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/booking"): Route(
        Auth.CASE, 200, book_meeting
    ),
    ("intake", "POST", "/v1/cases/{case_id}/meetings/{meeting_id}/cancellation"): Route(
        Auth.CASE, 200, cancel_meeting_by_patient
    ),
    ("intake", "POST", "/v1/cases/{case_id}/information-requests/{request_id}/answer"): Route(
        Auth.CASE, 200, answer_request
    ),
    ("intake", "GET", "/v1/cases/{case_id}/timeline"): Route(
        Auth.CASE,
        200,
        main_target("/v1/cases/{case_id}/timeline", shown=lambda w: [w.centers["berlin"]]),
    ),
    ("intake", "GET", "/v1/cases/{case_id}/events"): Route(
        Auth.CASE,
        200,
        main_target("/v1/cases/{case_id}/events", shown=lambda w: ["timeline_entry"]),
    ),
    ("intake", "PUT", "/v1/front-end/webhook"): Route(
        Auth.FRONT_END,
        200,
        front_end_webhook("/v1/front-end/webhook", change=True),
        {"other_front_end_key": OWN_SUBSCRIPTION},
    ),
    ("intake", "GET", "/v1/front-end/webhook"): Route(
        Auth.FRONT_END,
        200,
        front_end_webhook("/v1/front-end/webhook", shown=True),
        {"other_front_end_key": OWN_WEBHOOK},
    ),
    ("intake", "DELETE", "/v1/front-end/webhook"): Route(
        Auth.FRONT_END,
        204,
        front_end_webhook("/v1/front-end/webhook"),
        {"other_front_end_key": OWN_WEBHOOK},
    ),
    ("intake", "POST", "/v1/front-end/webhook/ping"): Route(
        Auth.FRONT_END,
        202,
        front_end_webhook("/v1/front-end/webhook/ping"),
        {"other_front_end_key": OWN_PING},
    ),
    ("intake", "GET", "/v1/front-end/webhook/deliveries"): Route(
        Auth.FRONT_END,
        200,
        front_end_webhook("/v1/front-end/webhook/deliveries"),
        {"other_front_end_key": OWN_LOG},
    ),
    ("intake", "GET", "/v1/cases/{case_id}/fhir"): Route(
        Auth.CASE,
        200,
        main_target(
            "/v1/cases/{case_id}/fhir",
            shown=lambda w: [w.main.patient.date_of_birth.isoformat(), w.main.documents[0].id],
        ),
    ),
    # records: the patient (case token) and the cancer center (center key)
    ("records", "POST", "/v1/cases/{case_id}/documents"): Route(Auth.CASE, 201, upload_document),
    ("records", "GET", "/v1/cases/{case_id}/documents"): Route(
        Auth.CASE,
        200,
        main_target(
            "/v1/cases/{case_id}/documents", shown=lambda w: [w.main.documents[0].file_name]
        ),
    ),
    ("records", "GET", "/v1/cases/{case_id}/documents/{document_id}"): Route(
        Auth.CASE,
        200,
        main_target(
            "/v1/cases/{case_id}/documents/{document_id}",
            shown=lambda w: [w.main.documents[0].file_name],
        ),
    ),
    ("records", "POST", "/v1/cases/{case_id}/documents/{document_id}/link"): Route(
        Auth.CASE,
        200,
        main_target(
            "/v1/cases/{case_id}/documents/{document_id}/link",
            shown=lambda w: [w.main.documents[0].file_name],
        ),
    ),
    ("records", "DELETE", "/v1/cases/{case_id}/documents/{document_id}"): Route(
        Auth.CASE, 204, delete_document
    ),
    ("records", "GET", "/v1/referrals/{referral_id}/documents"): Route(
        Auth.CENTER,
        200,
        main_target(
            "/v1/referrals/{referral_id}/documents", shown=lambda w: [w.main.documents[0].id]
        ),
    ),
    ("records", "GET", "/v1/referrals/{referral_id}/documents/{document_id}"): Route(
        Auth.CENTER,
        200,
        main_target(
            # Under a neutral name: the patient's file name never reaches a center.
            "/v1/referrals/{referral_id}/documents/{document_id}",
            shown=lambda w: ["pathology-report-1.pdf"],
        ),
    ),
    ("records", "POST", "/v1/referrals/{referral_id}/opinion"): Route(
        Auth.CENTER, 201, upload_opinion
    ),
    (
        "records",
        "POST",
        "/v1/referrals/{referral_id}/follow-up-questions/{question_id}/documents",
    ): Route(Auth.CENTER, 201, upload_follow_up_document),
    ("records", "POST", "/v1/cases/{case_id}/uploads"): Route(
        Auth.CASE, 201, _resumable(center=False, opened=False)
    ),
    ("records", "GET", "/v1/cases/{case_id}/uploads/{upload_id}"): Route(
        Auth.CASE, 200, _resumable(center=False, opened=True)
    ),
    ("records", "PUT", "/v1/cases/{case_id}/uploads/{upload_id}/parts/{part_number}"): Route(
        Auth.CASE, 200, _resumable(center=False, opened=True, action="/parts/1")
    ),
    ("records", "POST", "/v1/cases/{case_id}/uploads/{upload_id}/complete"): Route(
        Auth.CASE, 201, _resumable(center=False, opened=True, parts_sent=1, action="/complete")
    ),
    ("records", "DELETE", "/v1/cases/{case_id}/uploads/{upload_id}"): Route(
        Auth.CASE, 204, _resumable(center=False, opened=True, shown=False)
    ),
    ("records", "POST", "/v1/referrals/{referral_id}/opinion/uploads"): Route(
        Auth.CENTER, 201, _resumable(center=True, opened=False)
    ),
    ("records", "GET", "/v1/referrals/{referral_id}/opinion/uploads/{upload_id}"): Route(
        Auth.CENTER, 200, _resumable(center=True, opened=True)
    ),
    (
        "records",
        "PUT",
        "/v1/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{part_number}",
    ): Route(Auth.CENTER, 200, _resumable(center=True, opened=True, action="/parts/1")),
    ("records", "POST", "/v1/referrals/{referral_id}/opinion/uploads/{upload_id}/complete"): (
        Route(
            Auth.CENTER, 201, _resumable(center=True, opened=True, parts_sent=1, action="/complete")
        )
    ),
    ("records", "DELETE", "/v1/referrals/{referral_id}/opinion/uploads/{upload_id}"): Route(
        Auth.CENTER, 204, _resumable(center=True, opened=True, shown=False)
    ),
    # partners: the center (its key), operators (ops key), the patient (case token)
    ("partners", "GET", "/v1/partner/referrals"): Route(
        Auth.CENTER,
        200,
        main_target("/v1/partner/referrals", shown=lambda w: [w.main.referral_id]),
        {"other_center_key": OWN_LIST},
    ),
    ("partners", "GET", "/v1/partner/referrals/{referral_id}"): Route(
        Auth.CENTER,
        200,
        main_target("/v1/partner/referrals/{referral_id}", shown=lambda w: [w.main.case_id]),
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/accept"): Route(
        Auth.CENTER,
        200,
        offered_referral(
            "accept", expected_opinion_at=(datetime.now(UTC) + timedelta(days=9)).isoformat()
        ),
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/decline"): Route(
        Auth.CENTER, 200, offered_referral("decline", reason="no_capacity")
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/information-requests"): Route(
        Auth.CENTER,
        200,
        offered_referral("information-requests", **ask_body()),
    ),
    (
        "partners",
        "POST",
        "/v1/partner/referrals/{referral_id}/follow-up-questions/{question_id}/answer",
    ): Route(Auth.CENTER, 200, answer_follow_up),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/shipments/{shipment_id}/receipt"): (
        Route(Auth.CENTER, 200, confirm_shipment)
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/opinion"): Route(
        Auth.CENTER, 200, deliver_opinion
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/meetings"): Route(
        Auth.CENTER, 200, offer_meeting
    ),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/meetings/{meeting_id}/slots"): (
        Route(Auth.CENTER, 200, reschedule_meeting)
    ),
    (
        "partners",
        "POST",
        "/v1/partner/referrals/{referral_id}/meetings/{meeting_id}/cancellation",
    ): Route(Auth.CENTER, 200, cancel_meeting_by_center),
    ("partners", "POST", "/v1/partner/referrals/{referral_id}/meetings/{meeting_id}/outcome"): (
        Route(Auth.CENTER, 200, record_meeting_outcome)
    ),
    ("partners", "PUT", "/v1/partner/webhook"): Route(
        Auth.CENTER, 200, webhook(change=True), {"other_center_key": OWN_WEBHOOK}
    ),
    ("partners", "GET", "/v1/partner/webhook"): Route(
        Auth.CENTER, 200, read_webhook, {"other_center_key": OWN_WEBHOOK}
    ),
    ("partners", "DELETE", "/v1/partner/webhook"): Route(
        Auth.CENTER, 204, webhook(change=False), {"other_center_key": OWN_WEBHOOK}
    ),
    ("partners", "GET", "/v1/ops/centers"): Route(Auth.OPS, 200, list_centers),
    ("partners", "POST", "/v1/ops/centers"): Route(Auth.OPS, 201, add_center),
    ("partners", "PUT", "/v1/ops/centers/{code}"): Route(Auth.OPS, 200, replace_center),
    ("partners", "POST", "/v1/ops/centers/{code}/pause"): Route(Auth.OPS, 200, set_active("pause")),
    ("partners", "POST", "/v1/ops/centers/{code}/resume"): Route(
        Auth.OPS, 200, set_active("resume")
    ),
    ("partners", "POST", "/v1/ops/centers/{code}/keys"): Route(Auth.OPS, 201, issue_center_key),
    ("partners", "DELETE", "/v1/ops/keys/{key_id}"): Route(Auth.OPS, 204, revoke_key),
    ("partners", "GET", "/v1/ops/cases"): Route(Auth.OPS, 200, ops_cases),
    ("partners", "GET", "/v1/ops/concordance"): Route(Auth.OPS, 200, ops_concordance),
    ("partners", "GET", "/v1/ops/cases/{case_id}/timeline"): Route(
        Auth.OPS,
        200,
        main_target("/v1/ops/cases/{case_id}/timeline", shown=lambda w: [w.centers["berlin"]]),
    ),
    ("partners", "GET", "/v1/ops/dead-letters"): Route(Auth.OPS, 200, ops_dead_letter_topics),
    ("partners", "GET", "/v1/ops/overdue"): Route(Auth.OPS, 200, main_target("/v1/ops/overdue")),
    ("partners", "GET", "/v1/ops/dead-letters/{topic}"): Route(Auth.OPS, 200, ops_dead_letters),
    ("partners", "POST", "/v1/ops/dead-letters/{topic}/{partition}/{offset}/replay"): Route(
        Auth.OPS, 200, replay_dead_letter
    ),
    ("partners", "GET", "/v1/ops/cases/{case_id}/routing"): Route(
        Auth.OPS,
        200,
        main_target("/v1/ops/cases/{case_id}/routing", shown=lambda w: [w.main.referral_id]),
    ),
    ("partners", "GET", "/v1/cases/{case_id}/routing"): Route(
        Auth.CASE,
        200,
        main_target("/v1/cases/{case_id}/routing", shown=lambda w: [w.seed["berlin"]["name"]]),
    ),
}


# ------------------------------------------------------------------------- enumeration


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, mounts included, HEAD/OPTIONS aside.

    FastAPI 0.163 keeps an included router as one lazy entry of `app.routes`;
    `iter_route_contexts` expands it into the routes it serves. A route of a kind this cannot
    read fails here rather than slipping out of the matrix."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.163: app.routes is already flat
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    found: set[tuple[str, str]] = set()
    for route in routes:
        path = getattr(route, "path", None)
        assert path, f"a route without a path: {route!r}"
        methods = getattr(route, "methods", None) or {"*"}  # a mount answers every method
        found |= {(m, path) for m in methods if m not in {"HEAD", "OPTIONS"}}
    return found


def protected_routes() -> set[tuple[str, str, str]]:
    return {
        (service, method, path)
        for service, factory in APP_FACTORIES.items()
        for method, path in app_routes(factory())
        if path not in PUBLIC_PATHS | CAPABILITY_PATHS
    }


MATRIX = sorted(protected_routes() | set(ROUTES))


@pytest.mark.parametrize("service", sorted(APP_FACTORIES))
def test_the_table_covers_exactly_the_routes_of_the_app(service: str) -> None:
    app = APP_FACTORIES[service]()
    served = {(m, p) for m, p in app_routes(app) if p not in PUBLIC_PATHS | CAPABILITY_PATHS}
    table = {(m, p) for s, m, p in ROUTES if s == service}
    assert served - table == set(), f"routes without expectations: {sorted(served - table)}"
    assert table - served == set(), f"expectations for routes that are gone: {table - served}"
    # HEAD aside, as in app_routes (records' resumable uploads document theirs: each answers as
    # its GET twin, checked in tests/security/test_resumable_uploads.py).
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method != "head"
    }
    assert documented - set(app_routes(app)) == set(), "the OpenAPI documents unserved routes"


# ------------------------------------------------------------------------------ checks


def _request_text(target: Target, kwargs: dict[str, Any]) -> str:
    parts = [target.path, json.dumps(kwargs.get("json")), json.dumps(kwargs.get("data"))]
    for name, content, _ in (kwargs.get("files") or {}).values():
        parts += [name, content.decode("latin-1")]
    return "\n".join(parts).lower()


def leaked(response: httpx.Response, forbidden: list[str]) -> list[str]:
    text = (response.text + "\n" + "\n".join(response.headers.values())).lower()
    return [s for s in forbidden if s.lower() in text]


def denial_problems(response: httpx.Response, expect: Expect) -> list[str]:
    """What is wrong with a denied (or own-resource) answer, if anything."""
    problems = []
    if response.status_code not in expect.statuses:
        problems.append(f"status {response.status_code}, expected {sorted(expect.statuses)}")
    if response.status_code >= 400:
        if response.headers.get("content-type", "").split(";")[0] != PROBLEM:
            problems.append(f"content-type {response.headers.get('content-type')!r}, not {PROBLEM}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            problems.append("the body is not a JSON object")
        else:
            if body.get("status") != response.status_code:
                problems.append(f"problem status {body.get('status')!r}")
            if not isinstance(body.get("type"), str) or not isinstance(body.get("title"), str):
                problems.append("problem without type or title")
        if response.status_code == 401 and "www-authenticate" not in response.headers:
            problems.append("401 without a WWW-Authenticate challenge")
    return problems


@pytest.mark.parametrize(("service", "method", "path"), MATRIX, ids=[" ".join(r) for r in MATRIX])
async def test_every_identity_gets_exactly_what_it_may(
    world: World, service: str, method: str, path: str
) -> None:
    route = ROUTES.get((service, method, path))
    assert route is not None, f"{method} {path} ({service}) has no entry in ROUTES: add one"
    target = await route.prepare(world)
    forbidden = [*target.secrets, *target.case.secrets(), *world.main.secrets()]
    client = world.clients[service]
    rightful = RIGHTFUL[route.auth]
    failures: list[str] = []
    for identity in IDENTITIES:
        if identity == rightful:
            continue
        expect = expected(route.auth, identity, route.overrides)
        kwargs = target.body()
        headers = {**target.headers, **identity_headers(world, identity, target.case)}
        response = await client.request(method, target.path, headers=headers, **kwargs)
        in_request = _request_text(target, kwargs)
        not_sent = [f for f in forbidden if f.lower() not in in_request]
        problems = denial_problems(response, expect)
        problems += [f"reveals {s!r}" for s in leaked(response, not_sent)]
        if problems:
            failures.append(
                f"{identity} ({IDENTITIES[identity]}; expected: {expect.why}): "
                f"{'; '.join(problems)}\n    {response.status_code} {response.text[:300]}"
            )
    if target.untouched is not None and not failures:
        await target.untouched()
    # The positive control: the rightful identity gets the route's 2xx, with the real data.
    kwargs = target.body()
    response = await client.request(
        method,
        target.path,
        headers={**target.headers, **identity_headers(world, rightful, target.case)},
        **kwargs,
    )
    if response.status_code != route.ok:
        failures.append(f"{rightful} (the rightful caller): {response.status_code} {response.text}")
    else:
        missing = [s for s in target.shown_to_owner if s.lower() not in response.text.lower()]
        if missing:
            failures.append(f"{rightful}: the 2xx lacks {missing}: {response.text[:300]}")
    assert not failures, f"{method} {path} ({service}):\n" + "\n".join(failures)


# -------------------------------------------------------------------------- public routes


@pytest.mark.parametrize("service", sorted(APP_FACTORIES))
async def test_public_routes_answer_anyone_and_reveal_no_case(world: World, service: str) -> None:
    """/health, /metrics, the docs, the OpenAPI document and the JWKS need no credentials and
    carry nothing of any case (metrics label routes by template, never by path)."""
    client = world.clients[service]
    served = {path for _, path in app_routes(world.apps[service]) if path in PUBLIC_PATHS}
    assert "/health" in served and "/openapi.json" in served
    forbidden = [s for case in world.cases for s in case.secrets()]
    for path in sorted(served - {"/docs/oauth2-redirect"}):
        response = await client.get(PUBLIC_EXAMPLES.get(path, path))
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        assert leaked(response, forbidden) == [], (path, leaked(response, forbidden))
    if service == "intake":
        jwks = (await client.get("/v1/.well-known/jwks.json")).json()
        assert jwks["keys"], jwks
        for key in jwks["keys"]:
            assert set(key) <= {"kty", "crv", "x", "kid", "alg", "use"}, key  # no "d"
            assert key["alg"] == "EdDSA"


# ------------------------------------------------------------- access that should have ended


async def _center_reads_documents(world: World, case: CaseHandle) -> list[int]:
    berlin = {"X-Api-Key": world.keys.center}
    listed = await world.records.get(f"/v1/referrals/{case.referral_id}/documents", headers=berlin)
    link = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents/{case.documents[0].id}", headers=berlin
    )
    return [listed.status_code, link.status_code]


async def _records_saw_the_reroute(world: World, case: CaseHandle) -> None:
    """The decline re-routes the case to Munich: `referral.declined` and the new
    `referral.requested` leave in one transaction, in that order, on the case's partition. Once
    records knows Munich's referral it has consumed the decline too: the check is not early."""
    records = world.runtimes["records"]
    munich = world.centers["munich"]

    async def rerouted() -> bool:
        async with records.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(CenterReferral).where(
                    CenterReferral.case_id == uuid.UUID(case.case_id),
                    CenterReferral.center_code == munich,
                )
            )
            return rows.first() is not None

    await wait_for(rerouted, "records learns of the re-route to the next center")


async def test_a_center_that_declined_no_longer_reads_the_documents(world: World) -> None:
    case = world.take_routed()
    assert await _center_reads_documents(world, case) == [200, 200]  # while offered: yes
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/decline",
        json={"reason": "outside_expertise"},
        headers={"X-Api-Key": world.keys.center},
    )
    assert r.status_code == 200, r.text
    await _records_saw_the_reroute(world, case)
    assert await _center_reads_documents(world, case) == [404, 404]


async def test_a_center_no_longer_reads_the_documents_of_a_withdrawn_case(world: World) -> None:
    case = world.take_routed()
    assert await _center_reads_documents(world, case) == [200, 200]
    r = await world.intake.post(f"/v1/cases/{case.case_id}/withdraw", headers=case.bearer)
    assert r.status_code == 200, r.text
    records = world.runtimes["records"]

    async def records_knows() -> bool:
        async with records.db.unit_of_work() as uow:
            state = await uow.session.get(CaseState, uuid.UUID(case.case_id))
            return state is not None and state.status == "withdrawn"

    await wait_for(records_knows, "records learns that the case was withdrawn")
    assert await _center_reads_documents(world, case) == [404, 404]
