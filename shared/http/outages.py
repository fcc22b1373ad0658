"""An outage of a dependency (the database restarting, a pool exhausted) answered as what it is:
503 with `Retry-After`, never a 500. The request's transaction rolled back with the error, so a
retry is safe; with an `Idempotency-Key` it is safe even when the first answer was lost."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from shared.observability.logging import get_logger
from shared.retry import OUTAGES

RETRY_AFTER_SECONDS = 5
log = get_logger(__name__)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("request failed on an outage", path=request.url.path, error=repr(exc))
    return JSONResponse(
        {"detail": "a dependency is unavailable (database or broker restarting); retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_outage_handler(app: FastAPI) -> None:
    for outage in OUTAGES:
        app.add_exception_handler(outage, _unavailable)
