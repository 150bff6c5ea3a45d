"""Push the provisioning tree to a running Grafana through its HTTP API (``dashboards push``).

Talks to Grafana with grafana-client (``grafana_client``), the maintained fork of the
abandoned grafana-api package. ``push_tree(OUT, url, token)`` reads and checks the tree
``envmon dashboards generate`` writes (``dashboards.provisioning``), then, as a service
account token (sent as a bearer token) allows:

* creates the provider's folder (its ``folderUid`` and ``folder`` title) if it is missing;
* creates each data source that is missing (by uid) and updates one whose non-secret
  fields differ. Grafana never gives secure values back, so they are sent when a data
  source is created, when Grafana says a secure field is not set, or when the caller asks
  (``update_secrets``); otherwise they are left as Grafana has them;
* saves each dashboard (``POST /api/dashboards/db``, ``overwrite``, ``folderUid``) whose
  model or folder differs from what Grafana has, ignoring the fields Grafana adds
  (``GRAFANA_ADDED``).

So a second push sends no write request at all. Values in the data source file may say
``$__env{NAME}``, ``${NAME}`` or ``$NAME`` (``$$`` is a ``$``), as Grafana's provisioning
does; every variable must be set, and the whole tree is checked before the first request.
Nothing is ever deleted.

DashboardPushError
 ├── PushInputError   the tree, an environment variable, the URL or the token cannot be
 │                    used: nothing was sent
 └── GrafanaError     Grafana refused a request or could not be reached; ``done`` lists
                      what this push had already changed

Messages name the file or the item and, for Grafana's answers, its status and its own
``message``, on one bounded line; they never hold the token, a secure value or a whole input.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

import niquests.exceptions  # grafana-client's HTTP library: it lets connection errors through
import yaml
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException, GrafanaTimeoutError

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

DATASOURCES_FILE: Final = Path("provisioning") / "datasources" / "envmon.yaml"
PROVIDER_FILE: Final = Path("provisioning") / "dashboards" / "envmon.yaml"
DASHBOARDS_DIR: Final = Path("dashboards")
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_TOKEN_ENV: Final = "GRAFANA_TOKEN"  # noqa: S105 - the name of a variable
#: Fields Grafana sets in a dashboard model it stores, whatever was sent.
GRAFANA_ADDED: Final = frozenset({"id", "version"})
#: The version message of every dashboard save (shown in Grafana's version history).
SAVE_MESSAGE: Final = "envmon dashboards push"
#: The longest piece of a Grafana answer quoted in a message.
MAX_QUOTE: Final = 200

Kind = Literal["folder", "datasource", "dashboard"]
Outcome = Literal["created", "updated", "unchanged"]

_UID: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")  # Grafana's short uid: at most 40 of these
#: ``$$`` (a literal ``$``), ``$__provider{arg}``, ``${NAME}`` or ``$NAME`` (os.ExpandEnv's).
_REFERENCE: Final = re.compile(
    r"\$\$|\$__(?P<provider>\w+)\{(?P<arg>[^}]*)\}|\$\{(?P<braced>[A-Za-z0-9_]+)\}"
    r"|\$(?P<bare>[A-Za-z0-9_]+)"
)
#: Fields of a data source that Grafana's API takes, with the value it gives an absent one.
_DATASOURCE_DEFAULTS: Final[Mapping[str, object]] = {
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
_DATASOURCE_REQUIRED: Final = ("name", "uid", "type")
_DATASOURCE_BOOLS: Final = frozenset({"basicAuth", "withCredentials", "isDefault"})
#: Provisioning-only fields, not sent: the token decides the organisation, Grafana keeps its
#: own version, and the API cannot make a data source read-only (``editable: false``).
_PROVISIONING_ONLY: Final = frozenset({"orgId", "version", "editable"})
_SECURE: Final = "secureJsonData"
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_ERRNO: Final = re.compile(r"\[Errno -?\d+\] ([^')\]]+)")


class DashboardPushError(EnvmonError):
    """A push that could not be done; the message says which file or item, and why."""


class PushInputError(DashboardPushError):
    """The tree, an environment variable, the URL or the token cannot be used: nothing sent."""


class GrafanaError(DashboardPushError):
    """Grafana refused a request or could not be reached; ``done`` is what had changed."""

    def __init__(self, message: str, done: tuple[PushItem, ...] = ()) -> None:
        super().__init__(message)
        self.done = done


@dataclass(frozen=True, slots=True)
class PushItem:
    """What the push did with one folder, data source or dashboard."""

    kind: Kind
    uid: str
    title: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PushReport:
    """Every item of a push and what was done with it, Grafana's version, when (UTC)."""

    url: str
    grafana_version: str
    items: tuple[PushItem, ...]
    finished_at: datetime

    @property
    def changed(self) -> bool:
        """Whether the push created or updated anything."""
        return any(item.outcome != "unchanged" for item in self.items)

    def count(self, outcome: Outcome) -> int:
        """Return how many items had ``outcome``."""
        return sum(item.outcome == outcome for item in self.items)


