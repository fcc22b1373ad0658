"""The operator console over HTTP (`leadline console`): pages rendered here, plain forms for the
one action (re-drive, behind a confirm page), no script. Routes are thin: they read through
`panes` and the CLI's own modules and render through `pages`.

What could not be read is a message on the page, never an error page: the overview answers 200
with every part it could read; a page about one thing answers with that part's status (404 not
found, 503 unreachable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.base import RequestResponseEndpoint

from services.cli import dlq, sagas
from services.cli.console import letter_pages, pages, panes, saga_pages
from services.cli.console.markup import STYLESHEET, Safe
from services.cli.console.panes import Problem, attempt, status_of
from services.cli.console.session import (
    COOKIE,
    Gate,
    Refused,
    Session,
    SignInRequired,
    check_post,
    safe_next,
)
from services.cli.settings import CliSettings
from shared.auth import AuthSettings, TokenVerifier

LIST_LIMIT = 100
MAX_FORM_BYTES = 8192
# no script, no frames, forms only to this console: a page that shows a dead letter's bytes
# must not be able to run or send anything, whatever those bytes are
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: under it a browser sends `Origin: null` with our own forms, which the
    # origin check (session.check_post) must then refuse
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Console:
    settings: CliSettings
    gate: Gate

    def page(
        self, title: str, body: Safe, session: Session | None, status: int = 200
    ) -> HTMLResponse:
        return HTMLResponse(pages.layout(title, body, session, self.settings), status)

    def problem(self, title: str, found: Problem, session: Session) -> HTMLResponse:
        return self.page(title, pages.problem(found), session, found.status)


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def _session(request: Request) -> Session:
    return await _console(request).gate.session(request)


Ctx = Annotated[Console, Depends(_console)]
Signed = Annotated[Session, Depends(_session)]
routes = APIRouter()


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, bounded (python-multipart is not needed for
    forms this small)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused("the form is too large")
    try:
        parsed = parse_qs(body.decode(errors="replace"), keep_blank_values=True, max_num_fields=16)
    except ValueError:
        raise Refused("the form has too many fields") from None
    return {name: values[-1] for name, values in parsed.items()}


def _login(console: Console, message: str, next_path: str, status: int) -> HTMLResponse:
    response = console.page("Sign in", pages.login(message, next_path), None, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@routes.get("/console.css", include_in_schema=False)
async def stylesheet() -> Response:
    return Response(STYLESHEET, media_type="text/css")


@routes.get("/login")
async def login_form(
    console: Ctx, next_path: Annotated[str, Query(alias="next")] = "/"
) -> HTMLResponse:
    return _login(console, "", safe_next(next_path), 200)


@routes.post("/login")
async def login(request: Request, console: Ctx) -> Response:
    form = await _form(request)
    target = safe_next(form.get("next"))
    try:
        session = await console.gate.admit(form.get("token", "").strip())
    except SignInRequired as exc:
        return _login(console, exc.message, target, exc.status)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@routes.post("/logout")
async def logout(request: Request, session: Signed) -> Response:
    check_post(request, session, await _form(request))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@routes.get("/")
async def overview(console: Ctx, session: Signed) -> HTMLResponse:
    found = await panes.overview(console.settings)
    return console.page("Overview", pages.overview(found), session)


@routes.get("/sagas")
async def saga_list(console: Ctx, session: Signed, state: str = "") -> HTMLResponse:
    s = console.settings
    found = await attempt(
        sagas.listed(s.orchestrator_database_url, state or None, LIST_LIMIT), s, "the saga view"
    )
    title = f"Sagas: {state}" if state else "Sagas"
    if isinstance(found, Problem):
        return console.problem(title, found, session)
    counts, listed = found
    return console.page(title, saga_pages.saga_list(counts, listed, state or None), session)


@routes.get("/sagas/{order_id}")
async def saga(console: Ctx, session: Signed, order_id: str) -> HTMLResponse:
    s = console.settings
    found = await attempt(sagas.one(s.orchestrator_database_url, order_id), s, "the saga view")
    title = f"Saga of order {order_id}"
    if isinstance(found, Problem):
        return console.problem(title, found, session)
    return console.page(title, saga_pages.saga(found), session)


@routes.get("/dead-letters")
async def letters(
    console: Ctx,
    session: Signed,
    topic: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
) -> HTMLResponse:
    s = console.settings
    try:
        filters = dlq.Filters(
            reason or None, dlq.when(since) if since else None, dlq.when(until) if until else None
        )
    except ValueError as exc:
        found: list[dlq.Letter] | Problem = Problem(str(exc), 400)
    else:
        found = await attempt(
            dlq.listed(s, topic or None, filters, LIST_LIMIT), s, "the dead-letter topics"
        )
    body = letter_pages.letters(
        letter_pages.letter_filters(topic, reason, since, until), found, s, LIST_LIMIT
    )
    return console.page("Dead letters", body, session, status_of(found))


@routes.get("/dead-letters/{letter_id}")
async def letter(
    console: Ctx, session: Signed, letter_id: str, redriven: bool = False
) -> HTMLResponse:
    s = console.settings
    found = await attempt(dlq.found(s, letter_id), s, "the dead letter")
    title = f"Dead letter {letter_id}"
    if isinstance(found, Problem):
        return console.problem(title, found, session)
    return console.page(title, letter_pages.letter(found, s, redriven), session)


@routes.get("/dead-letters/{letter_id}/redrive")
async def redrive_confirm(console: Ctx, session: Signed, letter_id: str) -> HTMLResponse:
    """Asks first: nothing is re-produced by a GET."""
    s = console.settings
    found = await attempt(dlq.found(s, letter_id), s, "the dead letter")
    title = f"Re-drive {letter_id}"
    if isinstance(found, Problem):
        return console.problem(title, found, session)
    return console.page(title, letter_pages.confirm(found, s, session), session)


@routes.post("/dead-letters/{letter_id}/redrive")
async def redrive(request: Request, console: Ctx, session: Signed, letter_id: str) -> Response:
    check_post(request, session, await _form(request))
    s = console.settings
    title = f"Re-drive {letter_id}"
    found = await attempt(dlq.found(s, letter_id), s, "the dead letter")
    if isinstance(found, Problem):
        return console.problem(title, found, session)
    done = await attempt(dlq.redrive(s, [found]), s, "the re-drive")
    if isinstance(done, Problem):
        return console.problem(title, done, session)
    # after a POST, a redirect: reloading the page it lands on cannot re-drive again
    return RedirectResponse(pages.letter_href(letter_id, tail="?redriven=1"), 303)


def create_app(settings: CliSettings, auth: AuthSettings) -> FastAPI:
    app = FastAPI(title="Leadline console", docs_url=None, redoc_url=None, openapi_url=None)
    console = Console(settings, Gate(TokenVerifier(auth)))
    app.state.console = console
    app.include_router(routes)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        # the page asked for is where signing in leads back to
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = path if request.method == "GET" else "/"
        return _login(console, exc.message, safe_next(target), exc.status)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return console.page("Refused", pages.refused(str(exc)), None, 403)

    @app.middleware("http")
    async def headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    return app
