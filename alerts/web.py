"""The incidents pages and API of the QA app: see who is paged, acknowledge, shelve.

Pages (server-rendered like the record pages, same guards: a session, the role, the
CSRF token of every form, the same-origin check of every POST, bounded bodies, no script):

- ``GET /incidents``: the open incidents (unacknowledged first) and those resolved in the
  last seven days, for viewers, operators and QA (admins manage users: refused, 403);
- ``GET /incidents/{id}``: one incident with who was paged, every notification and
  delivery attempt in time order, its shelves and audit entries; operators and QA get a
  form to acknowledge it (a comment is required) and one to shelve it (a reason and an
  end time in the site's zone, at most ``alerting.shelving.max`` ahead);
- ``POST /incidents/{id}/acknowledge`` and ``POST /incidents/{id}/shelve``: done, a 303
  back to the page with a confirmation; refused, the page again with the reason and the
  status (403, 404, 409, 422), what was typed kept;
- ``GET /incidents/ack/{token}``: the acknowledge link of a notification
  (``alerts.links``). A malformed or forged token is a 400 page, an expired or used one
  410, saying why; a valid one leads through sign-in (``/login?next=…``) to the incident
  and a comment form, which ``POST /incidents/ack/{token}`` acknowledges (``via="link"``)
  and marks the link used in the same transaction: a link works once.

API under ``/api/v1`` (JSON, ``X-CSRF-Token`` on POST, errors ``{"detail": …}``: 401 not
signed in, 403 role or CSRF, 404 no such incident, 409 already acknowledged or resolved,
422 bad input, 503 the store is busy): ``GET /incidents``, ``GET /incidents/{id}``,
``POST /incidents/{id}/acknowledge {comment}``, ``POST /incidents/{id}/shelve {reason, until}``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import dataclasses
import logging
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Cookie, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from alerts.engine import (
    MAX_COMMENT,
    MIN_COMMENT,
    AlertEngine,
    IncidentError,
    IncidentNotFoundError,
)
from alerts.links import Link, LinkError, LinkSigner
from alerts.messages import KIND_WORDS
from alerts.queries import (
    IncidentDetail,
    incident_detail,
    open_incidents,
    recently_resolved,
)
from alerts.store import ACKNOWLEDGED, RESOLVED, TRIGGERED, LinkUseRow
from envmon.display import duration_text, format_time, relative
from excursions.policy import TEMPLATE_GLOBALS, Permission, may
from excursions.users import User
from excursions.web.api import (
    COOKIE,
    PREFIX,
    Services,
    role_dependency,
    user_dependency,
)
from excursions.web.security import (
    CSRF_FIELD,
    StrictJSONRoute,
    csrf_ok,
    csrf_token,
)

logger = logging.getLogger(__name__)

#: The incidents' templates first, then the QA app's (``base.html``, ``login.html``).
TEMPLATE_DIRS: Final = (
    Path(__file__).parent / "templates",
    Path(__file__).parents[1] / "excursions" / "web" / "templates",
)
TEMPLATES: Final = Jinja2Templates(directory=[str(d) for d in TEMPLATE_DIRS])
TEMPLATES.env.globals.update(TEMPLATE_GLOBALS)
#: An incident id as the store makes them (uuid5); anything else is no incident.
INCIDENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: The longest shelve reason (the engine's comment limit).
MAX_REASON: Final = MAX_COMMENT
#: The default shelve on the form: this long, or the site's maximum if shorter.
DEFAULT_SHELVE: Final = timedelta(hours=1)
#: What the page says after a 303 (the query parameter ``done`` names one of these).
DONE: Final = {
    "acknowledged": "Acknowledged: the escalation has stopped.",
    "shelved": "Shelved: no pages until the shelve ends.",
}
NOT_A_READER: Final = "your role may not see incidents (admins manage users)"
NOT_AN_ACTOR: Final = (
    "only operators and QA may acknowledge or shelve incidents: your role ({role}) may look at"
    " them, not act on them"
)
NO_INCIDENT: Final = "no such incident"
BUSY: Final = "the record store is busy: nothing was done, try again in a moment"
FORGED: Final = (
    "This form did not come from this site's own page (or the page is too old), so nothing"
    " was done. Open the page again and resubmit it."
)
CLASHED: Final = "another change was stored at the same moment: nothing was done, try again"
NO_LINKS: Final = "acknowledge links are not configured on this site (alerting.links)"
LINK_USED: Final = (
    "this acknowledge link has already been used: a link works once."
    " The incident's page shows who acknowledged it."
)


@dataclass(frozen=True, slots=True)
class IncidentServices:
    """What the incidents pages work on: the alerting engine and the link signer (if any)."""

    engine: AlertEngine
    signer: LinkSigner | None = None

    @property
    def shelve_max(self) -> timedelta:
        """Return the longest shelve the site allows (``alerting.shelving.max``)."""
        return timedelta(seconds=self.engine.alerting.shelving.max)


class Acknowledgement(BaseModel):
    """An acknowledgement's comment (required: say what you are doing)."""

    comment: str = Field(max_length=MAX_COMMENT * 2)  # the clear message comes from the check


