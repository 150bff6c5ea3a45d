"""The QA app's JSON API under ``/api/v1`` (FastAPI; OpenAPI at ``/api/v1/openapi.json``).

Every route checks the session (cookie ``envmon_session``, ``HttpOnly``, ``SameSite=Strict``)
and the user's role; every state-changing one also the origin and the ``X-CSRF-Token``
header (``excursions.web.security``); object-level checks and the lifecycle rules are those of
``excursions.lifecycle``. Errors are JSON ``{"detail": message}``: 401 not signed in, 403
role not allowed, 404 no such record, 409 the record changed since it was loaded or is
closed, 422 bad input (with the reason), 503 the time-series store did not answer (trend). The
server-rendered pages (``excursions.web.pages``) use the same services.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime,
# and the dependencies they name are closures of ``create_api``.
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Cookie, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from envmon.config.schema import SiteConfig
from envmon.display import Display
from envmon.timeseries import SeriesReader
from envmon.timeutil import utcnow
from excursions.lifecycle import (
    MAX_COMMENT,
    MEANINGS,
    ClosedRecordError,
    Lifecycle,
    LifecycleError,
    NotAllowedError,
    SigningBlockedError,
    StaleRecordError,
)
from excursions.policy import Permission, may
from excursions.queries import (
    MAX_PAGE,
    MAX_PAGE_SIZE,
    Filters,
    core_record,
    list_records,
    record_detail,
)
from excursions.series import fetch_trend, trend_context
from excursions.sessions import Sessions
from excursions.throttle import client_key
from excursions.trend.model import WINDOWS, trend_json, trend_window
from excursions.users import AuthenticationError, ThrottledError, User, UserError
from excursions.web.security import (
    CSRF_HEADER,
    MAX_BODY,
    MAX_BODY_TEXT,
    UNSAFE_METHODS,
    CrossOriginError,
    StrictJSONRoute,
    csrf_ok,
    csrf_token,
    same_origin,
    validation_error_json,
)

COOKIE: Final = "envmon_session"
PREFIX: Final = "/api/v1"
#: The most values a trend response draws (each interval's minimum and maximum kept).
TREND_POINTS: Final = 2000


@dataclass(frozen=True, slots=True)
class Services:
    """What the API works on (built once per process)."""

    engine: Engine
    sessions: Sessions
    lifecycle: Lifecycle
    secure_cookie: bool = True
    site_timezone: str = "UTC"  #: signatures are shown in UTC and in this zone
    series: SeriesReader | None = None  #: the time-series port (trend charts)
    clock: Callable[[], datetime] = utcnow
    #: (sensor id, start, end) → the link to the channel's Grafana panel over that span, or
    #: None; built by the command layer from the site's ``dashboards.grafana_url`` (None: no
    #: Grafana links).
    grafana_link: Callable[[str, datetime, datetime], str | None] | None = None
    #: How values, times and durations are written (``SiteConfig.display()``); None: the
    #: site's zone with each parameter's default digits.
    display: Display | None = None
    #: The site's configuration: the pages name areas and instruments, offer the filters'
    #: values and say which rule was in force for a sensor (None: the store's own values).
    site: SiteConfig | None = None

    @property
    def shown(self) -> Display:
        """Return how the pages write values and times (``display`` or the zone's default)."""
        return self.display or Display(ZoneInfo(self.site_timezone))

    def user_of(self, token: str | None) -> User | None:
        """Return the signed-in user of a session token (None: none, ended or unknown)."""
        if not token:
            return None
        try:
            return self.sessions.user(token)
        except AuthenticationError:
            return None


def check_csrf(request: Request, session_token: str) -> None:
    """Refuse (403) an API request whose ``X-CSRF-Token`` header is not the session's."""
    if not csrf_ok(session_token, request.headers.get(CSRF_HEADER)):
        raise HTTPException(
            403,
            f"missing or wrong {CSRF_HEADER} header: send the csrf_token that signing in"
            " (or GET /api/v1/me) returned",
        )


def user_dependency(services: Services, *, touch: bool = True) -> Callable[..., User]:
    """Return the API's dependency on a signed-in user (401; 403 without the CSRF header).

    ``touch=False``: the request does not count as a use of the session (a page polling by
    itself), so the session still ends after ``IDLE`` without the person doing anything.
    """

    def signed_in(request: Request, envmon_session: Annotated[str | None, Cookie()] = None) -> User:
        if not envmon_session:
            raise HTTPException(401, "not signed in")
        try:
            user = services.sessions.user(envmon_session, touch=touch)
        except AuthenticationError as exc:
            raise HTTPException(401, str(exc)) from None
        if request.method in UNSAFE_METHODS:
            check_csrf(request, envmon_session)
        return user

    return signed_in


def role_dependency(signed_in: Callable[..., User], permission: Permission) -> Any:  # noqa: ANN401
    """Return ``Depends`` on a signed-in user whose role has ``permission`` (else 403)."""

    def check(user: Annotated[User, Depends(signed_in)]) -> User:
        if not may(user.role, permission):
            raise HTTPException(403, f"{user.username} ({user.role}) may not do this")
        return user

    return Depends(check)


class SignIn(BaseModel):
    """User id and password."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=200)


class Versioned(BaseModel):
    """The ``row_version`` the form was loaded with (stale forms are refused)."""

    version: int


class Comment(Versioned):
    """A comment (an acknowledgement's or a plain one)."""

    comment: str = Field(max_length=MAX_COMMENT * 2)  # the lifecycle gives the clear message


class Reason(Versioned):
    """Why."""

    reason: str = Field(max_length=MAX_COMMENT * 2)


class Assessment(Reason):
    """QA fields to set (``impact_text``, ``root_cause_category``, …)."""

    fields: dict[str, str]


class SignatureForm(Reason):
    """The signer's user id and password again, and the meaning of the signature."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=200)
    meaning: str = Field(description=" or ".join(MEANINGS))


class NewUser(BaseModel):
    """A user to create."""

    username: str = Field(max_length=64)
    full_name: str = Field(max_length=200)
    role: str
    password: str = Field(max_length=200)
    reason: str = Field(max_length=MAX_COMMENT)


class UserChange(BaseModel):
    """What to change about a user (any of role, disabled, password), and why."""

    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=200)
    reason: str = Field(max_length=MAX_COMMENT)


def client_of(request: Request) -> str:
    """Return the address failed sign-ins from this request are counted against.

    Behind a reverse proxy on the same host this is the client's address only if uvicorn
    trusts the proxy's ``X-Forwarded-For`` (``--forwarded-allow-ips``; 127.0.0.1 by default).
    """
    return client_key(request.client.host if request.client else None)


def retry_after(exc: ThrottledError, services: Services) -> dict[str, str]:
    """Return the ``Retry-After`` header of a throttled answer (whole seconds, at least 1)."""
    seconds = math.ceil((exc.until - services.clock()).total_seconds())
    return {"Retry-After": str(max(1, seconds))}


def refusal_status(exc: LifecycleError) -> int:
    """Return the HTTP status of a refused action (the API's and the pages')."""
    if isinstance(exc, SigningBlockedError):
        return 429
    if isinstance(exc, StaleRecordError | ClosedRecordError):
        return 409
    if isinstance(exc, NotAllowedError):
        return 403
    return 404 if str(exc).startswith("no record") else 422


def create_api(services: Services) -> FastAPI:
    """Return the FastAPI application of the JSON API."""
    app = FastAPI(
        title="envmon QA records",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        max_body_size=MAX_BODY,
        dependencies=[Depends(same_origin)],  # every route, the pages' too
    )
    router = APIRouter(prefix=PREFIX, route_class=StrictJSONRoute)
    app.add_exception_handler(RequestValidationError, validation_error_json)  # type: ignore[arg-type]

    @app.exception_handler(CrossOriginError)
    async def cross_origin(_request: Request, exc: CrossOriginError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"refused: the request came from another origin ({exc})"},
            status_code=403,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:
            exc = StarletteHTTPException(413, f"the request body is larger than {MAX_BODY_TEXT}")
        return await http_exception_handler(request, exc)

    @app.exception_handler(LifecycleError)
    async def lifecycle_error(_request: Request, exc: LifecycleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=refusal_status(exc))

    signed_in = user_dependency(services)

    def role(permission: Permission) -> Any:  # noqa: ANN401 - FastAPI's Depends() marker is untyped
        return role_dependency(signed_in, permission)

    @router.post("/session")
    def sign_in(request: Request, body: SignIn, response: Response) -> dict[str, str]:
        """Sign in: sets the session cookie; returns the user and the CSRF token.

        429 with ``Retry-After`` while the client's address is blocked (too many failures).
        """
        try:
            token, user = services.sessions.sign_in(
                body.username, body.password, client=client_of(request)
            )
        except ThrottledError as exc:
            raise HTTPException(429, str(exc), headers=retry_after(exc, services)) from None
        except AuthenticationError as exc:
            raise HTTPException(401, str(exc)) from None
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=services.secure_cookie,
            path="/",
        )
        return {
            "username": user.username,
            "full_name": user.full_name,
            "role": user.role,
            "csrf_token": csrf_token(token),
        }

    @router.delete("/session", status_code=204)
    def sign_out(
        request: Request,
        response: Response,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> None:
        """Sign out: ends the session (with the ``X-CSRF-Token`` header)."""
        if envmon_session:
            check_csrf(request, envmon_session)
            services.sessions.sign_out(envmon_session, client=client_of(request))
        response.delete_cookie(COOKIE, path="/")

    @router.get("/me")
    def me(
        user: Annotated[User, Depends(signed_in)],
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> dict[str, str]:
        """Return the signed-in user and the session's CSRF token."""
        return {
            "username": user.username,
            "full_name": user.full_name,
            "role": user.role,
            "csrf_token": csrf_token(envmon_session or ""),
        }

    @router.get("/excursions")
    def excursions(
        _user: Annotated[User, role(Permission.READ_RECORDS)],
        area: str | None = None,
        instrument: str | None = None,
        parameter: str | None = None,
        level: str | None = None,
        state: str | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        sensor: Annotated[str | None, Query(max_length=128)] = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    ) -> dict[str, Any]:
        """Excursions and data gaps, newest first, filtered and paginated."""
        for name, value in (("start_from", start_from), ("start_to", start_to)):
            if value is not None and value.tzinfo is None:
                raise HTTPException(422, f"{name}: give a UTC offset (e.g. 2026-01-05T07:00Z)")
        filters = Filters(area, instrument, parameter, level, state, start_from, start_to, sensor)
        total, items = list_records(services.engine, filters, page=page, page_size=page_size)
        return {
            "total": total,
            "page": page,
            "page_size": page_size,
            "items": [item.as_dict() for item in items],
        }

    @router.get("/excursions/{record_id}")
    def excursion(
        record_id: str, _user: Annotated[User, role(Permission.READ_RECORDS)]
    ) -> dict[str, Any]:
        """One record: metrics, QA fields, signatures, audit trail, ``row_version``."""
        zone = ZoneInfo(services.site_timezone)
        detail = record_detail(services.engine, record_id, zone, services.shown)
        if detail is None:
            raise HTTPException(404, f"no record {record_id!r}")
        return detail.as_dict()

    @router.get("/excursions/{record_id}/trend")
    def trend(
        record_id: str,
        _user: Annotated[User, role(Permission.READ_RECORDS)],
        window: Annotated[str, Query(max_length=16)] = "record",
    ) -> dict[str, Any]:
        """Return the record's chart over ``window`` (``record``, ``6h``, ``24h``, ``3d``).

        ``readings`` are the drawn values (decimated to at most ``TREND_POINTS`` keeping
        each interval's minimum and maximum), ``limits`` those in force, ``chart`` every
        mark and label of the page's chart (``excursions.trend.model.trend_json``).
        """
        if window not in WINDOWS:
            raise HTTPException(422, f"window: one of {', '.join(WINDOWS)}, not {window!r}")
        record = core_record(services.engine, record_id)
        if record is None:
            raise HTTPException(404, f"no record {record_id!r}")
        start, end = trend_window(record, services.clock(), window)
        context = trend_context(services.engine, record, services.site)
        shown = services.shown
        found = fetch_trend(
            services.series,
            record,
            now=services.clock(),
            zone=shown.zone,
            window=window,
            display=shown,
            context=context,
            max_points=TREND_POINTS,
        )
        if found.trend is None:
            raise HTTPException(503, found.error)
        return {
            "sensor_id": record["sensor_id"],
            "unit": record.get("unit") or context.unit,
            "window": window,
            "from": start,
            "to": end,
            "limits": record.get("limits") if context.limits is None else context.limits,
            "readings": [
                {"ts": point.ts, "value": point.value} for run in found.trend.runs for point in run
            ],
            "chart": trend_json(found.trend),
        }

    life = services.lifecycle

    @router.post("/excursions/{record_id}/acknowledge")
    def acknowledge(
        record_id: str, body: Comment, user: Annotated[User, role(Permission.ACKNOWLEDGE)]
    ) -> dict[str, int]:
        """Acknowledge an open record with a comment."""
        return {"version": life.acknowledge(record_id, user, body.comment, version=body.version)}

    @router.post("/excursions/{record_id}/comments")
    def comment(
        record_id: str, body: Comment, user: Annotated[User, role(Permission.COMMENT)]
    ) -> dict[str, int]:
        """Add a comment."""
        return {"version": life.comment(record_id, user, body.comment, version=body.version)}

    @router.post("/excursions/{record_id}/review")
    def review(
        record_id: str, body: Reason, user: Annotated[User, role(Permission.START_REVIEW)]
    ) -> dict[str, int]:
        """Start the review."""
        return {"version": life.start_review(record_id, user, body.reason, version=body.version)}

    @router.patch("/excursions/{record_id}/assessment")
    def assess(
        record_id: str, body: Assessment, user: Annotated[User, role(Permission.ASSESS)]
    ) -> dict[str, int]:
        """Set QA fields (impact, root cause, deviation / CAPA references, conclusion)."""
        version = life.assess(record_id, user, body.fields, body.reason, version=body.version)
        return {"version": version}

    def own_signature(user: User, body: SignatureForm) -> None:
        if body.username != user.username:
            raise HTTPException(403, f"sign with your own user id ({user.username})")

    def signed(
        request: Request, user: User, body: SignatureForm, action: str, record_id: str
    ) -> int:
        """Close or reopen, signed; end the session if signing got blocked for its user."""
        own_signature(user, body)
        sign = life.close if action == "close" else life.reopen
        try:
            return sign(
                record_id,
                signer=body.username,
                password=body.password,
                meaning=body.meaning,
                reason=body.reason,
                version=body.version,
                client=client_of(request),
            )
        except SigningBlockedError as exc:
            token = request.cookies.get(COOKIE)
            if exc.ends_session and token:
                services.sessions.sign_out(
                    token, client=client_of(request), reason="signing blocked: wrong passwords"
                )
            raise

    @router.post("/excursions/{record_id}/close")
    def close(
        request: Request,
        record_id: str,
        body: SignatureForm,
        user: Annotated[User, role(Permission.CLOSE)],
    ) -> dict[str, int]:
        """Sign and close (the signer re-enters user id and password)."""
        return {"version": signed(request, user, body, "close", record_id)}

    @router.post("/excursions/{record_id}/reopen")
    def reopen(
        request: Request,
        record_id: str,
        body: SignatureForm,
        user: Annotated[User, role(Permission.REOPEN)],
    ) -> dict[str, int]:
        """Sign and reopen, with a reason."""
        return {"version": signed(request, user, body, "reopen", record_id)}

    users = services.lifecycle.users

    def user_error(exc: UserError) -> HTTPException:
        return HTTPException(404 if str(exc).startswith("no user") else 422, str(exc))

    @router.get("/users")
    def list_users(
        _user: Annotated[User, role(Permission.MANAGE_USERS)],
    ) -> list[dict[str, object]]:
        """Every user (admin only; no password hashes)."""
        return users.list()

    @router.post("/users", status_code=201)
    def add_user(
        body: NewUser, user: Annotated[User, role(Permission.MANAGE_USERS)]
    ) -> dict[str, str]:
        """Create a user (admin only)."""
        try:
            added = users.add(
                body.username,
                body.full_name,
                body.role,
                body.password,
                actor=user.username,
                reason=body.reason,
            )
        except UserError as exc:
            raise user_error(exc) from None
        return {"username": added.username, "role": added.role}

    @router.patch("/users/{username}")
    def change_user(
        username: str, body: UserChange, user: Annotated[User, role(Permission.MANAGE_USERS)]
    ) -> dict[str, str]:
        """Change a user's role, disabled flag and/or password (admin only): all or nothing.

        Nobody changes their own role or disables themselves; the last enabled admin
        stays. A role change, a disable and a password reset end the user's sessions.
        """
        try:
            users.change(
                username,
                role=body.role,
                disabled=body.disabled,
                password=body.password,
                actor=user.username,
                reason=body.reason,
            )
        except UserError as exc:
            raise user_error(exc) from None
        return {"username": username}

    app.include_router(router)
    return app
