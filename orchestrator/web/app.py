"""The site: a FastAPI app with Jinja2 pages and their `/api/...` JSON twins, all read-only.

`create_app(url, auth=...)` builds it for one database; `orchestrator web` (orchestrator/web/serve.py) checks
the database and the auth rule first, then serves it with uvicorn.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.session import session_scope
from db.settings import mask_url
from jobs.errors import NotFound, ServiceUnavailable
from orchestrator.web import cells, data, plots

HERE = Path(__file__).parent
PLOTLY_JS = "plotly.min.js"
SHOW_PATTERN = "^(" + "|".join(data.QUESTION_FILTERS) + ")$"
# Query parameters, validated by FastAPI before a handler runs (a bad one is a 422 naming it).
Show = Annotated[str, Query(pattern=SHOW_PATTERN, description="all, right, wrong, regressions, fixes or a label")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
SweepRef = Annotated[str | None, Query(max_length=200)]


def plotly_js() -> Path:
    """plotly.js as the `plotly` package ships it (its own copy of the library: no CDN, works offline)."""
    return Path(str(files("plotly") / "package_data" / PLOTLY_JS))


def create_app(url: str, *, auth: tuple[str, str] | None = None, poll_ms: int = 2000) -> FastAPI:
    """The site over the database at `url`; with `auth` (user, password) every request needs basic auth.
    `poll_ms`: how often a live progress bar asks for its sweep's progress."""
    app = FastAPI(title="ReasonFleet", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.url = url
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(sort_key=cells.sort_key, percent=lambda v: f"{100 * v:.1f}", poll_ms=poll_ms)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _add_error_pages(app)
    _add_pages(app)
    _add_api(app)
    if auth is not None:
        app.middleware("http")(_basic_auth(*auth))
    return app


def _session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.url) as session:
        yield session


Db = Annotated[Session, Depends(_session)]


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)


# --------------------------------------------------------------------------- pages


