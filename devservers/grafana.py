"""A fake of Grafana's HTTP API on 127.0.0.1 for the push tests (no Grafana may run here).

``FakeGrafana(token)`` serves, in a thread of its own, the endpoints ``dashboards push``
uses, answering as Grafana 11's HTTP API documentation says: ``GET /api/health`` (no
token needed), ``GET /api/folders/:uid``, ``POST /api/folders``,
``GET|PUT /api/datasources/uid/:uid``, ``POST /api/datasources``,
``GET /api/dashboards/uid/:uid`` and ``POST /api/dashboards/db`` (``overwrite``,
versions, ``folderUid``, 412 ``version-mismatch``/``name-exists``, provisioned dashboards
refused). Every other call needs ``Authorization: Bearer <token>`` (401 otherwise).
Errors carry Grafana's ``{"message": ...}`` body. Secure values are kept apart from the
data source JSON, which shows only ``secureJsonFields``, as Grafana does.

It records every request, and ``fail(...)`` / ``hang(...)`` script the next answers to
matching requests (a status and body of any kind, or a delay) ahead of everything else.
The tests change its state as a Grafana user would (``edit_dashboard``, ``seed_dashboard``).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from devservers.http import LocalHttpServer
from envmon.timeutil import format_ts, utcnow

DEFAULT_VERSION: Final = "11.6.0"
_UID: Final = re.compile(r"[A-Za-z0-9_-]*")
_MAX_UID: Final = 40
_DATASOURCE_FIELDS: Final[dict[str, object]] = {
    "access": "proxy",
    "url": "",
    "user": "",
    "database": "",
    "basicAuth": False,
    "basicAuthUser": "",
    "withCredentials": False,
    "isDefault": False,
    "jsonData": {},
}
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GrafanaRequest:
    """One request the fake answered, and the status it answered with."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    received_at: datetime

    @property
    def json(self) -> Any:  # noqa: ANN401 - a JSON body of any shape
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(slots=True)
class _Script:
    """A scripted answer: ``status`` None answers as usual, after ``delay_s``."""

    status: int | None
    body: bytes
    content_type: str
    method: str | None
    path: str | None
    delay_s: float
    times: int

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass(slots=True)
class StoredDashboard:
    """A dashboard as the fake keeps it: the model (with id, uid, version) and its place."""

    model: JsonObject
    folder_uid: str
    provisioned: bool
    created: str
    updated: str


