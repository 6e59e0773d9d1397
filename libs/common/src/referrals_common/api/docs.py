"""Every API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), served with their
scripts and styles from the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN (and ReDoc's fonts from Google
Fonts), so on a clinic's network without internet they stay blank. Ours load them from the
service, under `/docs/` (`/docs/swagger-ui-bundle.js`, `/docs/swagger-ui.css`,
`/docs/redoc.standalone.js`, `/docs/favicon.png`): the distribution files that the pinned
`fastapi-offline` package ships (Swagger UI 5.32.6 and ReDoc 2.5.3 in 1.7.7), so they are in
every service's wheel and image with nothing else to fetch. A page then needs only the service:
its HTML, its script (and Swagger UI's style sheet), the favicon and the OpenAPI document.

The assets are public like the pages and the document: a static mount at `/docs`, beside the
`/docs` page itself (which the authorization matrix counts among the public paths). The edge
charges them to the caller's address like any anonymous request (`rate_limit.per_ip`): a page
costs at most five requests. No Content-Security-Policy is set on these answers (the edge sets
none), so none has to allow the assets.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS = "/docs"
REDOC = "/redoc"
ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""The Swagger UI and ReDoc distribution files, as the installed package ships them."""
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"


def serve_docs(app: FastAPI) -> None:
    """Serve `/docs` (Swagger UI, and its OAuth2 redirect page), `/redoc` (ReDoc) and their
    assets under `/docs/`, each page naming its assets by the request's own root path, never
    another host. `app` must be built with `docs_url=None` and `redoc_url=None`: FastAPI's own
    pages would load the assets from a CDN."""
    if app.docs_url or app.redoc_url or not app.openapi_url:
        raise ValueError("serve_docs needs an OpenAPI document and FastAPI's own pages off")
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_js_url=f"{root}{DOCS}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{DOCS}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{DOCS}/{FAVICON}",
            # Swagger UI would otherwise ask a public validator about the document.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{DOCS}/{FAVICON}",
            with_google_fonts=False,
        )

    # The pages first: the mount at /docs answers only what no route before it matched.
    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)
    app.mount(DOCS, StaticFiles(directory=ASSETS), name="docs-assets")