class ShelveRequest(BaseModel):
    """Why, and until when (an ISO 8601 time with its UTC offset)."""

    reason: str = Field(max_length=MAX_REASON * 2)
    until: datetime


class ActionRefusedError(Exception):
    """An action refused before it reached the engine, with its status and sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def kind_text(kind: str) -> str:
    """Return what an incident is about in words (``system:disconnected`` → ``system``)."""
    if kind.startswith("system:"):
        return "system"
    return KIND_WORDS.get(kind, kind.replace("_", " "))


def check_comment(text: str, name: str = "Comment") -> str:
    """Return a comment stripped; raise ``ActionRefusedError`` (422) if too short or long."""
    cleaned = text.strip()
    if len(cleaned) < MIN_COMMENT:
        raise ActionRefusedError(
            422, f"{name}: at least {MIN_COMMENT} characters are required: say what you are doing"
        )
    if len(cleaned) > MAX_COMMENT:
        raise ActionRefusedError(422, f"{name}: at most {MAX_COMMENT} characters")
    return cleaned


def parse_until(text: str, zone: ZoneInfo) -> datetime:
    """Return a shelve's end typed in the form (site time, or with an offset) in UTC.

    Raise ``ActionRefusedError`` (422) with a sentence that does not echo the input.
    """
    label = f"End time ({zone.key})"
    if not text.strip():
        raise ActionRefusedError(422, f"{label}: required")
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            local = value.replace(tzinfo=zone)
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
                raise ActionRefusedError(
                    422,
                    f"{label}: {value:%Y-%m-%d %H:%M} does not exist in {zone.key}"
                    " (the clocks go forward then)",
                )
            value = local
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ActionRefusedError(
            422, f"{label}: a date and time such as 2026-12-07T14:30"
        ) from None


def check_until(until: datetime, now: datetime, longest: timedelta, zone: ZoneInfo) -> datetime:
    """Return ``until`` if it is in the future and within the site's maximum; else refuse."""
    if until.tzinfo is None:
        raise ActionRefusedError(422, "until: give a UTC offset (e.g. 2026-12-07T14:30+01:00)")
    if until <= now:
        raise ActionRefusedError(422, "End time: must be in the future")
    if until - now > longest:
        latest = format_time(now + longest, zone)
        raise ActionRefusedError(
            422,
            f"End time: a shelve may last at most {duration_text(longest)}"
            f" (site setting alerting.shelving.max): until {latest} at the latest",
        )
    return until


