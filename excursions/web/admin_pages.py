"""The QA app's audit-trail page and its user administration pages (server-rendered).

- ``GET /audit``: the site-wide audit trail, newest first, filtered on record, actor and
  action, with the hash chain's state; for the roles that read records. Read-only.
- ``GET /users``, ``GET /users/{user id}``; ``POST /users`` and
  ``POST /users/{user id}/role|disable|enable|password``: for the roles that manage users.
  Done: a 303 with ``?done=``; refused: the page again with a sentence and a 4xx (403 role
  or forged form, 404 no such user, 422 input), typed values kept except passwords. The
  rules are ``UserStore``'s; this layer first refuses, without echoing it, anything
  overlong, with control characters or an unknown role.

Without a session every page redirects to ``/login``; every form carries the CSRF token.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import Cookie, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from envmon.display import label
from excursions.auditlog import (
    RECORD_KINDS,
    ChainMonitor,
    TrailEntry,
    TrailFilters,
    record_key,
    shown_value,
    split_record_key,
    trail_choices,
    trail_page,
)
from excursions.db import SessionRow, UserRow
from excursions.lifecycle import MAX_COMMENT
from excursions.policy import ROLE_NAMES, Permission, Role, may
from excursions.queries import MAX_PAGE
from excursions.users import MIN_PASSWORD, USERNAME, User, UserError
from excursions.web.api import COOKIE, Services
from excursions.web.pages import FORGED, NOT_A_READER, TEMPLATES
from excursions.web.present import CORE_FIELDS, audit_value
from excursions.web.security import CSRF_FIELD, csrf_ok, csrf_token

PAGE_SIZE: Final = 50
#: A value longer than this is shown cut, the whole of it in a details element.
SHOWN_CHARS: Final = 160
#: The longest filter value taken from the address (a record id has at most 200).
MAX_FILTER: Final = 260
MAX_USERNAME: Final = 64
MAX_FULL_NAME: Final = 200
MAX_PASSWORD: Final = 200
NOT_AN_ADMIN: Final = "only administrators manage users: your role may not"
NO_USER: Final = "no such user"
#: What the pages say after a 303 (the query parameter ``done`` names one of these).
DONE: Final = {
    "added": "User added: they can sign in with the initial password now.",
    "role": "Role changed: the user's sessions have ended; the new role applies at sign-in.",
    "disabled": "User disabled: their sessions have ended and they can no longer sign in.",
    "enabled": "User enabled: they can sign in again.",
    "password": "Password reset: the user's sessions have ended. Hand the new password over"
    " in person.",
}
#: Characters refused in any field: controls (line breaks allowed in a reason), bidi
#: overrides and isolates, line and paragraph separators, surrogates.
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_ACTION_WORDS: Final = {
    "create": "Created",
    "set_role": "Role changed",
    "set_disabled": "Enabled / disabled",
    "reset_password": "Password reset",
    "rehash_password": "Password rehashed",
    "sign_in": "Signed in",
    "sign_out": "Signed out",
    "sign_in_failed": "Sign-in failed",
    "signature_failed": "Signature failed",
    "block": "Blocked",
    "start_review": "Review started",
    "assess": "Assessed",
    "close": "Closed (signed)",
    "reopen": "Reopened (signed)",
    "acknowledge": "Acknowledged",
    "comment": "Commented",
    "shelve": "Shelved",
}
#: How the audit page names a record type (an excursion record is named by its channel).
_RECORD_WORDS: Final = {"user": "User", "client": "Client address", "incident": "Incident"}


class RefusedError(Exception):
    """A form refused before it reached the store: the status and the sentence to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def action_label(action: str) -> str:
    """Return an audit action as people read it (``set_role`` → ``Role changed``)."""
    return _ACTION_WORDS.get(action, label(action))


def clean(name: str, text: str, limit: int, *, lines: bool = False) -> str:
    """Return ``text`` if it has at most ``limit`` characters and no control characters.

    ``lines``: line breaks and tabs are allowed (a reason). Raise ``RefusedError`` (422) with a
    sentence naming the field, never the input.
    """
    if len(text) > limit:
        raise RefusedError(422, f"{name}: at most {limit} characters")
    for char in text:
        if lines and char in "\n\t":
            continue
        if char in _BIDI or unicodedata.category(char) in ("Cc", "Cs"):
            raise RefusedError(422, f"{name}: control characters are not allowed")
    return text


def _filter_value(name: str, text: str | None) -> str | None:
    if not text:
        return None
    return clean(name, text, MAX_FILTER)