class _Answer(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a route to answer ``status`` with a Grafana error body."""

    def __init__(
        self, status: int, message: str, *, kind: str | None = None, message_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: JsonObject = {"message": message}
        if kind is not None:  # Grafana's "status": the reason of a 412 (version-mismatch, ...)
            self.body["status"] = kind
        if message_id is not None:  # errors of Grafana's errutil carry an id and the status
            self.body.update(messageId=message_id, statusCode=status, traceID="")


class FakeGrafana(LocalHttpServer):
    """Grafana's HTTP API for folders, data sources and dashboards, in memory (thread-safe)."""

    name = "the fake Grafana"

    def __init__(
        self,
        token: str,
        *,
        version: str = DEFAULT_VERSION,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__()
        self.token = token
        self.version = version
        self._clock = clock
        self._lock = threading.RLock()
        self._requests: list[GrafanaRequest] = []
        self._scripts: list[_Script] = []
        self._next_id = 1
        self.folders: dict[str, JsonObject] = {}
        self.datasources: dict[str, JsonObject] = {}
        self.secure_values: dict[str, dict[str, str]] = {}
        self.dashboards: dict[str, StoredDashboard] = {}

    @property
    def url(self) -> str:
        """Grafana's root URL (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.port}"

    # -- what tests look at and script ----------------------------------------------------

    @property
    def requests(self) -> list[GrafanaRequest]:
        """A copy of the requests answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def writes(self) -> list[GrafanaRequest]:
        """The requests that may change something (POST, PUT, PATCH, DELETE)."""
        return [request for request in self.requests if request.method in WRITE_METHODS]

    def clear_requests(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self._requests.clear()

    def fail(
        self,
        status: int,
        *,
        message: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``.

        The body is Grafana's ``{"message": message}`` unless ``body`` gives the raw bytes.
        ``path`` matches as a prefix of the path (``/api/dashboards/db``).
        """
        if body is None:
            body = json.dumps({"message": message or "error"}).encode()
        self._script(_Script(status, body, content_type, method, path, 0.0, times))

    def hang(
        self, seconds: float, *, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """Wait ``seconds`` before answering the next ``times`` matching requests."""
        self._script(_Script(None, b"", "", method, path, seconds, times))

    def edit_dashboard(self, uid: str, **changes: object) -> None:
        """Change a stored dashboard as a user saving it in Grafana would (version + 1)."""
        with self._lock:
            stored = self.dashboards[uid]
            stored.model.update(copy.deepcopy(changes))
            stored.model["version"] = int(stored.model["version"]) + 1
            stored.updated = format_ts(self._clock())

    def move_dashboard(self, uid: str, folder_uid: str) -> None:
        """Move a stored dashboard to another folder ("" for General)."""
        with self._lock:
            self.dashboards[uid].folder_uid = folder_uid
            self.dashboards[uid].model["version"] = int(self.dashboards[uid].model["version"]) + 1

    def seed_dashboard(
        self, model: JsonObject, *, folder_uid: str = "", provisioned: bool = False
    ) -> None:
        """Store a dashboard as if Grafana had it already (from a file provider, say)."""
        with self._lock:
            stored = {**copy.deepcopy(model), "id": self._new_id(), "version": 1}
            now = format_ts(self._clock())
            self.dashboards[model["uid"]] = StoredDashboard(
                stored, folder_uid, provisioned, now, now
            )

    # -- the HTTP side --------------------------------------------------------------------

    def _script(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    def _scripted(self, method: str, path: str) -> _Script | None:
        with self._lock:
            for script in self._scripts:
                if script.matches(method, path):
                    script.times -= 1
                    if script.times <= 0:
                        self._scripts.remove(script)
                    return script
            return None

    def respond(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """Answer one request: a scripted answer first, else as Grafana would."""
        parts = urlsplit(target)
        path = parts.path
        script = self._scripted(method, path)
        if script is not None and script.delay_s:
            time.sleep(script.delay_s)
        if script is not None and script.status is not None:
            status, content_type, payload = script.status, script.content_type, script.body
        else:
            try:
                status, answer = self._route(method, path, headers, body)
            except _Answer as answer_error:
                status, answer = answer_error.status, answer_error.body
            content_type, payload = "application/json", json.dumps(answer).encode()
        with self._lock:
            self._requests.append(
                GrafanaRequest(method, path, parts.query, headers, body, status, self._clock())
            )
        return status, content_type, payload

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return 200, {"commit": "fake", "database": "ok", "version": self.version}
        authorization = headers.get("Authorization")
        if authorization is None:
            raise _Answer(401, "Unauthorized")
        if authorization != f"Bearer {self.token}":
            raise _Answer(401, "Invalid API key", message_id="api-key.invalid")
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/api/folders/(?P<uid>[^/]+)", self._get_folder),
            ("POST", r"/api/folders", self._create_folder),
            ("GET", r"/api/datasources/uid/(?P<uid>[^/]+)", self._get_datasource),
            ("PUT", r"/api/datasources/uid/(?P<uid>[^/]+)", self._update_datasource),
            ("POST", r"/api/datasources", self._create_datasource),
            ("GET", r"/api/dashboards/uid/(?P<uid>[^/]+)", self._get_dashboard),
            ("POST", r"/api/dashboards/db", self._save_dashboard),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match is not None and verb == method:
                arguments = match.groupdict()
                if method in WRITE_METHODS:
                    arguments["payload"] = _json_object(body)
                with self._lock:
                    return handler(**arguments)
        raise _Answer(404, "Not found")

    # -- folders --------------------------------------------------------------------------

    def _get_folder(self, uid: str) -> tuple[int, Any]:
        folder = self.folders.get(uid)
        if folder is None:
            raise _Answer(404, "folder not found", message_id="folder.notFound")
        return 200, folder

    def _create_folder(self, payload: JsonObject) -> tuple[int, Any]:
        title = payload.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _Answer(400, "folder title cannot be empty")
        uid = payload.get("uid") or f"f{self._next_id}"
        _check_uid(uid)
        if uid in self.folders:
            raise _Answer(409, "a folder with the same uid already exists")
        if any(folder["title"] == title for folder in self.folders.values()):
            raise _Answer(409, "a folder with that name already exists")
        now = format_ts(self._clock())
        folder = {
            "id": self._new_id(),
            "uid": uid,
            "orgId": 1,
            "title": title,
            "url": f"/dashboards/f/{uid}/{_slug(title)}",
            "hasAcl": False,
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canDelete": True,
            "createdBy": "envmon-push",
            "created": now,
            "updatedBy": "envmon-push",
            "updated": now,
            "version": 1,
        }
        self.folders[uid] = folder
        return 200, folder

    # -- data sources ---------------------------------------------------------------------

    def _get_datasource(self, uid: str) -> tuple[int, Any]:
        source = self.datasources.get(uid)
        if source is None:
            raise _Answer(404, "Data source not found")
        return 200, copy.deepcopy(source)

    def _create_datasource(self, payload: JsonObject) -> tuple[int, Any]:
        name, kind = payload.get("name"), payload.get("type")
        if not isinstance(name, str) or not name or not isinstance(kind, str) or not kind:
            raise _Answer(400, "bad request data")
        uid = payload.get("uid") or f"ds{self._next_id}"
        _check_uid(uid)
        if uid in self.datasources:
            raise _Answer(409, "data source with the same uid already exists")
        if any(source["name"] == name for source in self.datasources.values()):
            raise _Answer(409, "data source with the same name already exists")
        source = {"id": self._new_id(), "uid": uid, "orgId": 1, "version": 1, "readOnly": False}
        self.secure_values[uid] = {}
        self._apply_datasource(source, payload)
        self.datasources[uid] = source
        return 200, {
            "datasource": copy.deepcopy(source),
            "id": source["id"],
            "message": "Datasource added",
            "name": name,
        }

    def _update_datasource(self, uid: str, payload: JsonObject) -> tuple[int, Any]:
        source = self.datasources.get(uid)
        if source is None:
            raise _Answer(404, "Data source not found")
        if source["readOnly"]:
            raise _Answer(403, "Cannot update read-only data source")
        name = payload.get("name")
        if not isinstance(name, str) or not name or not payload.get("type"):
            raise _Answer(400, "bad request data")
        if any(s["name"] == name and s["uid"] != uid for s in self.datasources.values()):
            raise _Answer(409, "data source with the same name already exists")
        source["version"] += 1
        self._apply_datasource(source, payload)
        return 200, {
            "datasource": copy.deepcopy(source),
            "id": source["id"],
            "message": "Datasource updated",
            "name": name,
        }

    def _apply_datasource(self, source: JsonObject, payload: JsonObject) -> None:
        """Replace the fields (absent ones get Grafana's zero values); merge secure values."""
        source["name"], source["type"] = payload["name"], payload["type"]
        source["typeLogoUrl"] = f"public/app/plugins/datasource/{payload['type']}/img/logo.svg"
        for key, default in _DATASOURCE_FIELDS.items():
            value = payload.get(key)
            source[key] = copy.deepcopy(default if value is None else value)
        secure = self.secure_values[source["uid"]]
        secure.update(payload.get("secureJsonData") or {})
        source["secureJsonFields"] = dict.fromkeys(secure, True)
        if source["isDefault"]:
            for other in self.datasources.values():
                if other is not source:
                    other["isDefault"] = False

    # -- dashboards -----------------------------------------------------------------------

    def _get_dashboard(self, uid: str) -> tuple[int, Any]:
        stored = self.dashboards.get(uid)
        if stored is None:
            raise _Answer(404, "Dashboard not found")
        folder = self.folders.get(stored.folder_uid)
        model = copy.deepcopy(stored.model)
        slug = _slug(str(model.get("title", "")))
        meta = {
            "type": "db",
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canStar": True,
            "canDelete": True,
            "slug": slug,
            "url": f"/d/{uid}/{slug}",
            "expires": "0001-01-01T00:00:00Z",
            "created": stored.created,
            "updated": stored.updated,
            "updatedBy": "envmon-push",
            "createdBy": "envmon-push",
            "version": model["version"],
            "hasAcl": False,
            "isFolder": False,
            "folderId": folder["id"] if folder else 0,
            "folderUid": stored.folder_uid,
            "folderTitle": folder["title"] if folder else "General",
            "folderUrl": folder["url"] if folder else "",
            "provisioned": stored.provisioned,
            "provisionedExternalId": f"{uid}.json" if stored.provisioned else "",
        }
        return 200, {"dashboard": model, "meta": meta}

    def _save_dashboard(self, payload: JsonObject) -> tuple[int, Any]:
        model = payload.get("dashboard")
        if not isinstance(model, dict):
            raise _Answer(400, "bad request data")
        title = str(model.get("title") or "").strip()
        if not title:
            raise _Answer(400, "Dashboard title cannot be empty")
        folder_uid = payload.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            raise _Answer(400, "folder not found")
        overwrite = payload.get("overwrite") is True
        uid = model.get("uid") or f"d{self._next_id}"
        _check_uid(uid)
        existing = self.dashboards.get(uid)
        now = format_ts(self._clock())
        if existing is not None:
            if existing.provisioned:
                raise _Answer(400, "Cannot save provisioned dashboard")
            if not overwrite:
                if not model.get("id"):
                    raise _Answer(
                        412, "A dashboard with the same uid already exists", kind="name-exists"
                    )
                if model.get("version") != existing.model["version"]:
                    raise _Answer(
                        412,
                        "The dashboard has been changed by someone else",
                        kind="version-mismatch",
                    )
            ident, version, created = (
                existing.model["id"],
                int(existing.model["version"]) + 1,
                existing.created,
            )
        else:
            clash = any(
                d.folder_uid == folder_uid and d.model.get("title") == title
                for d in self.dashboards.values()
            )
            if clash and not overwrite:
                raise _Answer(
                    412,
                    "A dashboard with the same name in the folder already exists",
                    kind="name-exists",
                )
            ident, version, created = self._new_id(), 1, now
        stored = {**copy.deepcopy(model), "id": ident, "uid": uid, "version": version}
        stored["title"] = title
        self.dashboards[uid] = StoredDashboard(stored, folder_uid, False, created, now)
        slug = _slug(title)
        return 200, {
            "id": ident,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
            "folderUid": folder_uid,
        }

    def _new_id(self) -> int:
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            return ident


def _json_object(body: bytes) -> JsonObject:
    try:
        payload = json.loads(body)
    except ValueError:
        raise _Answer(400, "bad request data") from None
    if not isinstance(payload, dict):
        raise _Answer(400, "bad request data")
    return payload


def _check_uid(uid: object) -> None:
    if not isinstance(uid, str) or _UID.fullmatch(uid) is None:
        raise _Answer(400, "uid contains illegal characters")
    if len(uid) > _MAX_UID:
        raise _Answer(400, "uid too long, max 40 characters")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