def add_incidents(
    app: FastAPI, services: Services, incidents: IncidentServices, *, site_name: str = "envmon"
) -> None:
    """Add the incidents pages and API to the QA app (``excursions.web.app.create_app``)."""
    zone = ZoneInfo(services.site_timezone)
    engine = incidents.engine
    alerting = engine.alerting
    db = services.engine
    clock = engine.clock

    # ---- shared ----------------------------------------------------------------------

    current_user = services.user_of

    def local(at: datetime | None) -> str:
        return format_time(at, zone) if at is not None else ""

    def short(at: datetime | None, now: datetime) -> str:
        """Return a time of today as ``10:08:12 CET``, any other in full (site zone)."""
        if at is None:
            return ""
        if at.astimezone(zone).date() == now.astimezone(zone).date():
            return at.astimezone(zone).strftime("%H:%M:%S %Z")
        return format_time(at, zone)

    def local_input(at: datetime) -> str:
        """Return a time as a ``datetime-local`` input's value in the site's zone."""
        return at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")

    def page(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
        session_token = request.cookies.get(COOKIE)
        now = clock()
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "site_name": site_name,
                "site_timezone": zone.key,
                "csrf": csrf_token(session_token) if session_token else "",
                "incidents_nav": True,
                "local": local,
                "ago": lambda at: relative(at, now) if at is not None else "",
                "short": lambda at: short(at, now),
                "kind_text": kind_text,
                "now": now,
                **context,
            },
            status_code=status,
        )

    def refusal(request: Request, user: User | None, status: int, error: str) -> HTMLResponse:
        return page(request, "incident_refused.html", status, user=user, error=error)

    def to_login(path: str) -> RedirectResponse:
        return RedirectResponse(
            "/login?next=" + urllib.parse.quote(path, safe="/"), status_code=303
        )

    def known_id(incident_id: str) -> bool:
        return INCIDENT_ID.fullmatch(incident_id) is not None

    def detail_of(incident_id: str) -> IncidentDetail | None:
        if not known_id(incident_id):
            return None
        return incident_detail(db, incident_id, alerting)

    def acknowledge(
        user: User, incident_id: str, comment: str, link: Link | None = None, via: str = "app"
    ) -> None:
        """Acknowledge in one transaction (and mark the link used); raise what refuses it."""
        text = check_comment(comment)
        try:
            with Session(db) as session, session.begin():
                if link is not None and session.get(LinkUseRow, link.link_id) is not None:
                    raise ActionRefusedError(410, LINK_USED)
                engine.acknowledge(
                    session,
                    incident_id,
                    actor=user.username,
                    comment=text,
                    via="link" if link is not None else via,
                )
                if link is not None:
                    session.add(
                        LinkUseRow(
                            link_id=link.link_id,
                            incident_id=incident_id,
                            used_by=user.username,
                            used_at=clock(),
                        )
                    )
        except IntegrityError:
            if link is not None:  # the same link, used at the same moment
                raise ActionRefusedError(410, LINK_USED) from None
            raise ActionRefusedError(503, CLASHED) from None
        except OperationalError:
            logger.warning("acknowledging %s: the store did not answer", incident_id, exc_info=True)
            raise ActionRefusedError(503, BUSY) from None
        logger.info("incident %s acknowledged by %s", incident_id, user.username)

    def shelve(user: User, incident_id: str, reason: str, until: datetime) -> None:
        """Shelve in one transaction; raise what refuses it."""
        text = check_comment(reason, "Reason")
        until = check_until(until, clock(), incidents.shelve_max, zone)
        try:
            with Session(db) as session, session.begin():
                engine.shelve(session, incident_id, actor=user.username, reason=text, until=until)
        except OperationalError:
            logger.warning("shelving %s: the store did not answer", incident_id, exc_info=True)
            raise ActionRefusedError(503, BUSY) from None
        logger.info("incident %s shelved by %s until %s", incident_id, user.username, until)

    def status_of(exc: IncidentError | ActionRefusedError) -> int:
        if isinstance(exc, ActionRefusedError):
            return exc.status
        if isinstance(exc, IncidentNotFoundError):
            return 404
        return 409

    def checked_link(token: str) -> Link:
        """Return what a token says; raise ``ActionRefusedError`` (400 bad, 410 expired, used)."""
        if incidents.signer is None:
            raise ActionRefusedError(404, NO_LINKS)
        try:
            link = incidents.signer.check(token, clock())
        except LinkError as exc:
            raise ActionRefusedError(
                410 if "expired" in str(exc) else 400, f"{str(exc).capitalize()}."
            ) from None
        with Session(db) as session:
            if session.get(LinkUseRow, link.link_id) is not None:
                raise ActionRefusedError(410, LINK_USED)
        return link

    def shelve_form(now: datetime) -> dict[str, object]:
        longest = incidents.shelve_max
        return {
            "until_default": local_input(now + min(DEFAULT_SHELVE, longest)),
            "until_min": local_input(now),
            "until_max": local_input(now + longest),
            "shelve_max": duration_text(longest),
            "latest": local(now + longest),
        }

    def detail_page(
        request: Request,
        user: User,
        incident_id: str,
        status: int = 200,
        error: str = "",
        typed: dict[str, str] | None = None,
        notice: str = "",
    ) -> HTMLResponse:
        if not may(user.role, Permission.READ_INCIDENTS):
            return refusal(request, user, 403, NOT_A_READER)
        found = detail_of(incident_id)
        if found is None:
            return refusal(request, user, 404, NO_INCIDENT)
        state = found.incident.state
        actions: tuple[str, ...] = ()
        if may(user.role, Permission.ACT_ON_INCIDENTS):
            actions = {TRIGGERED: ("acknowledge", "shelve"), ACKNOWLEDGED: ("shelve",)}.get(
                state, ()
            )
        return page(
            request,
            "incident.html",
            status,
            user=user,
            d=found,
            i=found.incident,
            actions=actions,
            error=error,
            notice=notice,
            typed=typed or {},
            max_comment=MAX_COMMENT,
            min_comment=MIN_COMMENT,
            **shelve_form(clock()),
        )

    async def form_of(request: Request) -> dict[str, str]:
        # Browsers send a textarea's line breaks as CRLF: count them as one character each,
        # as the textarea's maxlength does.
        return {
            k: v.replace("\r\n", "\n")
            for k, v in (await request.form()).items()
            if isinstance(v, str)
        }

    # ---- pages -----------------------------------------------------------------------

    @app.get("/incidents", include_in_schema=False)
    def incident_list(
        request: Request, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login("/incidents")
        if not may(user.role, Permission.READ_INCIDENTS):
            return refusal(request, user, 403, NOT_A_READER)
        return page(
            request,
            "incidents.html",
            user=user,
            open=open_incidents(db, alerting),
            resolved=recently_resolved(db, alerting, now=clock()),
        )

    @app.get("/incidents/ack/{token}", include_in_schema=False)
    def ack_link_page(
        request: Request, token: str, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = current_user(envmon_session)
        try:
            link = checked_link(token)
        except ActionRefusedError as exc:
            return refusal(request, user, exc.status, str(exc))
        if user is None:
            return to_login(f"/incidents/ack/{token}")
        return ack_page(request, user, token, link)

    def ack_page(
        request: Request,
        user: User,
        token: str,
        link: Link,
        status: int = 200,
        error: str = "",
        typed: str = "",
    ) -> HTMLResponse:
        if not may(user.role, Permission.ACT_ON_INCIDENTS):
            return refusal(request, user, 403, NOT_AN_ACTOR.format(role=user.role))
        found = detail_of(link.incident_id)
        if found is None:
            return refusal(request, user, 404, NO_INCIDENT)
        incident = found.incident
        if status == 200 and incident.state == ACKNOWLEDGED:
            status = 409
            error = (
                f"This incident was already acknowledged by {incident.acknowledged_by}"
                f" at {local(incident.acknowledged_at)}: the escalation has stopped."
            )
        elif status == 200 and incident.state == RESOLVED:
            status, error = 409, "This incident has already been resolved: nothing to acknowledge."
        return page(
            request,
            "incident_ack.html",
            status,
            user=user,
            i=incident,
            token=token,
            sent_to=_contact_name(engine, link.contact_id),
            expires=local(link.expires),
            can_ack=incident.state == TRIGGERED,
            error=error,
            typed=typed,
            max_comment=MAX_COMMENT,
            min_comment=MIN_COMMENT,
        )

    @app.post("/incidents/ack/{token}", include_in_schema=False)
    async def ack_link(
        request: Request, token: str, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login(f"/incidents/ack/{token}")
        form = await form_of(request)
        if not csrf_ok(envmon_session, form.get(CSRF_FIELD)):
            return refusal(request, user, 403, FORGED)
        try:
            link = await run_in_threadpool(checked_link, token)
        except ActionRefusedError as exc:
            return refusal(request, user, exc.status, str(exc))
        if not may(user.role, Permission.ACT_ON_INCIDENTS):
            return refusal(request, user, 403, NOT_AN_ACTOR.format(role=user.role))
        comment = form.get("comment", "")
        try:
            await run_in_threadpool(acknowledge, user, link.incident_id, comment, link)
        except ActionRefusedError as exc:
            if exc.status == 410:
                return refusal(request, user, 410, str(exc))
            return ack_page(request, user, token, link, exc.status, str(exc), comment)
        except IncidentNotFoundError:
            return refusal(request, user, 404, NO_INCIDENT)
        except IncidentError as exc:
            return ack_page(request, user, token, link, status_of(exc), str(exc), comment)
        return RedirectResponse(f"/incidents/{link.incident_id}?done=acknowledged", status_code=303)

    @app.get("/incidents/{incident_id}", include_in_schema=False)
    def incident_page(
        request: Request,
        incident_id: str,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login(f"/incidents/{incident_id}" if known_id(incident_id) else "/incidents")
        notice = DONE.get(request.query_params.get("done", ""), "")
        return detail_page(request, user, incident_id, notice=notice)

    @app.post("/incidents/{incident_id}/{action}", include_in_schema=False)
    async def incident_action(
        request: Request,
        incident_id: str,
        action: str,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login(f"/incidents/{incident_id}" if known_id(incident_id) else "/incidents")
        form = await form_of(request)
        typed = {k: v for k, v in form.items() if k in ("comment", "reason", "until")}
        if not csrf_ok(envmon_session, form.get(CSRF_FIELD)):
            return detail_page(request, user, incident_id, 403, FORGED, typed)
        if action not in ("acknowledge", "shelve"):
            return refusal(request, user, 404, "no such action on an incident")
        if not may(user.role, Permission.ACT_ON_INCIDENTS):
            status = 403
            error = NOT_AN_ACTOR.format(role=user.role)
            if not may(user.role, Permission.READ_INCIDENTS):
                return refusal(request, user, status, error)
            return detail_page(request, user, incident_id, status, error, typed)
        if not known_id(incident_id):
            return refusal(request, user, 404, NO_INCIDENT)
        try:
            if action == "acknowledge":
                await run_in_threadpool(acknowledge, user, incident_id, form.get("comment", ""))
            else:
                until = parse_until(form.get("until", ""), zone)
                await run_in_threadpool(shelve, user, incident_id, form.get("reason", ""), until)
        except (ActionRefusedError, IncidentError) as exc:
            return detail_page(request, user, incident_id, status_of(exc), str(exc), typed)
        done = "acknowledged" if action == "acknowledge" else "shelved"
        return RedirectResponse(f"/incidents/{incident_id}?done={done}", status_code=303)

    # ---- API -------------------------------------------------------------------------

    router = APIRouter(prefix=PREFIX, route_class=StrictJSONRoute, tags=["incidents"])

    signed_in = user_dependency(services)

    def role(permission: Permission) -> Any:  # noqa: ANN401 - FastAPI's Depends() marker is untyped
        return role_dependency(signed_in, permission)

    def api_error(exc: IncidentError | ActionRefusedError) -> HTTPException:
        return HTTPException(status_of(exc), str(exc))

    def api_detail(incident_id: str) -> dict[str, Any]:
        found = detail_of(incident_id)
        if found is None:
            raise HTTPException(404, NO_INCIDENT)
        return dataclasses.asdict(found)

    @router.get("/incidents")
    def api_incidents(_user: Annotated[User, role(Permission.READ_INCIDENTS)]) -> dict[str, Any]:
        """Open incidents (unacknowledged first) and those resolved in the last seven days."""
        found = open_incidents(db, alerting)
        return {
            "open_total": found.total,
            "open": [dataclasses.asdict(item) for item in found.items],
            "resolved": [
                dataclasses.asdict(item) for item in recently_resolved(db, alerting, now=clock())
            ],
        }

    @router.get("/incidents/{incident_id}")
    def api_incident(
        incident_id: str, _user: Annotated[User, role(Permission.READ_INCIDENTS)]
    ) -> dict[str, Any]:
        """One incident: who was paged, notifications and attempts, shelves, audit entries."""
        return api_detail(incident_id)

    @router.post("/incidents/{incident_id}/acknowledge")
    def api_acknowledge(
        incident_id: str,
        body: Acknowledgement,
        user: Annotated[User, role(Permission.ACT_ON_INCIDENTS)],
    ) -> dict[str, Any]:
        """Acknowledge with a comment: the escalation stops (audited)."""
        if not known_id(incident_id):
            raise HTTPException(404, NO_INCIDENT)
        try:
            acknowledge(user, incident_id, body.comment, via="api")
        except (ActionRefusedError, IncidentError) as exc:
            raise api_error(exc) from None
        return api_detail(incident_id)

    @router.post("/incidents/{incident_id}/shelve")
    def api_shelve(
        incident_id: str,
        body: ShelveRequest,
        user: Annotated[User, role(Permission.ACT_ON_INCIDENTS)],
    ) -> dict[str, Any]:
        """Hold the incident's pages back until ``until`` (audited); pages again then if open."""
        if not known_id(incident_id):
            raise HTTPException(404, NO_INCIDENT)
        try:
            shelve(user, incident_id, body.reason, body.until)
        except (ActionRefusedError, IncidentError) as exc:
            raise api_error(exc) from None
        return api_detail(incident_id)

    app.include_router(router)


def _contact_name(engine: AlertEngine, contact_id: str) -> str:
    """Return a contact's name (its id if it is no longer configured)."""
    try:
        return str(engine.alerting.contact(contact_id).name)
    except KeyError:  # no longer configured
        return contact_id
