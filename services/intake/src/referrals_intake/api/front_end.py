"""The partner front end's routes, with its API key (`X-Api-Key`): open a draft case (and get
its access token), list the cases it opened, get a fresh token for one. What the front end then
does to a case it does as the case's holder, with that token (`case_holder`); its webhook
subscription is `webhooks`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import AwareDatetime

from referrals_common.api.idempotency import request_fingerprint as request_hash
from referrals_common.api.pagination import DEFAULT_LIMIT, LINK_HEADER, Cursor, CursorSigner, Limit
from referrals_common.api.problems import NotFound, problem_responses
from referrals_common.contracts.intake import CaseStatus
from referrals_common.i18n import case_texts, country_name
from referrals_intake.api.case_view import key_claim, load, replayed_case, to_public
from referrals_intake.api.deps import (
    ClientDep,
    IdempotencyKey,
    RuntimeDep,
    UowDep,
    single_statements,
)
from referrals_intake.models import Case
from referrals_intake.repository import Audited, CaseRepository
from referrals_intake.schemas import (
    AccessToken,
    CaseCreate,
    CaseCreated,
    CasePage,
    CasePublic,
    CaseSummary,
    case_reference,
)
from referrals_intake.service import DRAFT_NEXT_STEP, OpenedCase

router = APIRouter(prefix="/v1")


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseCreated,
    responses={
        200: {
            "model": CaseCreated,
            "description": "Replayed: this Idempotency-Key already opened this case (header "
            "`Idempotent-Replayed: true`)",
        },
        **problem_responses(401, 422),
    },
    summary="Open a draft case",
)
async def create_case(
    body: CaseCreate,
    client: ClientDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Open a draft case for a patient and return it with its case access token."""
    new_id = uuid4()
    # Once: the request's fingerprint and the answer's fields (validated back from JSON's forms).
    data = body.model_dump(mode="json")
    claim = (
        None
        if idempotency_key is None
        else key_claim(
            client.key_id, "create_case", idempotency_key, request_hash("create", data), new_id
        )
    )
    # The key is claimed in the statement that opens the case, with its audit row: a key used
    # before opens nothing, and its first request's case is read back instead. That statement
    # is the whole write, atomic on its own: it commits by itself (no BEGIN, no COMMIT).
    async with single_statements(runtime.db) as connection:
        opened = await runtime.intake.open_case(
            connection, client.key_id, body, case_id=new_id, audited_as=client.actor, claim=claim
        )
    case: Case | OpenedCase
    headers: dict[str, str] = {}
    if opened is None:
        assert claim is not None  # without a key a case is always opened
        async with runtime.db.unit_of_work() as uow:
            repo = CaseRepository(uow.session)
            case = await load(repo, await replayed_case(uow, claim))
            public = await to_public(
                runtime, repo, case, audited=Audited(client.actor, "create_case")
            )
            await uow.commit()
        status_code = status.HTTP_200_OK
        headers["Idempotent-Replayed"] = "true"
    else:
        case = opened
        status_code = status.HTTP_201_CREATED
        # A new case has no consents or documents yet: nothing to read back.
        public = CasePublic.model_validate(
            {
                **data,
                "destination": {
                    **data["destination"],
                    "country_names": [
                        country_name(c, body.locale) for c in body.destination.countries
                    ],
                },
                "id": case.id,
                "reference": case_reference(case.id),
                "status": case.status,
                "created_at": case.created_at,
                "updated_at": case.updated_at,
                "submitted_at": None,
                "consents": [],
                "documents": [],
                "next_step": case_texts.next_step(DRAFT_NEXT_STEP, body.locale),
            }
        )
    issued = runtime.tokens.issue(case.id, client.key_id, locale=case.locale)
    headers["Location"] = f"/v1/cases/{case.id}"
    created = CaseCreated(case=public, access_token=issued.token, expires_at=issued.expires_at)
    # Serialised once, as the response model would be (FastAPI validates a returned model
    # again before serialising it; a response is sent as it is).
    return Response(
        created.model_dump_json(by_alias=True),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


@router.get(
    "/cases",
    response_model=CasePage,
    responses={200: {"headers": LINK_HEADER}, **problem_responses(401, 422)},
    summary="The cases this front end opened, a page at a time",
)
async def list_cases(
    client: ClientDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
    status_: Annotated[
        list[CaseStatus] | None,
        Query(alias="status", description="Only cases in one of these statuses (repeatable)"),
    ] = None,
    created_since: Annotated[
        AwareDatetime | None, Query(description="Only cases opened at or after this time")
    ] = None,
    updated_since: Annotated[
        AwareDatetime | None, Query(description="Only cases changed at or after this time")
    ] = None,
    reference: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$",
            description="Only the case(s) with this short reference (`3F0F-6C7D`)",
        ),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> CasePage:
    """Newest first, only this front end's own cases, without personal data (each case is read
    with its access token). Page with `next_cursor` (or follow `next`, also in the `Link`
    header): a cursor works only for the same filters and the same front end; a case opened
    while paging shows on a new first page, never twice. Audited."""
    statuses = sorted(status_ or [])
    id_prefix = reference.replace("-", "").lower() if reference else None
    filters = {
        "status": statuses,
        "created_since": created_since,
        "updated_since": updated_since,
        "reference": id_prefix,
    }
    scope = {"list": "intake.cases", "client": client.key_id, **filters}
    signer = CursorSigner(runtime.pepper)
    rows = await CaseRepository(uow.session).client_cases(
        client.key_id,
        statuses=statuses,
        created_since=created_since,
        updated_since=updated_since,
        id_prefix=id_prefix,
        after_position=signer.position(cursor, scope),
        limit=limit + 1,
    )
    page = signer.page(
        rows,
        limit,
        scope,
        request,
        key=lambda c: (c.created_at, c.id),
        convert=lambda c: CaseSummary(
            id=c.id,
            reference=case_reference(c.id),
            status=c.status,
            locale=c.locale,
            created_at=c.created_at,
            updated_at=c.updated_at,
            submitted_at=c.submitted_at,
        ),
    )
    CaseRepository(uow.session).audit(client.actor, "list_cases", None)
    await uow.commit()
    page.link(response)
    return CasePage(items=page.items, next_cursor=page.next_cursor, next=page.next)


@router.post(
    "/cases/{case_id}/access-token",
    response_model=AccessToken,
    responses=problem_responses(401, 404),
    summary="A fresh case access token",
)
async def refresh_token(
    case_id: UUID, client: ClientDep, runtime: RuntimeDep, uow: UowDep
) -> AccessToken:
    """For the front end that opened the case: a new short-lived token for it."""
    repo = CaseRepository(uow.session)
    case = await repo.get(case_id)
    if case is None or case.client_id != client.key_id:
        repo.audit(client.actor, "refresh_token", case_id, outcome="denied")
        await uow.commit()
        raise NotFound(f"There is no case {case_id}.")
    repo.audit(client.actor, "refresh_token", case_id)
    await uow.commit()
    issued = runtime.tokens.issue(case_id, client.key_id, locale=case.locale)
    return AccessToken(access_token=issued.token, expires_at=issued.expires_at)
