"""Intake's HTTP API, one module per audience, each with its own `router`:

* `front_end`: a partner front end with its API key (open a case, list its cases, a fresh case
  token); `webhooks`: the same front end's webhook subscription and delivery log.
* `case_holder`: the holder of a case's access token (read, edit, consent, submit, withdraw,
  answer a center, choose a center, follow-up questions, further opinions, meetings, timeline,
  FHIR export); `case_events`: the same holder's live timeline (Server-Sent Events).
* `keys`: the other services (the public keys that verify case tokens).
* `terminology`, `consent_texts`: anyone (the code systems and consent texts a FHIR export
  names; no case data).

`deps` binds the edge's dependencies (`referrals_common.edge.deps`) to intake's runtime, key
table and principal; `case_view` is the case as a front end and a case's holder read it back.
"""

from __future__ import annotations

from fastapi import APIRouter

from referrals_common.service_app import ApiTag

TAGS = (
    ApiTag(
        "front-end",
        "A partner front end opens a patient's case with its API key, then fills it in, "
        "submits it and follows it with the case's access token.",
        ("/v1/cases",),
    ),
    ApiTag(
        "keys",
        "The public keys that verify case access tokens, for the other services.",
        ("/v1/.well-known/",),
    ),
    ApiTag(
        "terminology",
        "The platform's own FHIR CodeSystems, at the canonical URLs its FHIR exports name.",
        ("/fhir/CodeSystem",),
    ),
    ApiTag(
        "webhooks",
        "A partner front end subscribes its endpoint for signed updates of its cases, with its "
        "API key, tests it and reads the delivery log.",
        ("/v1/front-end/",),
    ),
    ApiTag(
        "consent",
        "The consent texts a patient agrees to, published by version: the words a FHIR "
        "export's Consent.policy names.",
        ("/v1/consent-texts",),
    ),
)
"""Whom each route is for, by path (every documented route matches one)."""


def api_router() -> APIRouter:
    """One router of every audience's routes, their route objects as they are (the app
    documents and tags the router's own routes; `include_router` would tag copies the app never
    sees). Imported here, when an app is made: importing `api.deps` builds no routes."""
    from referrals_intake.api import (
        case_events,
        case_holder,
        consent_texts,
        front_end,
        keys,
        terminology,
        webhooks,
    )

    api = APIRouter()
    api.routes.extend(
        [
            *front_end.router.routes,
            *case_holder.router.routes,
            *keys.router.routes,
            *case_events.router.routes,
            *webhooks.router.routes,
            *terminology.router.routes,
            *consent_texts.router.routes,
        ]
    )
    return api