@dataclass(frozen=True, slots=True)
class DataSource:
    """A data source as the API takes it: expanded fields, and its secure values apart."""

    uid: str
    name: str
    fields: dict[str, Any]
    secrets: dict[str, str]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A dashboard model as it is sent (without ``id`` and ``version``), and its file."""

    uid: str
    title: str
    model: dict[str, Any]
    file: str


@dataclass(frozen=True, slots=True)
class PushTree:
    """The checked tree: folder, data sources, dashboards; the secrets to keep out of text."""

    folder_uid: str
    folder_title: str
    datasources: tuple[DataSource, ...]
    dashboards: tuple[Dashboard, ...]
    secrets: frozenset[str] = field(default_factory=frozenset)


def push_tree(
    out: Path,
    url: str,
    token: str,
    *,
    env: Mapping[str, str] = os.environ,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    update_secrets: bool = False,
) -> PushReport:
    """Bring the Grafana at ``url`` in line with the tree under ``out``; report each item.

    ``env`` (default: the process environment) expands the data source file's variables;
    ``update_secrets`` sends every secure value again. Raises ``PushInputError`` before any
    request when the tree, a variable, ``url`` or ``token`` cannot be used, and
    ``GrafanaError`` when Grafana refuses or cannot be reached.
    """
    token = token.strip()
    if not token:
        raise PushInputError("no Grafana token: give a service account token")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise PushInputError("the Grafana token holds spaces or control characters")
    if timeout_s <= 0:
        raise PushInputError(f"the timeout must be positive, not {timeout_s}")
    target = _Target.parse(url)
    tree = read_tree(out, env)
    secrets = tree.secrets | {token}
    grafana = _Grafana(target, token, timeout_s, redact=lambda text: _redact(text, secrets))
    done: list[PushItem] = []
    try:
        health = grafana.call(f"Grafana at {target.display}", grafana.api.client.GET, "/health")
        assert health is not None
        version = str(health.get("version") or "unknown")
        done.append(_push_folder(grafana, tree))
        for source in tree.datasources:
            done.append(_push_datasource(grafana, source, update_secrets))
        for dashboard in tree.dashboards:
            done.append(_push_dashboard(grafana, tree, dashboard))
    except GrafanaError as exc:
        raise GrafanaError(str(exc), tuple(done)) from None
    finally:
        grafana.close()
    for item in done:
        if item.outcome != "unchanged":
            logger.info("grafana %s %s %s %s", target.display, item.kind, item.uid, item.outcome)
    return PushReport(target.display, version, tuple(done), utcnow())


def read_tree(out: Path, env: Mapping[str, str]) -> PushTree:
    """Read and check the tree under ``out``, expanding the data sources' variables."""
    if not out.is_dir():
        raise PushInputError(f"{out}: no such directory (write it with dashboards generate)")
    folder_uid, folder_title = _read_provider(out / PROVIDER_FILE)
    datasources, secrets = _read_datasources(out / DATASOURCES_FILE, env)
    return PushTree(
        folder_uid=folder_uid,
        folder_title=folder_title,
        datasources=datasources,
        dashboards=_read_dashboards(out / DASHBOARDS_DIR),
        secrets=frozenset(secrets),
    )


