"""Delivery: one message through one apprise URL, and what the server answered.

``AppriseNotifier.send`` makes exactly one attempt (the dispatcher retries with back-off)
and returns an ``Outcome`` whose ``detail`` is the server's answer: the SMTP reply to the
message (``SMTP 250 2.0.0 Ok: queued``), the HTTP status (``HTTP 503``) or the network
error (``connection refused``). Apprise itself only says yes or no, so while a send runs a
context variable names its ``_Scope``, and thin probes around ``smtplib.SMTP`` (connect,
starttls, login, sendmail, data) and ``requests``' ``HTTPAdapter.send`` write the answers
into it. Apprise runs each plugin in a worker thread with a copy of the caller's context,
so concurrent sends each see only their own scope; outside a send the probes do nothing.

Apprise URLs carry passwords and tokens. Neither ``detail`` nor any log line holds the URL:
a filter on apprise's logger masks the secrets of the URL being sent (its password, the
tokens its plugin declares private, and its longer path and query parts) in every record
logged during a send, and keeps the records of a validation out of the logs altogether
(apprise's complaints about a malformed token quote the token).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from envmon.config.alerting import PLACEHOLDER_DUMMIES, import_apprise_quietly

import_apprise_quietly()

import apprise  # noqa: E402 - after the quiet import above
import requests  # noqa: E402
import requests.adapters  # noqa: E402

logger = logging.getLogger(__name__)

#: Seconds one send may take, connection included.
DEFAULT_TIMEOUT_S: Final = 20.0
#: Sends at the same time (threads; each waits on its server most of the time).
DEFAULT_WORKERS: Final = 32
#: Extra seconds before the notifier stops waiting for apprise itself.
_GRACE_S: Final = 2.0
#: Longest server reply kept in a detail.
MAX_DETAIL_CHARS: Final = 200
#: Parts of a URL at least this long are treated as secrets in log lines of a send.
_MIN_GUESSED_SECRET: Final = 6
MASK: Final = "***"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
_HTTP_ERROR = re.compile(r"\berror=(\d{3})\b")
_SPACES = re.compile(r"\s+")

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt: accepted or not, and what the server answered."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Message:
    """A notification's words: a title and a plain-text body (which may hold a link)."""

    title: str
    body: str


class Notifier(Protocol):
    """Sends one message through one apprise URL; one call is one attempt."""

    async def send(self, url: str, message: Message) -> Outcome:
        """Send ``message`` through ``url`` and return what happened (never raises for I/O)."""
        ...


class CapturingNotifier:
    """An in-memory notifier for tests and benchmarks: keeps what it is given."""

    def __init__(self, outcome: Outcome | None = None) -> None:
        self.outcome = outcome if outcome is not None else Outcome(True, "captured")
        self.sent: list[tuple[str, Message]] = []

    async def send(self, url: str, message: Message) -> Outcome:
        """Keep ``(url, message)`` and return ``self.outcome``."""
        self.sent.append((url, message))
        return self.outcome

    def messages(self, url: str | None = None) -> list[Message]:
        """Return the messages sent (through ``url`` only, if given), oldest first."""
        return [message for sent_url, message in self.sent if url is None or sent_url == url]


