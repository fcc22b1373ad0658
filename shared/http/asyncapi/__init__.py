"""The AsyncAPI document next to `/docs`: `GET /asyncapi` is a page rendered here on the server
(no JavaScript, no build step), `GET /asyncapi.json` the document itself.

Both serve the committed `schemas/asyncapi.json` bundled: every schema it refers to by file
(`./json/Envelope.json`) is copied into `components.schemas` and the `$ref` rewritten to point
there, so a client that downloads the one document can resolve everything in it. Every string
taken from the document is HTML-escaped, and the page's Content-Security-Policy allows no script
at all: markup in a description is shown, never run.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from schemas.generate import SCHEMAS_DIR, render
from shared.http.asyncapi.document import bundle
from shared.http.asyncapi.page import render_html

__all__ = ["DOCUMENT", "PAGE_HEADERS", "asyncapi_router", "bundle", "render_html"]

DOCUMENT = SCHEMAS_DIR / "asyncapi.json"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def asyncapi_router(path: Path = DOCUMENT) -> APIRouter:
    """`GET /asyncapi` (HTML) and `GET /asyncapi.json`, left out of the OpenAPI document like
    `/docs`. The document is read and rendered on the first request and kept: a broken document
    fails that request, never the service's start."""
    router = APIRouter(include_in_schema=False)

    @functools.cache
    def rendered() -> tuple[str, str]:
        document = bundle(path)
        return render(document), render_html(document)

    @router.get("/asyncapi.json")
    def document_json() -> Response:
        return Response(rendered()[0], media_type="application/json")

    @router.get("/asyncapi")
    def page() -> HTMLResponse:
        return HTMLResponse(rendered()[1], headers=PAGE_HEADERS)

    return router
