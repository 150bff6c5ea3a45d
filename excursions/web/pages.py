"""The QA app's server-rendered pages (Jinja2, autoescaped), on the same services as the API.

``/login`` (``?next=``: a local path to go on to), ``/logout``, ``/excursions`` (the list,
filtered and paged; its own refresh sends ``X-Envmon-Poll`` and does not keep the session
alive), ``/excursions/{id}`` (the record, with a form for each action ``policy.offered``
the role in the record's state) and its ``report.pdf``. Actions are POSTed to
``/excursions/{id}/{action}``: done, a 303 to ``?done=<action>``; refused, the page again
with the reason, the typed values (never a password) and the API's status. Without a
session: a redirect to ``/login``. Every form carries the CSRF token; a forged post is 403.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import io
import logging
import math
import re
import secrets
import urllib.parse
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Final
from zoneinfo import ZoneInfo

from fastapi import Cookie, FastAPI, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from envmon.display import label
from excursions.lifecycle import (
    MAX_COMMENT,
    QA_FIELDS,
    LifecycleError,
    NotAllowedError,
    SigningBlockedError,
)
from excursions.policy import RECORD_ACTIONS, TEMPLATE_GLOBALS, Permission, may, offered
from excursions.queries import (
    MAX_PAGE,
    Filters,
    RecordDetail,
    distinct_values,
    list_records,
    record_detail,
)
from excursions.series import TrendResult, fetch_trend, trend_context
from excursions.trend.model import trend_window
from excursions.trend.svg import trend_svg
from excursions.users import AuthenticationError, ThrottledError, User
from excursions.web import present
from excursions.web.api import (
    COOKIE,
    PREFIX,
    Services,
    client_of,
    refusal_status,
    retry_after,
)
from excursions.web.present import Catalogue
from excursions.web.security import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    CrossOriginError,
    csrf_ok,
    csrf_token,
    human_errors,
    validation_error_json,
)

logger = logging.getLogger(__name__)
TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals.update(TEMPLATE_GLOBALS)
PAGE_SIZE: Final = 50
#: The header of the list's own refresh (``static/list.js``).
POLL_HEADER: Final = "X-Envmon-Poll"
#: Form fields never shown again after a refusal.
NOT_KEPT: Final = frozenset({"password", CSRF_FIELD, "version"})
NOT_A_READER: Final = "your role may not read records (admins manage users)"
NO_REPORT: Final = (
    "The printable report of this record could not be laid out. This is a defect of envmon,"
    " not of the record (nothing was changed): please report it. The record page shows"
    " everything the report would."
)
FORGED: Final = (
    "This form did not come from this site's own page (or the page is too old), so nothing"
    " was done. Open the page again and resubmit it."
)


def _page_number(text: str) -> int:
    """Return the page number asked for; raise ``ValueError`` with a sentence (no echo)."""
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= MAX_PAGE:
        raise ValueError(f"page: a whole number from 1 to {MAX_PAGE}")
    return int(text)


DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: The list filters chosen from fixed values: anything else is refused with the choices.
FIXED: Final = {
    "level": present.LEVELS,
    "kind": present.KINDS,
    "state": present.QA_STATES,
}


def _bound(name: str, text: str | None, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """Return a list filter's time; raise ``ValueError`` with a sentence (no echo).

    A date (``2026-01-05``, the date inputs' value) is that day in the site's zone: from
    its start, or with ``end`` up to the end of it. A date and time needs a UTC offset.
    """
    if not text:
        return None
    example = "(a date such as 2026-01-05, or 2026-01-05T07:00Z)"
    if DATE.fullmatch(text):
        try:
            day = datetime.combine(datetime.fromisoformat(text).date(), time(), zone)
        except ValueError:
            raise ValueError(f"{name}: not a date {example}") from None
        return day + timedelta(days=1) if end else day
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name}: a date, or a date and time with a UTC offset {example}"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"{name}: give a UTC offset {example}")
    return value


#: Where a sign-in may lead on (``/login?next=…``): a path of this app, never another host.
#: No ``//`` or ``/\`` start (a browser reads both as another host), no backslash, no
#: control character or space, bounded.
MAX_NEXT: Final = 2000
LOCAL_PATH: Final = re.compile(r"/(?![/\\])[!#-\[\]-~]*")


def local_path(text: str | None) -> str | None:
    """Return ``text`` if it is a safe place to go after signing in (a local path), else None."""
    if text and len(text) <= MAX_NEXT and LOCAL_PATH.fullmatch(text):
        return text
    return None


def add_pages(
    app: FastAPI, services: Services, *, site_name: str = "envmon", incidents_nav: bool = False
) -> None:
    """Add the pages to the API's application (``incidents_nav``: link the incidents pages)."""
    life = services.lifecycle
    zone = ZoneInfo(services.site_timezone)
    shown = services.shown
    site_catalogue = Catalogue.of_site(services.site) if services.site is not None else None

    def catalogue() -> Catalogue:
        """Return the names and filter values: the site's, else what the store holds."""
        if site_catalogue is not None:
            return site_catalogue
        found = distinct_values(services.engine)
        return Catalogue.of_store({k.removesuffix("_id"): v for k, v in found.items()})

    def polled_user(token: str | None) -> User | None:
        """Return the user of a page's own refresh: it does not keep the session alive."""
        if not token:
            return None
        try:
            return services.sessions.user(token, touch=False)
        except AuthenticationError:
            return None

    def page(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
        session_token = request.cookies.get(COOKIE)
        csrf = csrf_token(session_token) if session_token else ""
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "site_name": site_name,
                "site_timezone": zone.key,
                "csrf": csrf,
                "incidents_nav": incidents_nav,
                "shown": shown,
                **context,
            },
            status_code=status,
        )

    def login_page(
        request: Request, status: int = 200, error: str = "", next_path: str | None = None
    ) -> HTMLResponse:
        """Render the sign-in form, its token bound to the form's own cookie (set if missing).

        ``next_path`` (a checked local path) is where a successful sign-in leads.
        """
        secret = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = page(
            request,
            "login.html",
            status,
            error=error,
            csrf=csrf_token(secret),
            next_path=local_path(next_path),
        )
        if request.cookies.get(LOGIN_COOKIE) != secret:
            response.set_cookie(
                LOGIN_COOKIE,
                secret,
                httponly=True,
                samesite="strict",
                secure=services.secure_cookie,
                path="/login",
            )
        return response

    @app.exception_handler(RequestValidationError)
    async def form_error(request: Request, exc: RequestValidationError) -> Response:
        """Show the page again with a sentence for a refused form field (API: JSON)."""
        if request.url.path.startswith(PREFIX):
            return await validation_error_json(request, exc)
        if request.url.path == "/login":
            return login_page(request, 422, human_errors(exc))
        return page(request, "base.html", 422, error=human_errors(exc))

    @app.exception_handler(CrossOriginError)
    async def cross_origin(request: Request, exc: CrossOriginError) -> Response:
        """Refuse a form posted from another origin with a page that says so (API: JSON)."""
        if request.url.path.startswith(PREFIX):
            return JSONResponse(
                {"detail": f"refused: the request came from another origin ({exc})"},
                status_code=403,
            )
        if request.url.path == "/login":
            return login_page(request, 403, FORGED)
        user = current_user(request.cookies.get(COOKIE))
        return page(request, "base.html", 403, user=user, error=FORGED)

    current_user = services.user_of

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    def start_page(user: User | None) -> str:
        """Where a role starts: administrators manage users and may not read records."""
        return (
            "/users"
            if user is not None and not may(user.role, Permission.READ_RECORDS)
            else "/excursions"
        )

    @app.get("/", include_in_schema=False)
    def home(envmon_session: Annotated[str | None, Cookie()] = None) -> RedirectResponse:
        return RedirectResponse(start_page(current_user(envmon_session)), status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return login_page(request, next_path=request.query_params.get("next"))

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=200)],
        csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
        next_path: Annotated[str, Form(alias="next")] = "",  # checked, never echoed unchecked
    ) -> Response:
        if not csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf):
            return login_page(request, 403, FORGED, next_path)
        try:
            token, user = services.sessions.sign_in(username, password, client=client_of(request))
        except ThrottledError as exc:
            refused = login_page(request, 429, f"Not signed in: {exc}.", next_path)
            refused.headers.update(retry_after(exc, services))
            return refused
        except AuthenticationError as exc:
            return login_page(request, 401, str(exc), next_path)
        response = RedirectResponse(local_path(next_path) or start_page(user), status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=services.secure_cookie
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(
        request: Request,
        csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        if envmon_session and not csrf_ok(envmon_session, csrf):
            user = current_user(envmon_session)
            return page(request, "base.html", 403, user=user, error=FORGED)
        if envmon_session:
            services.sessions.sign_out(envmon_session, client=client_of(request))
        response = to_login()
        response.delete_cookie(COOKIE)
        return response

    @app.get("/excursions", include_in_schema=False)
    def excursion_list(
        request: Request,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        # The list's own refresh (list.js) does not count as a use of the session.
        polled = request.headers.get(POLL_HEADER) == "1"
        user = (polled_user if polled else current_user)(envmon_session)
        if user is None:
            return to_login()
        if not may(user.role, Permission.READ_RECORDS):
            return page(request, "base.html", 403, user=user, error=NOT_A_READER)
        query = request.query_params
        text = {name: query.get(name) or None for name in Filters.__dataclass_fields__}
        try:
            number = _page_number(query.get("page", "1"))
            for name, allowed in FIXED.items():
                if text[name] is not None and text[name] not in allowed:
                    raise ValueError(f"{name}: one of {', '.join(allowed)}")
            bounds = {
                "start_from": _bound("start_from", text["start_from"], zone),
                "start_to": _bound("start_to", text["start_to"], zone, end=True),
            }
        except ValueError as exc:
            return page(request, "base.html", 422, user=user, error=str(exc))
        filters = Filters(
            text["area"],
            text["instrument"],
            text["parameter"],
            text["level"],
            text["state"],
            bounds["start_from"],
            bounds["start_to"],
            text["sensor"],
            text["kind"],
        )
        total, items = list_records(services.engine, filters, page=number, page_size=PAGE_SIZE)
        names = catalogue()

        def page_url(n: int) -> str:
            return "/excursions?" + urllib.parse.urlencode(
                {**{k: v for k, v in query.items() if v and k != "page"}, "page": n}
            )

        return page(
            request,
            "list.html",
            user=user,
            rows=[present.list_row(item, shown, names) for item in items],
            total=total,
            page=number,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            filters=text,
            options=names.options,
            fixed={
                "level": [(v, label(v)) for v in present.LEVELS],
                "kind": [(v, label(v)) for v in present.KINDS],
                "state": [(v, label(v)) for v in present.QA_STATES],
            },
            filtered=any(text.values()),
            shown_at=shown.time(services.clock()),
            page_url=page_url,
        )

    def readable(
        request: Request, user: User, record_id: str
    ) -> tuple[RecordDetail, TrendResult] | Response:
        """Return the record and its chart, or the page refusing it (403, 404)."""
        if not may(user.role, Permission.READ_RECORDS):
            return page(request, "base.html", 403, user=user, error=NOT_A_READER)
        record = record_detail(services.engine, record_id, zone, services.shown)
        if record is None:
            return page(request, "base.html", 404, user=user, error=f"no record {record_id!r}")
        core = record.record
        context = trend_context(services.engine, core, services.site)  # marks, a gap's limits
        chart = fetch_trend(
            services.series,
            core,
            now=services.clock(),
            zone=zone,
            display=services.shown,
            context=context,
        )
        return record, chart

    def detail_page(
        request: Request,
        user: User,
        record_id: str,
        status: int = 200,
        error: str = "",
        *,
        kept: tuple[str, dict[str, str]] | None = None,
        notice: str = "",
    ) -> Response:
        """Render a record's page; ``kept``: the refused action and the values typed into it."""
        found = readable(request, user, record_id)
        if isinstance(found, Response):
            return found
        record, chart = found
        actions = offered(record.qa_state, user.role)
        grafana = None
        if services.grafana_link is not None:  # the same span as the chart
            window = trend_window(record.record, services.clock())
            grafana = services.grafana_link(record.sensor_id, *window)
        # trend_svg escapes every text it writes: the markup is safe to embed as it is.
        svg = Markup(trend_svg(chart.trend)) if chart.trend is not None else None  # noqa: S704
        names = site_catalogue or Catalogue(options={})  # the store's values: no names
        spec = names.specs.get(record.sensor_id)
        core = record.record
        now = services.clock()
        kept_action, kept_values = kept if kept is not None else ("", {})
        if record.kind == "data_gap":
            unit = spec.unit if spec is not None else ""
            facts = present.gap_facts(core, shown, now, chart.trend, unit)
        else:
            facts = present.excursion_facts(core, shown, now)
        return page(
            request,
            "detail.html",
            status,
            user=user,
            r=record,
            title=present.record_title(record, names),
            area=names.area(record.area),
            facts=facts,
            rule=present.rule_sentences(core, spec, shown),
            actions=actions,
            action_labels=present.ACTION_LABELS,
            error=error,
            notice=notice,
            chart=svg,
            chart_error=chart.error,
            grafana=grafana,
            max_text=MAX_COMMENT,
            qa_rows=present.qa_rows(record.qa),
            assessment=present.assessment_fields(
                record.qa, kept_values if kept_action == "assess" else None
            ),
            kept=kept_values,
            kept_action=kept_action,
            meanings=present.meanings(),
            audit_action=present.AUDIT_ACTIONS,
            field_label=present.field_label,
            audit_value=present.audit_value,
        )

    @app.get("/excursions/{record_id}", include_in_schema=False)
    def excursion_page(
        request: Request, record_id: str, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login()
        # A fixed sentence per action done; the query's text itself is never shown.
        notice = present.DONE.get(request.query_params.get("done", ""), "")
        return detail_page(request, user, record_id, notice=notice)

    @app.get("/excursions/{record_id}/report.pdf", include_in_schema=False)
    def excursion_pdf(
        request: Request,
        record_id: str,
        envmon_session: Annotated[str | None, Cookie()] = None,
        paper: str = "a4",
    ) -> Response:
        """Return the record's PDF report on A4 (``?paper=letter``: US Letter), printed now."""
        from reportlab.platypus.doctemplate import LayoutError

        from excursions.report import PAPERS, write_report  # reportlab only where it prints

        user = current_user(envmon_session)
        if user is None:
            return to_login()
        if paper not in PAPERS:
            error = f"paper: one of {', '.join(PAPERS)}"
            return page(request, "base.html", 422, user=user, error=error)
        found = readable(request, user, record_id)
        if isinstance(found, Response):
            return found
        record, chart = found
        body = io.BytesIO()
        try:
            write_report(
                record,
                body,
                site_name=site_name,
                chart=chart,
                display=services.shown,
                printed_at=services.clock(),
                paper=paper,
            )
        except LayoutError:  # a defect of ours (every accepted input prints): never a traceback
            logger.exception("the report of %s could not be laid out", record_id)
            return page(request, "base.html", 500, user=user, error=NO_REPORT)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", record_id)
        return Response(
            body.getvalue(),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="excursion-{name}.pdf"'},
        )

    @app.post("/excursions/{record_id}/{action}", include_in_schema=False)
    async def excursion_action(
        request: Request,
        record_id: str,
        action: str,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return to_login()
        # Browsers send a textarea's line breaks as CRLF: count them as one character each,
        # as the textarea's maxlength does.
        form = {
            k: v.replace("\r\n", "\n")
            for k, v in (await request.form()).items()
            if isinstance(v, str)
        }
        if not csrf_ok(envmon_session, form.get(CSRF_FIELD)):
            return detail_page(request, user, record_id, 403, FORGED)
        try:
            version = int(form.get("version", ""))
        except ValueError:
            return detail_page(request, user, record_id, 422, "the form has no record version")
        kept = (action, {k: v for k, v in form.items() if k not in NOT_KEPT})
        try:
            if action not in RECORD_ACTIONS:
                raise LifecycleError(f"no action {action!r}")
            if action == "acknowledge":
                life.acknowledge(record_id, user, form.get("text", ""), version=version)
            elif action == "comment":
                life.comment(record_id, user, form.get("text", ""), version=version)
            elif action == "start_review":
                life.start_review(record_id, user, form.get("reason", ""), version=version)
            elif action == "assess":
                fields = {name: form[name] for name in QA_FIELDS if name in form}
                life.assess(record_id, user, fields, form.get("reason", ""), version=version)
            else:
                if form.get("username") != user.username:
                    raise NotAllowedError(f"sign with your own user id ({user.username})")
                sign = life.close if action == "close" else life.reopen
                sign(
                    record_id,
                    signer=form.get("username", ""),
                    password=form.get("password", ""),
                    meaning=form.get("meaning", ""),
                    reason=form.get("reason", ""),
                    version=version,
                    client=client_of(request),
                )
        except SigningBlockedError as exc:
            if not exc.ends_session:
                return detail_page(request, user, record_id, 429, str(exc), kept=kept)
            services.sessions.sign_out(
                envmon_session or "", client=client_of(request), reason="signing blocked"
            )
            return login_page(request, 429, str(exc))
        except LifecycleError as exc:
            return detail_page(request, user, record_id, refusal_status(exc), str(exc), kept=kept)
        done = urllib.parse.urlencode({"done": action})
        return RedirectResponse(
            f"/excursions/{urllib.parse.quote(record_id)}?{done}", status_code=303
        )