def _add_pages(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def sweeps_page(request: Request, session: Db) -> Response:
        return _page(request, "sweeps.html", sweeps=data.sweeps(session), api="/api/sweeps")

    @app.get("/sweeps/{ref}", include_in_schema=False)
    def sweep_page(request: Request, ref: str, session: Db) -> Response:
        sweep = data.sweep_page(session, ref)
        rows = sweep["leaderboard"]
        return _page(
            request, "sweep.html", sweep=sweep, rows=rows, figures=_sweep_figures(session, sweep["id"], rows),
            columns=cells.shown_columns(rows, sweep["reference"]), api=f"/api/sweeps/{sweep['id']}",
        )

    @app.get("/runs/{ref}", include_in_schema=False)
    def run_page(
        request: Request, ref: str, session: Db, sweep: SweepRef = None, show: Show = "all", limit: Limit = 50,
        offset: Offset = 0,
    ) -> Response:
        run = data.run_page(session, ref, sweep)
        listed = data.questions(session, ref, show=show, limit=limit, offset=offset, sweep_ref=sweep)
        return _page(
            request, "run.html", page=run, row=run["run"], figures=plots.run_figures(run["run"]), listed=listed,
            filters=data.QUESTION_FILTERS, api=f"/api/runs/{run['run']['job_id']}",
        )

    @app.get("/fleet", include_in_schema=False)
    def fleet_page(request: Request, session: Db) -> Response:
        return _page(request, "fleet.html", fleet=data.fleet_page(session), api="/api/fleet")

    @app.get(f"/vendor/{PLOTLY_JS}", include_in_schema=False)
    def plotly() -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/sweeps", include_in_schema=False)
    def sweeps_redirect() -> Response:
        return RedirectResponse("/")


def _sweep_figures(session: Session, sweep_id: str, rows: list[dict[str, Any]]) -> dict[str, plots.Figure]:
    curves = data.loss_curves(session, sweep_id)
    return plots.sweep_figures(rows, curves, data.pass_by_complexity(session, rows))


# --------------------------------------------------------------------------- the JSON twins


def _add_api(app: FastAPI) -> None:
    @app.get("/api/sweeps")
    def api_sweeps(session: Db) -> list[dict[str, Any]]:
        return data.sweeps(session)

    @app.get("/api/sweeps/{ref}")
    def api_sweep(ref: str, session: Db) -> dict[str, Any]:
        return data.sweep_page(session, ref)

    @app.get("/api/sweeps/{ref}/leaderboard")
    def api_leaderboard(ref: str, session: Db) -> list[dict[str, Any]]:
        return data.leaderboard(session, data.find_sweep(session, ref).id)

    @app.get("/api/sweeps/{ref}/progress")
    def api_progress(ref: str, session: Db) -> dict[str, Any]:
        return data.progress(session, data.find_sweep(session, ref).id)

    @app.get("/api/sweeps/{ref}/plots")
    def api_sweep_plots(ref: str, session: Db) -> dict[str, plots.Figure]:
        sweep_id = data.find_sweep(session, ref).id
        return _sweep_figures(session, sweep_id, data.leaderboard(session, sweep_id))

    @app.get("/api/runs/{ref}")
    def api_run(ref: str, session: Db, sweep: SweepRef = None) -> dict[str, Any]:
        run = data.run_page(session, ref, sweep)
        return {**run, "plots": plots.run_figures(run["run"])}

    @app.get("/api/runs/{ref}/questions")
    def api_questions(
        ref: str, session: Db, sweep: SweepRef = None, show: Show = "all", limit: Limit = 50, offset: Offset = 0
    ) -> dict[str, Any]:
        return data.questions(session, ref, show=show, limit=limit, offset=offset, sweep_ref=sweep)

    @app.get("/api/fleet")
    def api_fleet(session: Db) -> dict[str, Any]:
        return data.fleet_page(session)


# --------------------------------------------------------------------------- errors and auth


def _error(request: Request, status_code: int, title: str, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status_code)
    return _page(request, "error.html", status_code=status_code, title=title, message=message)


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    def not_found(request: Request, error: NotFound) -> Response:
        return _error(request, 404, "Not found", str(error))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return _error(request, 404, "Not found", f"no page {request.url.path}")
        return _error(request, error.status_code, "Error", str(error.detail))

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}, got {e.get('input')!r}"
            for e in error.errors()
        )
        return _error(request, 422, "Invalid request", problems)

    @app.exception_handler(ServiceUnavailable)
    def unavailable(request: Request, error: ServiceUnavailable) -> Response:
        return _error(request, 503, "Database unavailable", str(error))

    @app.exception_handler(SQLAlchemyError)
    def database_error(request: Request, error: SQLAlchemyError) -> Response:
        # The driver's message may quote the URL; the page names it masked, with the kind of error only.
        message = f"cannot read the database at {mask_url(request.app.state.url)}: {type(error).__name__}"
        return _error(request, 503, "Database unavailable", message)


Handler = Callable[[Request], Awaitable[Response]]


def _basic_auth(user: str, password: str) -> Callable[[Request, Handler], Awaitable[Response]]:
    """Every request carries `Authorization: Basic …` with these credentials, else 401 (compared in constant
    time; the password is never echoed)."""
    expected = (user.encode(), password.encode())

    async def check(request: Request, call_next: Handler) -> Response:
        given = _credentials(request.headers.get("authorization"))
        if given is not None and _same(given, expected):
            return await call_next(request)
        return _refusal(request.url.path.startswith("/api/"))

    return check


AUTH_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Authentication required · ReasonFleet</title>"
    "<h1>Authentication required</h1><p>This ReasonFleet site is reachable from other machines, so it asks for "
    "the user and password its operator set in REASONFLEET_WEB_AUTH.</p></html>"
)


def _refusal(api: bool) -> Response:
    challenge = {"WWW-Authenticate": 'Basic realm="ReasonFleet", charset="UTF-8"'}
    if api:
        return JSONResponse({"error": "authentication required"}, status_code=401, headers=challenge)
    return Response(AUTH_PAGE, status_code=401, media_type="text/html", headers=challenge)


def _same(given: tuple[bytes, bytes], expected: tuple[bytes, bytes]) -> bool:
    # Both compared every time, so the timing says nothing about which one was wrong.
    same_user = secrets.compare_digest(given[0], expected[0])
    same_password = secrets.compare_digest(given[1], expected[1])
    return same_user and same_password


def _credentials(header: str | None) -> tuple[bytes, bytes] | None:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if colon else None
