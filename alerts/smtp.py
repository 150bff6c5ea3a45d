"""An embedded SMTP server that keeps what it receives (``envmon demo`` and the tests).

``EmbeddedSmtpServer`` runs aiosmtpd in a thread of its own on 127.0.0.1 (a free port by
default), parses every message it accepts into a ``ReceivedMail`` (envelope, subject,
plain-text body, arrival time in UTC) and can be told, at any time, to answer every
message with an SMTP error instead (``fail_with(451)``): an unavailable relay. With
``accept_logins`` it offers AUTH without TLS and takes any credentials, so URLs written
for a real relay (``mailto://user:${SMTP_PASSWORD}@…``) work against it; the user name is
kept, the password never.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Final, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
#: The reply text sent with ``fail_with(code)`` when none is given.
DEFAULT_FAILURE_TEXT: Final = {
    421: "4.3.2 Service not available",
    450: "4.2.0 Mailbox unavailable",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.7.1 Message rejected",
    552: "5.3.4 Message too big",
    554: "5.6.0 Transaction failed",
}
_READY_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the server accepted."""

    mail_from: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    received_at: datetime
    login: str | None = None
    message_id: str = ""


class _LoginDataNotice(logging.Filter):
    """Drops aiosmtpd 1.4's notice that its own ``Session.login_data`` is deprecated.

    aiosmtpd logs it (as a warning, on every successful AUTH) from its own code; nothing
    a caller does avoids it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_LOGIN_NOTICE_FILTER: Final = _LoginDataNotice()


class _Handler:
    """aiosmtpd handler: answers DATA, keeps what it accepts."""

    def __init__(self, server: EmbeddedSmtpServer) -> None:
        self._server = server

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return self._server._accept(session, envelope)


class _Controller(Controller):
    """aiosmtpd's controller on a socket bound beforehand (so port 0 gives a known port)."""

    def __init__(
        self,
        handler: _Handler,
        sock: socket.socket,
        *,
        authenticator: Callable[[SMTP, Session, Envelope, str, object], AuthResult] | None,
    ) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(
            handler,
            hostname=host,
            port=port,
            ready_timeout=_READY_TIMEOUT_S,
            authenticator=authenticator,
            # AUTH without TLS is what a stand-in relay on 127.0.0.1 needs; aiosmtpd warns
            # only when AUTH is *required* without TLS, which it never is here.
            auth_require_tls=authenticator is None,
        )

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    """Accept every AUTH (a stand-in relay); keep the user name only."""
    login = auth_data.login if isinstance(auth_data, LoginPassword) else None
    user = login.decode("utf-8", "replace") if isinstance(login, bytes) else None
    return AuthResult(success=True, auth_data=user)


class EmbeddedSmtpServer:
    """A local SMTP server that keeps the messages it accepts (thread-safe)."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        on_message: Callable[[ReceivedMail], None] | None = None,
        accept_logins: bool = False,
        fail_code: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._on_message = on_message
        self._accept_logins = accept_logins
        self._clock = clock
        self._lock = threading.Condition()
        self._messages: list[ReceivedMail] = []
        self._refused = 0
        self._failure: tuple[int, str] | None = None
        self._ids = itertools.count(1)
        self._controller: _Controller | None = None
        self._port: int | None = None
        if fail_code is not None:
            self.fail_with(fail_code)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Bind and start serving (returns once the server answers)."""
        if self._controller is not None:
            raise RuntimeError("the SMTP server is already running")
        sock = socket.create_server((self.host, self._requested_port))
        if self._accept_logins:
            logging.getLogger("mail.log").addFilter(_LOGIN_NOTICE_FILTER)
        authenticator = _accept_any_login if self._accept_logins else None
        controller = _Controller(_Handler(self), sock, authenticator=authenticator)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        self._port = int(sock.getsockname()[1])
        logger.info("embedded SMTP server listening on %s:%d", self.host, self._port)

    def stop(self) -> None:
        """Stop serving and release the port (a second call does nothing)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
            logger.info("embedded SMTP server on %s:%s stopped", self.host, self._port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the SMTP server has not been started")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._controller is not None

    # --- behaviour ---------------------------------------------------------------------

    def fail_with(self, code: int | None, text: str | None = None) -> None:
        """Answer every message with SMTP ``code`` from now on (None: accept again)."""
        with self._lock:
            if code is None:
                self._failure = None
                return
            if not 400 <= code <= 599:
                raise ValueError("an SMTP failure code is between 400 and 599")
            self._failure = (code, text or DEFAULT_FAILURE_TEXT.get(code, "Refused"))

    @property
    def failure_code(self) -> int | None:
        """The code every message is answered with now, or None when accepting."""
        with self._lock:
            return self._failure[0] if self._failure is not None else None

    # --- what was received -------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        """A copy of the messages accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def refused(self) -> int:
        """How many messages were answered with the failure code."""
        with self._lock:
            return self._refused

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()
            self._refused = 0

    def wait_for(self, count: int, timeout_s: float) -> list[ReceivedMail]:
        """Block until at least ``count`` messages arrived (or ``timeout_s``); return them."""
        with self._lock:
            self._lock.wait_for(lambda: len(self._messages) >= count, timeout_s)
            return list(self._messages)

    def _accept(self, session: Session, envelope: Envelope) -> str:
        """Answer one DATA: keep the message, or refuse it while failing."""
        with self._lock:
            failure = self._failure
            if failure is not None:
                self._refused += 1
        if failure is not None:
            code, text = failure
            return f"{code} {text}"
        message = BytesParser(policy=policy.default).parsebytes(_content(envelope))
        queue_id = f"{next(self._ids):08X}"
        login = session.auth_data if isinstance(session.auth_data, str) else None
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            subject=str(message.get("Subject", "")),
            body=_body_text(message),
            received_at=self._clock(),
            login=login,
            message_id=str(message.get("Message-ID", "")),
        )
        with self._lock:
            self._messages.append(mail)
            self._lock.notify_all()
        if self._on_message is not None:
            try:
                self._on_message(mail)
            except Exception:  # the sender's mail was taken; a broken callback is ours
                logger.exception("the embedded SMTP server's message callback failed")
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _content(envelope: Envelope) -> bytes:
    """Return the message's bytes (aiosmtpd keeps bytes unless told to decode)."""
    content = envelope.original_content or envelope.content or b""
    return content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content


def _body_text(message: EmailMessage) -> str:
    """Return the plain-text body (else the HTML one) with Unix line ends, trailing ones cut."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = str(part.get_content())
    return content.replace("\r\n", "\n").rstrip("\n")