def _page_number(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= MAX_PAGE:
        raise RefusedError(422, f"page: a whole number from 1 to {MAX_PAGE:,}")
    return int(text)


def user_rows(services: Services) -> list[dict[str, object]]:
    """Return every user for the users page: the store's list with creation and last sign-in."""
    listed = services.lifecycle.users.list()
    with Session(services.engine) as session:
        created = dict(session.execute(select(UserRow.username, UserRow.created_at)).all())
        newest = func.max(SessionRow.created_at)
        last = dict(
            session.execute(select(SessionRow.username, newest).group_by(SessionRow.username)).all()
        )
    return [
        {
            **row,
            "created_at": created.get(str(row["username"])),
            "last_sign_in": last.get(str(row["username"])),
        }
        for row in listed
    ]


def add_admin_pages(
    app: FastAPI,
    services: Services,
    *,
    site_name: str = "envmon",
    incidents_nav: bool = False,
    chain: ChainMonitor | None = None,
) -> None:
    """Add ``/audit`` and the ``/users`` pages to the QA app.

    ``chain``: how the trail is checked (by default a ``ChainMonitor`` on the app's store
    and clock).
    """
    shown = services.shown
    zone = ZoneInfo(services.site_timezone)
    monitor = chain or ChainMonitor(services.engine, clock=services.clock)
    users = services.lifecycle.users
    current_user = services.user_of

    def page(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
        session_token = request.cookies.get(COOKIE)
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "site_name": site_name,
                "site_timezone": zone.key,
                "csrf": csrf_token(session_token) if session_token else "",
                "incidents_nav": incidents_nav,
                "shown": shown,
                **context,
            },
            status_code=status,
        )

    def to_login(path: str) -> RedirectResponse:
        return RedirectResponse("/login?next=" + urllib.parse.quote(path, safe="/"), 303)

    def admitted(
        request: Request,
        token: str | None,
        back: str | Callable[[], str],
        permission: Permission,
        refused: str,
    ) -> User | Response:
        """Return the signed-in user whose role has ``permission``, else the sign-in or 403.

        ``back`` is where the sign-in leads on (a callable: worked out only when needed).
        """
        user = current_user(token)
        if user is None:
            return to_login(back if isinstance(back, str) else back())
        if not may(user.role, permission):
            return page(request, "base.html", 403, user=user, error=refused)
        return user

    # ---- the audit trail -------------------------------------------------------------

    def record_view(entry: TrailEntry) -> dict[str, str | None]:
        """Return how an entry's record is named and linked (None: no page of its own)."""
        kind, record_id = entry.record_type, entry.record_id
        if kind in RECORD_KINDS:
            what = " · ".join(part for part in (entry.instrument, label(entry.parameter)) if part)
            return {
                "href": "/excursions/" + urllib.parse.quote(record_id, safe=""),
                "text": what or label(kind),
                "kind": label(kind),
                "id": record_id,
            }
        href = None
        if kind == "incident" and incidents_nav:
            href = "/incidents/" + urllib.parse.quote(record_id, safe="")
        return {
            "href": href,
            "text": record_id,
            "kind": _RECORD_WORDS.get(kind, label(kind)),
            "id": None,
        }

    def value_view(entry: TrailEntry, side: str) -> dict[str, object]:
        value, stored = (
            (entry.old, entry.old_stored) if side == "old" else (entry.new, entry.new_stored)
        )
        text, exact = shown_value(value), ""
        if entry.record_type in RECORD_KINDS and entry.field in CORE_FIELDS and stored:
            # the monitoring core's values read as on the record page (exact value on hover)
            about = {"unit": entry.unit, "sensor_id": entry.sensor_id, "parameter": entry.parameter}
            text, exact = audit_value(entry.field, stored, about, shown)
        cut = len(text) > SHOWN_CHARS
        return {
            "text": text,
            "exact": exact,
            "cut": cut,
            "short": text[:SHOWN_CHARS].rstrip() + "…" if cut else text,
        }

    def entry_view(entry: TrailEntry) -> dict[str, object]:
        return {
            "seq": entry.seq,
            "time": shown.time(entry.at),
            "utc": shown.utc(entry.at),
            "iso": entry.at.isoformat(),
            "actor": entry.actor,
            "actor_name": entry.actor_name,
            "action": entry.action,
            "what": action_label(entry.action),
            "record": record_view(entry),
            "field": label(entry.field) if entry.field else "",
            "field_name": entry.field or "",
            "old": value_view(entry, "old"),
            "new": value_view(entry, "new"),
            "reason": entry.reason or "",
        }

    @app.get("/audit", include_in_schema=False)
    def audit_page(
        request: Request, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = admitted(request, envmon_session, "/audit", Permission.READ_RECORDS, NOT_A_READER)
        if isinstance(user, Response):
            return user
        query = request.query_params
        try:
            number = _page_number(query.get("page", "1"))
            record = _filter_value("Record", query.get("record"))
            actor = _filter_value("Who", query.get("actor"))
            action = _filter_value("What", query.get("action"))
        except RefusedError as exc:
            return page(request, "base.html", exc.status, user=user, error=str(exc))
        named = split_record_key(record) if record else None
        if record and named is None:
            return page(request, "base.html", 422, user=user, error="Record: not a record")
        filters = TrailFilters(
            named[0] if named else None, named[1] if named else None, actor, action
        )
        total, entries = trail_page(services.engine, filters, page=number, page_size=PAGE_SIZE)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        if number > pages:
            return page(
                request,
                "base.html",
                404,
                user=user,
                error=f"page {number:,}: there are {pages:,} page(s) of entries with these filters",
            )
        choices = trail_choices(services.engine)
        selected = {"record": record or "", "actor": actor or "", "action": action or ""}
        records = [
            (
                record_key(c.record_type, c.record_id),
                " · ".join(
                    part
                    for part in (
                        label(c.record_type)
                        if c.record_type in RECORD_KINDS
                        else _RECORD_WORDS.get(c.record_type, label(c.record_type)),
                        c.instrument,
                        label(c.parameter) if c.parameter else None,
                        c.record_id,
                    )
                    if part
                ),
            )
            for c in choices.records
        ]
        actors = list(choices.actors)
        actions = [(a, action_label(a)) for a in choices.actions]
        # A filter value the lists no longer offer stays selected (it matches what it did).
        if record and record not in {key for key, _ in records}:
            records.insert(0, (record, record))
        if actor and actor not in actors:
            actors.insert(0, actor)
        if action and action not in {a for a, _ in actions}:
            actions.insert(0, (action, action))

        def page_url(n: int) -> str:
            return "/audit?" + urllib.parse.urlencode(
                {**{k: v for k, v in selected.items() if v}, "page": n}
            )

        return page(
            request,
            "audit.html",
            user=user,
            chain=monitor.status(),
            entries=[entry_view(e) for e in entries],
            total=total,
            page=number,
            pages=pages,
            page_size=PAGE_SIZE,
            page_url=page_url,
            selected=selected,
            filtered=any(selected.values()),
            records=records,
            actors=actors,
            actions=actions,
        )

    # ---- users -----------------------------------------------------------------------

    def users_page(
        request: Request,
        user: User,
        status: int = 200,
        error: str = "",
        typed: Mapping[str, str] | None = None,
        notice: str = "",
    ) -> HTMLResponse:
        return page(
            request,
            "users.html",
            status,
            user=user,
            users=user_rows(services),
            roles=tuple(Role),
            typed=typed or {},
            error=error,
            notice=notice,
            min_password=MIN_PASSWORD,
            limits={
                "username": MAX_USERNAME,
                "full_name": MAX_FULL_NAME,
                "password": MAX_PASSWORD,
                "reason": MAX_COMMENT,
            },
        )

    def user_page(
        request: Request,
        user: User,
        username: str,
        status: int = 200,
        error: str = "",
        typed: Mapping[str, str] | None = None,
        notice: str = "",
        form: str = "",
    ) -> HTMLResponse:
        found = next((row for row in user_rows(services) if row["username"] == username), None)
        if found is None:
            return page(request, "base.html", 404, user=user, error=NO_USER)
        return page(
            request,
            "user.html",
            status,
            user=user,
            u=found,
            roles=tuple(Role),
            typed=typed or {},
            form=form,
            error=error,
            notice=notice,
            own=username == user.username,
            min_password=MIN_PASSWORD,
            limits={"password": MAX_PASSWORD, "reason": MAX_COMMENT},
        )

    async def form_of(request: Request) -> dict[str, str]:
        # A textarea's line breaks come as CRLF: one character each, as its maxlength counts.
        # Uploaded files are no field of these forms: ignored, and closed with the form.
        async with request.form() as form:
            return {k: v.replace("\r\n", "\n") for k, v in form.items() if isinstance(v, str)}

    def known(username: str) -> bool:
        return len(username) <= MAX_USERNAME and USERNAME.fullmatch(username) is not None

    def reason_of(form: Mapping[str, str]) -> str:
        reason = clean("Reason", form.get("reason", ""), MAX_COMMENT, lines=True).strip()
        if not reason:
            raise RefusedError(422, "Reason: required (say why, for the audit trail)")
        return reason

    def role_of(form: Mapping[str, str]) -> str:
        role = form.get("role", "")
        if role not in tuple(Role):
            raise RefusedError(422, f"Role: one of {', '.join(ROLE_NAMES[r] for r in Role)}")
        return role

    def password_of(form: Mapping[str, str]) -> str:
        password = clean("Password", form.get("password", ""), MAX_PASSWORD)
        if len(password) < MIN_PASSWORD:
            raise RefusedError(422, f"Password: at least {MIN_PASSWORD} characters")
        if password.strip() != password:
            raise RefusedError(422, "Password: no leading or trailing spaces")
        if form.get("password_confirm", "") != password:
            raise RefusedError(422, "Password: the confirmation does not match")
        return password

    def refusal_of(exc: UserError) -> RefusedError:
        return RefusedError(404 if str(exc).startswith("no user") else 422, str(exc))

    def kept(form: Mapping[str, str], *names: str) -> dict[str, str]:
        """Return what was typed to show again: bounded, never a password."""
        return {name: form.get(name, "")[:MAX_COMMENT] for name in names}

    @app.get("/users", include_in_schema=False)
    def users_list(
        request: Request, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = admitted(request, envmon_session, "/users", Permission.MANAGE_USERS, NOT_AN_ADMIN)
        if isinstance(user, Response):
            return user
        return users_page(request, user, notice=DONE.get(request.query_params.get("done", ""), ""))

    @app.post("/users", include_in_schema=False)
    async def users_add(
        request: Request, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = admitted(request, envmon_session, "/users", Permission.MANAGE_USERS, NOT_AN_ADMIN)
        if isinstance(user, Response):
            return user
        form = await form_of(request)
        typed = kept(form, "username", "full_name", "role", "reason")
        if not csrf_ok(envmon_session, form.get(CSRF_FIELD)):
            return users_page(request, user, 403, FORGED, typed)
        try:
            username = clean("User id", form.get("username", ""), MAX_USERNAME).strip()
            if not USERNAME.fullmatch(username):
                raise RefusedError(
                    422,
                    "User id: 2 to 64 characters, lowercase letters, digits, dot, underscore"
                    " or hyphen, starting with a letter",
                )
            full_name = clean("Full name", form.get("full_name", ""), MAX_FULL_NAME).strip()
            if not full_name:
                raise RefusedError(422, "Full name: required (it is printed on signatures)")
            role = role_of(form)
            password = password_of(form)
            reason = reason_of(form)
            try:
                await run_in_threadpool(
                    users.add,
                    username,
                    full_name,
                    role,
                    password,
                    actor=user.username,
                    reason=reason,
                )
            except UserError as exc:
                raise refusal_of(exc) from None
        except RefusedError as exc:
            return users_page(request, user, exc.status, str(exc), typed)
        return RedirectResponse("/users?done=added", status_code=303)

    def admitted_to_user(request: Request, token: str | None, username: str) -> User | Response:
        """Return the signed-in administrator, else the sign-in (back to the user) or 403."""
        return admitted(
            request,
            token,
            lambda: f"/users/{username}" if known(username) else "/users",
            Permission.MANAGE_USERS,
            NOT_AN_ADMIN,
        )

    @app.get("/users/{username}", include_in_schema=False)
    def user_detail(
        request: Request, username: str, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = admitted_to_user(request, envmon_session, username)
        if isinstance(user, Response):
            return user
        if not known(username):
            return page(request, "base.html", 404, user=user, error=NO_USER)
        notice = DONE.get(request.query_params.get("done", ""), "")
        return user_page(request, user, username, notice=notice)

    @app.post("/users/{username}/{action}", include_in_schema=False)
    async def user_change(
        request: Request,
        username: str,
        action: str,
        envmon_session: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        user = admitted_to_user(request, envmon_session, username)
        if isinstance(user, Response):
            return user
        if not known(username) or action not in ("role", "disable", "enable", "password"):
            return page(request, "base.html", 404, user=user, error=NO_USER)
        form = await form_of(request)
        typed = kept(form, "role", "reason")
        if not csrf_ok(envmon_session, form.get(CSRF_FIELD)):
            return user_page(request, user, username, 403, FORGED, typed, form=action)
        change: dict[str, Any] = {}
        try:
            if action == "role":
                change["role"] = role_of(form)
            elif action == "password":
                change["password"] = password_of(form)
            else:
                change["disabled"] = action == "disable"
            reason = reason_of(form)
            try:
                await run_in_threadpool(
                    lambda: users.change(username, actor=user.username, reason=reason, **change)
                )
            except UserError as exc:
                raise refusal_of(exc) from None
        except RefusedError as exc:
            if exc.status == 404:
                return page(request, "base.html", 404, user=user, error=NO_USER)
            return user_page(request, user, username, exc.status, str(exc), typed, form=action)
        done = {"disable": "disabled", "enable": "enabled"}.get(action, action)
        return RedirectResponse(
            f"/users/{urllib.parse.quote(username)}?done={done}", status_code=303
        )
