"""Records' HTTP API, `/v1`, one module per audience, each with its own `router`:

* `patient`: the holder of a case's access token (the patient's front end): the case's
  documents, one-shot and resumable uploads, download links.
* `centers`: a cancer center with its API key: the documents of a referral offered to it, its
  opinion and its answers to follow-up questions.
* `downloads`: the holder of a download link (the link is the credential).

`deps` binds the edge's dependencies; `documents`, `uploading` and `problems` hold what the
audiences share. Every error is an RFC 9457 problem.
"""

from __future__ import annotations

from fastapi import APIRouter

from referrals_common.service_app import ApiTag
from referrals_records.api import centers, downloads, patient

TAGS = (
    ApiTag(
        "front-end",
        "A patient's front end uploads, lists and removes the case's documents with the case "
        "access token, and asks for download links.",
        ("/v1/cases/",),
    ),
    ApiTag(
        "centers",
        "A cancer center reads the documents of a referral offered to it and uploads its "
        "opinion, with its API key.",
        ("/v1/referrals/",),
    ),
    ApiTag(
        "downloads",
        "A short-lived link opens one document: the link is the credential.",
        ("/v1/downloads/",),
    ),
)


def router() -> APIRouter:
    """One router of every audience's routes, made per app (their route objects, as they are:
    the app documents and tags the router's own routes). The OpenAPI document lists the
    one-shot routes before the resumable uploads' (`…/uploads…`), as it always has."""
    routes = [*patient.router.routes, *centers.router.routes, *downloads.router.routes]
    one = APIRouter()
    one.routes.extend(sorted(routes, key=lambda route: "/uploads" in getattr(route, "path", "")))
    return one


__all__ = ["TAGS", "router"]
