"""The QA app's guards at the HTTP edge: body size, strict JSON, errors that echo no input.

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
#: The longest part of an error's location shown (a dict key in a body is the client's).
_MAX_LOC: Final = 64
#: How the pages name the fields of their forms.
FIELD_LABELS: Final = {
    "username": "User id",
    "password": "Password",
    "full_name": "Full name",
    "text": "Comment",
}


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