class AppriseNotifier:
    """The real notifier: apprise, one URL per call, with a timeout and the server's reply."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        app_id: str = "envmon",
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        # Synchronous sends in a pool of our own: apprise's shared pool has min(32, CPUs + 4)
        # threads, six on a small machine, which made a burst of pages queue behind each
        # other (100 mails took 2.3 s; with 32 threads, a fraction of that).
        self._asset = apprise.AppriseAsset(
            app_id=app_id, storage_mode=apprise.PersistentStoreMode.MEMORY, async_mode=False
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="envmon-delivery"
        )
        _widen_apprise_pool(workers)
        _install_probes()
        # Load apprise's plugins now (~0.2 s, once per process) rather than in the event
        # loop at the first page.
        apprise.NotificationManager().load_modules()  # type: ignore[no-untyped-call]

    async def send(self, url: str, message: Message) -> Outcome:
        """Send ``message`` through ``url`` once; the detail never holds the URL or a secret."""
        scope = _Scope(guessed_secrets(url))
        token = _SCOPE.set(scope)
        try:
            # A new plugin per call: apprise plugins keep state between sends (throttling,
            # recipients already served), which must not leak from one attempt into another.
            plugin = apprise.Apprise.instantiate(url, asset=self._asset)
            if plugin is None:
                return Outcome(False, scope.mask(f"invalid URL: {_refusal(url, scope.notes())}"))
            scope.add_secrets(_private_values(plugin))
            plugin.retry = 0  # one call, one attempt: the dispatcher retries
            notifier = apprise.Apprise(asset=self._asset)
            notifier.add(plugin)
            send = functools.partial(
                notifier.notify,
                body=message.body,
                title=message.title,
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout_s,
            )
            context = contextvars.copy_context()  # the scope travels with the send
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.timeout_s + _GRACE_S):
                result = await loop.run_in_executor(self._pool, context.run, send)
        except TimeoutError:
            return Outcome(False, f"timed out after {self.timeout_s:g} s")
        finally:
            _SCOPE.reset(token)
        with result:
            outcome = scope.outcome(result, self.timeout_s)
        logger.debug("delivery %s: %s", "accepted" if outcome.ok else "failed", outcome.detail)
        return outcome


def _widen_apprise_pool(workers: int) -> None:
    """Give apprise's shared send pool ``workers`` threads (it makes min(32, CPUs + 4)).

    apprise 2.x runs every send with a deadline in one process-wide pool and offers no
    setting for its size; on a two-CPU machine six threads made a burst of 100 pages take
    two seconds, most of it queued. The pool is created lazily, so a wider one put in
    its place before the first send is the one apprise uses. Without the private names
    (another apprise version) nothing is changed and sends queue as before.
    """
    core = getattr(apprise, "apprise", None)
    lock = getattr(core, "_shared_executor_lock", None)
    if core is None or lock is None or not hasattr(core, "_shared_executor"):
        return
    with lock:
        if core._shared_executor is None:
            core._shared_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="apprise-send"
            )


def validate_url(url: str) -> str | None:
    """Return None if apprise accepts ``url``, else why not (without quoting the URL's parts).

    ``${NAME}`` placeholders are replaced by harmless dummies first (the URL is accepted if
    any of ``PLACEHOLDER_DUMMIES`` makes it acceptable). Nothing is sent and nothing is
    logged: apprise's own complaints end up, masked, in the reason.
    """
    _install_probes()
    if not url.strip():
        return "the URL is empty"
    candidates = (
        [_PLACEHOLDER.sub(dummy, url) for dummy in PLACEHOLDER_DUMMIES]
        if _PLACEHOLDER.search(url)
        else [url]
    )
    first_reason: str | None = None
    for candidate in candidates:
        scope = _Scope(guessed_secrets(candidate, min_length=1), quiet=True)
        token = _SCOPE.set(scope)
        try:
            plugin = apprise.Apprise.instantiate(candidate)
        finally:
            _SCOPE.reset(token)
        if plugin is not None:
            return None
        if first_reason is None:
            first_reason = scope.mask(_refusal(candidate, scope.notes()))
    assert first_reason is not None
    return first_reason


def guessed_secrets(url: str, *, min_length: int = _MIN_GUESSED_SECRET) -> set[str]:
    """Return the parts of an apprise URL that may be secret (for masking, never shown).

    The password always; the user name, a host name without a dot (fixed-host services put
    a token there), path segments, query values and the fragment when at least
    ``min_length`` characters long.
    """
    secrets: set[str] = set()
    try:
        parts = urlsplit(url.strip().replace("/#", "/%23"))
        password, username = parts.password, parts.username
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:  # an unparseable netloc or port: fall back to a split on delimiters
        return {part for part in re.split(r"[/:@?&=#]+", url) if len(part) >= min_length}
    if password:
        secrets.add(unquote(password))
    # urlsplit lowercases ``hostname``; a token standing there must keep its case.
    host = parts.netloc.rpartition("@")[2].partition(":")[0]
    guesses = [unquote(username or ""), parts.fragment]
    if "." not in host and not host.startswith("[") and host.lower() != "localhost":
        guesses.append(unquote(host))
    guesses.extend(unquote(segment) for segment in parts.path.split("/"))
    guesses.extend(value for _, value in parse_qsl(parts.query, keep_blank_values=False))
    secrets.update(guess for guess in guesses if len(guess) >= min_length)
    return secrets


# --- the scope of one send or validation -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    """One answer seen on the wire (or the error instead of one)."""

    ok: bool
    detail: str


@dataclass(slots=True)
class _Scope:
    """What one send (or validation) collects: server replies, apprise's notes, secrets."""

    secrets: set[str]
    quiet: bool = False
    _replies: list[_Reply] = field(default_factory=list)
    _notes: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pattern: re.Pattern[str] | None = None

    def add_secrets(self, values: set[str]) -> None:
        """Mask these too from now on."""
        with self._lock:
            self.secrets |= values
            self._pattern = None

    def mask(self, text: str) -> str:
        """Return ``text`` with every secret (and its URL-encoded form) replaced by ``***``."""
        with self._lock:
            if self._pattern is None:
                forms = {form for s in self.secrets if s for form in (s, quote(s, safe=""))}
                if not forms:
                    return text
                alternatives = "|".join(
                    re.escape(form) for form in sorted(forms, key=len, reverse=True)
                )
                # Whole words only, so a short secret does not eat into other words.
                self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
            pattern = self._pattern
        return pattern.sub(MASK, text)

    def reply(self, ok: bool, detail: str) -> None:
        """Record an answer (a failure equal to the previous one is recorded once)."""
        reply = _Reply(ok, _clip(detail))
        with self._lock:
            if not ok and self._replies and self._replies[-1] == reply:
                return
            self._replies.append(reply)

    def note(self, level: int, message: str) -> None:
        """Keep one of apprise's log messages (already masked)."""
        with self._lock:
            self._notes.append((level, message))

    def notes(self) -> list[tuple[int, str]]:
        """Return apprise's messages logged in this scope."""
        with self._lock:
            return list(self._notes)

    def outcome(self, result: apprise.AppriseResult, timeout_s: float) -> Outcome:
        """Turn apprise's verdict and the replies seen into an ``Outcome``."""
        with self._lock:
            replies = list(self._replies)
        status = result.status
        if status == apprise.AppriseResultStatus.SUCCESS:
            accepted = [reply for reply in replies if reply.ok]
            return Outcome(True, self.mask(accepted[-1].detail if accepted else "accepted"))
        if status == apprise.AppriseResultStatus.TIMEOUT:
            return Outcome(False, f"timed out after {timeout_s:g} s")
        failures = [reply for reply in replies if not reply.ok]
        if failures:
            return Outcome(False, self.mask(failures[0].detail))
        warnings_ = [
            entry.message
            for entry in result.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL", "DEPRECATION WARNING")
        ]
        for message in warnings_:
            match = _HTTP_ERROR.search(message)
            if match is not None:
                return Outcome(False, f"HTTP {match.group(1)}")
        said = f"{replies[-1].detail}; " if replies else ""
        why = _clip(warnings_[0]) if warnings_ else "the service did not accept it"
        return Outcome(False, self.mask(f"{said}{why}"))


_SCOPE: ContextVar[_Scope | None] = ContextVar("envmon_delivery_scope", default=None)


def _clip(text: str) -> str:
    """Return ``text`` on one line, at most ``MAX_DETAIL_CHARS`` long."""
    line = _SPACES.sub(" ", text).strip()
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 1] + "…"


