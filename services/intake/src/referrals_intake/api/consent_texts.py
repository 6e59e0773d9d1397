"""The published consent texts, where a FHIR export's `Consent.policy` says they are.

`GET /v1/consent-texts` lists them; `GET /v1/consent-texts/{kind}/{version}` answers one, as
JSON (both languages) for a front end, or as a plain page for a person (a browser asking for
`text/html`, in Ukrainian or, with `?lang=en`, English). Public and read-only, like the JWKS and
the code systems: the texts hold no case data. A published version never changes, so answers
carry an `ETag` and may be cached for a day.
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from referrals_common.api.problems import NotFound, problem_responses
from referrals_intake.consent_texts import KINDS, ConsentText, published, text_of

router = APIRouter(prefix="/v1/consent-texts")
CACHE = "public, max-age=86400"
_OTHER = {"uk": ("en", "English"), "en": ("uk", "Українською")}
_VERSION = {
    "uk": "Версія {version}, чинна з {since}.",
    "en": "Version {version}, in force from {since}.",
}


def _etag(body: bytes, variant: str) -> str:
    return '"' + hashlib.sha256(body + variant.encode()).hexdigest()[:32] + '"'


def _cached(request: Request, response: Response, etag: str) -> Response:
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE
    response.headers["Vary"] = "Accept"
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=dict(response.headers))
    return response


def _page(text: ConsentText, lang: Literal["uk", "en"]) -> str:
    words = text.texts[lang]
    other, other_name = _OTHER[lang]
    paragraphs = "\n".join(f"<p>{escape(p)}</p>" for p in words.paragraphs)
    version = _VERSION[lang].format(version=text.version, since=text.in_force_from.isoformat())
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(words.title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.5;color:#0b0c0c}</style></head>\n<body><main>\n"
        f"<h1>{escape(words.title)}</h1>\n<p><small>{escape(version)}</small></p>\n"
        f"{paragraphs}\n<p><strong>{escape(words.agreement)}</strong></p>\n"
        f'<p><a href="?lang={other}" hreflang="{other}" lang="{other}">{other_name}</a></p>\n'
        "</main></body>\n</html>\n"
    )


@router.get(
    "",
    response_model=list[ConsentText],
    summary="Every published consent text",
)
async def list_consent_texts() -> JSONResponse:
    """Every published version of every consent, oldest first within a kind."""
    texts = sorted(published().values(), key=lambda t: (KINDS.index(t.kind), t.version))
    return JSONResponse([t.model_dump(mode="json") for t in texts])


@router.get(
    "/{kind}/{version}",
    response_model=ConsentText,
    responses={
        200: {"content": {"text/html": {}}, "description": "The text (JSON, or a page)"},
        304: {"description": "Not modified: the `ETag` given in `If-None-Match` still holds"},
        **problem_responses(404),
    },
    summary="One published consent text",
)
async def read_consent_text(
    request: Request,
    kind: Annotated[
        str, Path(pattern=r"^[a-z_]{1,40}$", description="`processing`, `cross_border`, ...")
    ],
    version: Annotated[str, Path(pattern=r"^[0-9]{4}-[0-9]{2}$", description="`2026-01`")],
    lang: Annotated[
        Literal["uk", "en"], Query(description="The language of the page (`text/html` only)")
    ] = "uk",
) -> Response:
    """The words of one version of one consent: as JSON, both languages; for a browser
    (`Accept: text/html`), a page in `lang`."""
    text = text_of(kind, version)
    if text is None:
        raise NotFound(f"There is no published {kind} consent text of version {version}.")
    body = text.model_dump_json().encode()
    if "text/html" in request.headers.get("accept", ""):
        page = HTMLResponse(_page(text, lang), headers={"Content-Language": lang})
        return _cached(request, page, _etag(body, f"html:{lang}"))
    return _cached(request, Response(body, media_type="application/json"), _etag(body, "json"))