def expand(text: str, env: Mapping[str, str], *, where: str) -> tuple[str, list[str]]:
    """Expand ``$__env{NAME}``, ``${NAME}``, ``$NAME`` and ``$$`` as Grafana's provisioning.

    Returns the text and the values put in. A variable that is not set, and the
    ``$__file{}``/``$__vault{}`` providers, raise ``PushInputError`` naming ``where`` and the
    variable (never a value). Unlike Grafana, a value put in is not expanded again.
    """
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        provider = match.group("provider")
        if provider is not None and provider != "env":
            raise PushInputError(
                f"{where}: $__{provider}{{…}} is not supported by push; use $__env{{NAME}}"
            )
        name = match.group("arg") if provider else match.group("braced") or match.group("bare")
        value = env.get(name)
        if value is None:
            raise PushInputError(f"{where}: the environment variable {name} is not set")
        used.append(value)
        return value

    return _REFERENCE.sub(replace, text), used


# -- reading the tree ---------------------------------------------------------------------


def _load_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PushInputError(f"{path}: missing (write the tree with dashboards generate)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PushInputError(f"{path}: cannot be read ({type(exc).__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Problem and place only: the snippet PyYAML quotes could hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PushInputError(f"{path}: not valid YAML{where}: {problem}") from None


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise PushInputError(f"{where}: expected a mapping")
    return cast("dict[str, Any]", value)


def _check_version(document: dict[str, Any], path: Path) -> None:
    if document.get("apiVersion") != 1:
        raise PushInputError(f"{path}: apiVersion must be 1")


def _check_uid(value: object, where: str) -> str:
    if not isinstance(value, str) or _UID.fullmatch(value) is None:
        raise PushInputError(
            f"{where}: must be 1 to 40 letters, digits, '-' or '_' (Grafana's rule for uids)"
        )
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PushInputError(f"{where}: must be a non-empty text")
    return value


def _read_provider(path: Path) -> tuple[str, str]:
    document = _mapping(_load_yaml(path), str(path))
    _check_version(document, path)
    providers = document.get("providers")
    if not isinstance(providers, list) or len(providers) != 1:
        raise PushInputError(f"{path}: providers must list exactly one provider")
    provider = _mapping(providers[0], f"{path}: providers[0]")
    if provider.get("type", "file") != "file":
        raise PushInputError(f"{path}: providers[0].type must be file")
    uid = _check_uid(provider.get("folderUid"), f"{path}: providers[0].folderUid")
    title = _text(provider.get("folder"), f"{path}: providers[0].folder")
    return uid, title.strip()


def _read_datasources(
    path: Path, env: Mapping[str, str]
) -> tuple[tuple[DataSource, ...], set[str]]:
    document = _mapping(_load_yaml(path), str(path))
    _check_version(document, path)
    entries = document.get("datasources", [])
    if not isinstance(entries, list):
        raise PushInputError(f"{path}: datasources must be a list")
    found: list[DataSource] = []
    secrets: set[str] = set()
    for number, entry in enumerate(entries):
        where = f"{path}: datasources[{number}]"
        source, used = _datasource(_mapping(entry, where), where, env)
        secrets.update(used)
        for other in found:
            if source.uid == other.uid or source.name == other.name:
                raise PushInputError(f"{where}: uid or name {source.uid!r} given twice")
        found.append(source)
    return tuple(found), secrets


def _datasource(
    entry: dict[str, Any], where: str, env: Mapping[str, str]
) -> tuple[DataSource, set[str]]:
    """Check one data source entry; return it expanded, and the secure values it holds."""
    unknown = set(entry) - set(_DATASOURCE_DEFAULTS) - set(_DATASOURCE_REQUIRED)
    unknown -= _PROVISIONING_ONLY | {_SECURE}
    if unknown:
        raise PushInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    uid = _check_uid(entry.get("uid"), f"{where}.uid")
    where = f"{where} ({uid})"
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _PROVISIONING_ONLY or key == _SECURE:
            continue
        fields[key] = _expanded(value, env, f"{where}.{key}")
    for key in ("name", "type"):
        fields[key] = _text(fields.get(key), f"{where}.{key}")
    fields.setdefault("access", _DATASOURCE_DEFAULTS["access"])
    for key in _DATASOURCE_BOOLS & set(fields):
        fields[key] = _boolean(fields[key], f"{where}.{key}")
    for key in set(fields) - _DATASOURCE_BOOLS - {"jsonData"}:
        if not isinstance(fields[key], str):
            raise PushInputError(f"{where}.{key}: must be a text")
    fields["jsonData"] = _mapping(fields.get("jsonData", {}), f"{where}.jsonData")
    secure = _mapping(entry.get(_SECURE, {}) or {}, f"{where}.{_SECURE}")
    values: dict[str, str] = {}
    used: set[str] = set()
    for key, value in secure.items():
        if not isinstance(value, str):
            raise PushInputError(f"{where}.{_SECURE}.{key}: must be a text")
        values[key], put_in = expand(value, env, where=f"{where}.{_SECURE}.{key}")
        used.update(put_in)
        used.add(values[key])
    return DataSource(uid, fields["name"], fields, values), {text for text in used if text}


def _expanded(value: object, env: Mapping[str, str], where: str) -> object:
    """Expand every text in ``value`` (texts, lists and mappings, keys left alone)."""
    if isinstance(value, str):
        return expand(value, env, where=where)[0]
    if isinstance(value, list):
        return [_expanded(item, env, f"{where}[{n}]") for n, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _expanded(item, env, f"{where}.{key}") for key, item in value.items()}
    return value


def _boolean(value: object, where: str) -> bool:
    """Return a YAML boolean, or a text Go's strconv.ParseBool takes (as after ``$NAME``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _GO_TRUE | _GO_FALSE:
        return value in _GO_TRUE
    raise PushInputError(f"{where}: must be true or false")


def _read_dashboards(folder: Path) -> tuple[Dashboard, ...]:
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise PushInputError(f"{folder}: no dashboards (*.json) to push")
    found: dict[str, Dashboard] = {}
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            place = f"line {exc.lineno} column {exc.colno}"
            raise PushInputError(f"{path}: not valid JSON at {place}: {exc.msg}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PushInputError(f"{path}: cannot be read ({type(exc).__name__})") from None
        model = _mapping(document, str(path))
        uid = _check_uid(model.get("uid"), f"{path}: uid")
        title = _text(model.get("title"), f"{path}: title").strip()
        if uid in found:
            raise PushInputError(f"{path}: uid {uid} is also the uid of {found[uid].file}")
        # Ids and versions belong to one Grafana; Grafana trims titles when it saves.
        sent = {key: value for key, value in model.items() if key not in GRAFANA_ADDED}
        sent["title"] = title
        found[uid] = Dashboard(uid, title, sent, str(path))
    return tuple(found.values())


# -- talking to Grafana -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """Grafana's address, split as grafana_client takes it."""

    protocol: str
    host: str
    port: int | None
    prefix: str
    display: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise PushInputError("the Grafana URL is not a valid URL") from None
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise PushInputError("the Grafana URL must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            raise PushInputError("the Grafana URL must not hold credentials: give a token")
        if parts.query or parts.fragment:
            raise PushInputError("the Grafana URL must not have a query or a fragment")
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"  # grafana_client writes host:port as given
        # grafana_client joins the prefix and "api" without a slash of its own.
        path = parts.path.strip("/")
        prefix = f"{path}/" if path else ""
        display = f"{parts.scheme}://{parts.netloc}/{prefix}".rstrip("/")
        return cls(parts.scheme, host, port, prefix, display)


class _Grafana:
    """grafana_client behind our types: JSON objects back, ``GrafanaError`` on failure."""

    def __init__(
        self, target: _Target, token: str, timeout_s: float, *, redact: Callable[[str], str]
    ) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._redact = redact
        # grafana_client is untyped: its API object is used through ``Any`` here only.
        self.api: Any = GrafanaApi(
            auth=token,  # a text is sent as "Authorization: Bearer <token>"
            host=target.host,
            port=target.port,
            url_path_prefix=target.prefix,
            protocol=target.protocol,
            timeout=timeout_s,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self.api.client.s.close()

    def call(
        self, what: str, request: Callable[..., object], *args: object, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """Run ``request(*args)``; return its JSON object, None for a 404 if ``missing_ok``."""
        try:
            answer = request(*args)
        except GrafanaException as exc:
            if missing_ok and exc.status_code == HTTPStatus.NOT_FOUND:
                return None
            raise self.error(what, self._reason(exc)) from None
        except niquests.exceptions.ConnectionError as exc:
            cause = _ERRNO.search(str(exc))
            reason = cause.group(1).strip() if cause else type(exc).__name__
            raise self.error(what, f"cannot connect to {self._target.display}: {reason}") from None
        except niquests.exceptions.JSONDecodeError:
            raise self.error(what, "Grafana's answer is not JSON (is the URL Grafana's?)") from None
        except niquests.exceptions.RequestException as exc:
            raise self.error(what, f"the request failed: {type(exc).__name__}") from None
        if not isinstance(answer, dict):
            raise self.error(what, "Grafana's answer is not a JSON object (is the URL Grafana's?)")
        return cast("dict[str, Any]", answer)

    def _reason(self, exc: GrafanaException) -> str:
        if isinstance(exc, GrafanaTimeoutError):
            return f"no answer from {self._target.display} within {self._timeout_s:g} s"
        status = int(exc.status_code or 0)
        if not status:
            return f"the request failed: {_quote(str(exc.message))}"
        response = exc.response
        message = response.get("message") if isinstance(response, dict) else None
        if not isinstance(message, str):
            message = response if isinstance(response, str) else json.dumps(response)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "answer"
        hint = {
            HTTPStatus.UNAUTHORIZED.value: " (is the token a valid service account token?)",
            HTTPStatus.FORBIDDEN.value: " (has the token's service account the Admin role?)",
        }.get(status, "")
        return f"Grafana answered {status} {phrase}: {_quote(message) or '(no message)'}{hint}"

    def error(self, what: str, reason: str) -> GrafanaError:
        """Return the error for ``what``: one line, secrets replaced by ``***``."""
        return GrafanaError(self._redact(_one_line(f"{what}: {reason}")))


def _push_folder(grafana: _Grafana, tree: PushTree) -> PushItem:
    what = f"folder {tree.folder_uid} ({tree.folder_title})"
    folder = grafana.api.folder
    current = grafana.call(what, folder.get_folder, tree.folder_uid, missing_ok=True)
    if current is None:
        grafana.call(what, folder.create_folder, tree.folder_title, tree.folder_uid)
        return PushItem("folder", tree.folder_uid, tree.folder_title, "created")
    title = current.get("title")
    detail = "" if title == tree.folder_title else f"named {_quote(str(title))} in Grafana; kept"
    return PushItem("folder", tree.folder_uid, tree.folder_title, "unchanged", detail)


def _push_datasource(grafana: _Grafana, source: DataSource, update_secrets: bool) -> PushItem:
    what = f"data source {source.uid} ({source.name})"
    api = grafana.api.datasource
    current = grafana.call(what, api.get_datasource_by_uid, source.uid, missing_ok=True)
    if current is None:
        payload = {**source.fields, _SECURE: source.secrets} if source.secrets else source.fields
        grafana.call(what, api.create_datasource, payload)
        return PushItem("datasource", source.uid, source.name, "created", _secret_note(source))
    changed = [
        key
        for key in ("name", "type", *_DATASOURCE_DEFAULTS)
        if _value(source.fields, key) != _value(current, key)
    ]
    flags = current.get("secureJsonFields")
    have = {key for key, on in flags.items() if on} if isinstance(flags, dict) else set()
    missing = sorted(set(source.secrets) - have)
    resend = sorted(source.secrets) if update_secrets else missing
    if not changed and not resend:
        return PushItem("datasource", source.uid, source.name, "unchanged")
    if current.get("readOnly"):
        raise grafana.error(what, "Grafana provisions it from files, so the API cannot change it")
    payload = dict(source.fields)
    if resend:
        payload[_SECURE] = {key: source.secrets[key] for key in resend}
    grafana.call(what, api.update_datasource_by_uid, source.uid, payload)
    notes = [f"changed: {', '.join(changed)}"] if changed else []
    if resend:
        notes.append(f"secure field(s) set: {', '.join(resend)}")
    return PushItem("datasource", source.uid, source.name, "updated", "; ".join(notes))


def _push_dashboard(grafana: _Grafana, tree: PushTree, dashboard: Dashboard) -> PushItem:
    what = f"dashboard {dashboard.uid} ({dashboard.title})"
    api = grafana.api.dashboard
    current = grafana.call(what, api.get_dashboard, dashboard.uid, missing_ok=True)
    detail = ""
    if current is not None:
        model, meta = current.get("dashboard"), current.get("meta")
        if not isinstance(model, dict) or not isinstance(meta, dict):
            raise grafana.error(what, "Grafana's answer has no dashboard and meta objects")
        changed = _changed_keys(dashboard.model, model)
        folder_now = meta.get("folderUid") or ""
        if not changed and folder_now == tree.folder_uid:
            return PushItem("dashboard", dashboard.uid, dashboard.title, "unchanged")
        if meta.get("provisioned"):
            raise grafana.error(
                what, "Grafana provisions it from files, so the API cannot change it"
            )
        notes = [f"changed: {', '.join(changed)}"] if changed else []
        if folder_now != tree.folder_uid:
            notes.append(f"moved from folder {_quote(str(folder_now)) or '(General)'}")
        detail = "; ".join(notes)
    body = {
        "dashboard": dashboard.model,
        "folderUid": tree.folder_uid,
        "overwrite": True,
        "message": SAVE_MESSAGE,
    }
    saved = grafana.call(what, api.update_dashboard, body)
    version = saved.get("version") if saved is not None else None
    if version is not None:
        detail = "; ".join(part for part in (detail, f"version {version}") if part)
    outcome: Outcome = "created" if current is None else "updated"
    return PushItem("dashboard", dashboard.uid, dashboard.title, outcome, detail)


# -- small helpers ------------------------------------------------------------------------


def _value(source: Mapping[str, Any], key: str) -> object:
    """Return a data source field, or the value Grafana gives it when absent."""
    value = source.get(key)
    return _DATASOURCE_DEFAULTS.get(key) if value is None else value


def _changed_keys(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Return the top-level keys whose values differ, ignoring what Grafana adds."""
    keys = (set(ours) | set(theirs)) - GRAFANA_ADDED
    return sorted(key for key in keys if ours.get(key) != theirs.get(key))


def _secret_note(source: DataSource) -> str:
    return f"secure field(s) set: {', '.join(sorted(source.secrets))}" if source.secrets else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quote(text: str) -> str:
    """One line of ``text``, at most ``MAX_QUOTE`` characters."""
    line = _one_line(text)
    return line if len(line) <= MAX_QUOTE else line[: MAX_QUOTE - 1] + "…"


def _redact(text: str, secrets: frozenset[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