def _private_values(plugin: object) -> set[str]:
    """Return the values of the tokens an apprise plugin declares private."""
    values: set[str] = set()
    tokens = getattr(plugin, "template_tokens", {})
    if not isinstance(tokens, dict):
        return values
    for name, spec in tokens.items():
        if not isinstance(spec, dict) or not spec.get("private"):
            continue
        value = getattr(plugin, str(spec.get("map_to", name)), None)
        items = value if isinstance(value, list | tuple | set) else [value]
        values.update(item for item in items if isinstance(item, str) and item)
    password = getattr(plugin, "password", None)
    if isinstance(password, str) and password:
        values.add(password)
    return values


def _refusal(url: str, notes: list[tuple[int, str]]) -> str:
    """Say why apprise refused a URL, from its log messages (which quote the URL: skipped)."""
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else None
    complaints: list[str] = []
    for level, message in notes:
        if level < logging.WARNING:
            continue
        if message.startswith("Unsupported URL"):
            return "not an apprise URL (expected scheme://…)"
        if message.startswith("Unparseable URL"):
            return f"apprise has no service for {scheme}:// URLs"
        if message.startswith("Unparseable "):
            service = message.removeprefix("Unparseable ").partition(" URL")[0]
            return f"apprise cannot read this {service} URL"
        if message.startswith("Could not load "):
            continue
        complaints.append(_clip(message))
    if complaints:
        return "apprise refused it: " + "; ".join(dict.fromkeys(complaints))
    return f"apprise cannot use this {scheme or 'URL'}{'://' if scheme else ''} URL"


# --- probes: the server's answers, seen from inside apprise's worker threads ---------------


