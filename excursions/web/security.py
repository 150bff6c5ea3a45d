"""The QA app's guards at the HTTP edge: CSRF, body size, strict JSON, errors without input.

- Cross-site request forgery: every state-changing request (POST, PUT, PATCH, DELETE) must
  come from the app's own origin when the browser says where it comes from (``Origin``,
  else ``Referer``; ``null`` is refused), and must carry a token bound to the session:
  ``csrf_token(session token)``, an HMAC-SHA256 keyed with the session's secret token,
  compared in constant time. Pages put it in a hidden ``csrf_token`` field of every form;
  JSON clients send it in the ``X-CSRF-Token`` header (``POST /api/v1/session`` and
  ``GET /api/v1/me`` return it). The sign-in form, which has no session yet, is bound the
  same way to a random cookie of its own (``envmon_login``). ``SameSite=Strict`` alone
  does not stop another port of the same host (same site, other origin).

- Every request body is limited to ``MAX_BODY`` (FastAPI's ``max_body_size``: a declared
  ``Content-Length`` above it is refused before a byte is read, a chunked body as soon as
  it passes the limit) with 413.
- JSON bodies of the API are parsed strictly first (orjson): a lone surrogate, ``NaN``,
  ``Infinity``, a number that overflows a double or nesting past orjson's limit is a 422
  with orjson's reason, never a value that reaches the database or an error page.
- Validation errors name the field and the rule (``loc``, ``msg``, ``type``), never the
  submitted value: FastAPI's default 422 body carries ``input``, which echoed passwords
  and, for a 200 MB body, 200 MB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

#: The largest request body accepted (JSON and forms), in bytes.
MAX_BODY: Final = 1024 * 1024
MAX_BODY_TEXT: Final = "1 MB"
#: Methods that change something (guarded by the body checks and, elsewhere, CSRF).
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The header JSON clients send the CSRF token in, and the form field of the pages.
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
#: The sign-in form's own cookie (it has no session to bind its token to).
LOGIN_COOKIE: Final = "envmon_login"
_CSRF_CONTEXT: Final = b"envmon csrf token v1"
#: The longest part of an error's location shown (a dict key in a body is the client's).
_MAX_LOC: Final = 64
#: How the pages name the fields of their forms.
FIELD_LABELS: Final = {
    "username": "User id",
    "password": "Password",
    "full_name": "Full name",
    "text": "Comment",
}


class CrossOriginError(Exception):
    """A state-changing request came from another origin (or says ``null``)."""


def csrf_token(secret: str) -> str:
    """Return the CSRF token bound to ``secret`` (a session token or the sign-in cookie).

    One-way: the token, which pages show, does not give away the session token.
    """
    digest = hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_ok(secret: str | None, token: str | None) -> bool:
    """Tell whether ``token`` is the CSRF token of ``secret`` (constant-time comparison)."""
    if not secret or not token:
        return False
    return hmac.compare_digest(csrf_token(secret).encode(), token.encode(errors="replace"))


def _origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


def same_origin(request: Request) -> None:
    """Refuse a state-changing request whose ``Origin`` (or ``Referer``) is another origin.

    Requests without either header (scripts, the command line) pass: the CSRF token is
    what they need. The app's origin is the one the request was sent to (scheme and
    ``Host``; behind a reverse proxy, its ``X-Forwarded-Proto`` and ``Host``).
    """
    if request.method not in UNSAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return
        origin = _origin_of(referer)
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin.lower() != own.lower():
        raise CrossOriginError(origin[:100])


class StrictJSONRoute(APIRoute):
    """An API route whose JSON body must parse with orjson before FastAPI reads it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the strict parse (the body is read once, cached)."""
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in UNSAFE_METHODS:
                body = await request.body()
                if body:
                    try:
                        orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        return JSONResponse(
                            {"detail": f"the request body is not valid JSON: {exc}"},
                            status_code=422,
                        )
            return await handler(request)

        return strict


def _location(loc: Sequence[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else str(part)[:_MAX_LOC] for part in loc]


def validation_errors(exc: RequestValidationError) -> list[dict[str, object]]:
    """Return the errors with their place, message and type only (never the input)."""
    return [
        {
            "loc": _location(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]


def _sentence(error: Mapping[str, Any]) -> str:
    loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    name = str(loc[-1]) if loc else "the form"
    label = FIELD_LABELS.get(name, name.replace("_", " ").capitalize())[:_MAX_LOC]
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    if kind == "string_too_long":
        return f"{label}: at most {context.get('max_length')} characters"
    if kind == "missing":
        return f"{label}: required"
    return f"{label}: {error.get('msg', 'not accepted')}"


def human_errors(exc: RequestValidationError) -> str:
    """Return the errors as one sentence for a page ("Password: at most 200 characters")."""
    return "; ".join(dict.fromkeys(_sentence(error) for error in exc.errors()))


async def validation_error_json(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """Answer the API's 422: ``{"detail": [{"loc", "msg", "type"}, ...]}``, no input."""
    return JSONResponse({"detail": validation_errors(exc)}, status_code=422)