class _AppriseLogGuard(logging.Filter):
    """On apprise's (and urllib3's) logger: masks the scope's secrets; keeps validation quiet."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _SCOPE.get()
        if scope is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's business, not ours
            return True
        masked = scope.mask(message)
        scope.note(record.levelno, masked)
        if scope.quiet:
            return False
        if masked != message:
            record.msg, record.args = masked, None
        return True


_installed = False
_install_lock = threading.Lock()


def _install_probes() -> None:
    """Install the log guard and the SMTP/HTTP probes (once per process)."""
    global _installed  # noqa: PLW0603 - a process-wide, idempotent installation
    with _install_lock:
        if _installed:
            return
        guard = _AppriseLogGuard()
        logging.getLogger(apprise.LOGGER_NAME).addFilter(guard)
        # urllib3 logs each request's path at DEBUG: webhook tokens live there.
        logging.getLogger("urllib3.connectionpool").addFilter(guard)
        smtp = smtplib.SMTP
        smtp.connect = _probe(smtp.connect, _on_connect)  # type: ignore[method-assign]
        smtp.starttls = _probe(smtp.starttls)  # type: ignore[method-assign,assignment]
        smtp.login = _probe(smtp.login)  # type: ignore[method-assign]
        smtp.sendmail = _probe(smtp.sendmail, _on_sendmail)  # type: ignore[method-assign]
        smtp.data = _probe(smtp.data, _on_data)  # type: ignore[method-assign]
        adapter = requests.adapters.HTTPAdapter
        adapter.send = _probe(adapter.send, _on_response)  # type: ignore[method-assign]
        _installed = True


def _probe(
    method: Callable[_P, _R], on_result: Callable[[_Scope, _R], None] | None = None
) -> Callable[_P, _R]:
    """Wrap ``method`` so that, inside a scope, its result or error is recorded there."""

    @functools.wraps(method)
    def probed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        scope = _SCOPE.get()
        if scope is None:
            return method(*args, **kwargs)
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            scope.reply(False, describe_error(exc))
            raise
        if on_result is not None:
            on_result(scope, result)
        return result

    return probed


def _on_connect(scope: _Scope, result: tuple[int, bytes]) -> None:
    code, text = result
    if code != 220:
        scope.reply(False, smtp_detail(code, text))


def _on_data(scope: _Scope, result: tuple[int, bytes]) -> None:
    code, text = result
    scope.reply(code == 250, smtp_detail(code, text))


def _on_sendmail(scope: _Scope, refused: dict[str, tuple[int, bytes]]) -> None:
    for code, text in refused.values():
        scope.reply(False, smtp_detail(code, text))


def _on_response(scope: _Scope, response: requests.Response) -> None:
    scope.reply(response.status_code < 400, f"HTTP {response.status_code}")


def smtp_detail(code: int, text: bytes | str) -> str:
    """Return an SMTP reply as a detail: ``SMTP 250 2.0.0 Ok: queued``."""
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return _clip(f"SMTP {code} {words}")


_NETWORK_ERRORS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host not found"),
    (ssl.SSLError, "TLS error"),
    (ConnectionResetError, "connection reset by the server"),
    (smtplib.SMTPServerDisconnected, "connection closed by the server"),
    (TimeoutError, "timed out"),
    (requests.Timeout, "timed out"),
)


def describe_error(exc: BaseException) -> str:
    """Return a short description of a delivery error that never quotes a URL.

    SMTP errors give the server's code and text; network errors a fixed phrase found
    anywhere in the exception's chain (requests wraps them two levels deep).
    """
    chain = list(_chain(exc))
    for error in chain:
        if isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
            code, text = next(iter(error.recipients.values()))
            return smtp_detail(code, text)
        if isinstance(error, smtplib.SMTPResponseException):
            return smtp_detail(error.smtp_code, error.smtp_error)
    for kind, phrase in _NETWORK_ERRORS:
        if any(isinstance(error, kind) for error in chain):
            return phrase
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"SMTP server: {_clip(str(exc))}"  # "SMTP AUTH extension not supported by server."
    if isinstance(exc, OSError | requests.RequestException):
        return f"connection error ({type(exc).__name__})"
    return f"error ({type(exc).__name__})"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield an exception and the ones behind it (cause, context, wrapped, reason)."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending and len(seen) < 32:
        error = pending.pop(0)
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None)])
        pending.extend(arg for arg in error.args if isinstance(arg, BaseException))
