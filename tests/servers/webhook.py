"""A real HTTP webhook receiver on 127.0.0.1 for the alert delivery tests.

``WebhookServer`` runs the standard library's threading HTTP server in a thread of its own
(so it answers while a test's event loop, or a synchronous ``asyncio.run`` inside the code
under test, is busy), records every request and answers 200, or a scripted status for the
next N requests (``answer(503, times=2)``: unavailable twice, then fine again).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from envmon.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request the receiver answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    received_at: datetime

    @property
    def json(self) -> object:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class WebhookServer:
    """An HTTP receiver that records requests and answers scripted statuses (thread-safe)."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._script: deque[int] = deque()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = owner._record(self.command, self.path, dict(self.headers), body)
                payload = b'{"ok": true}' if status < 400 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the receiver listens on."""
        assert self._httpd is not None, "the webhook server has not been started"
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/hook", scheme: str = "json") -> str:
        """Return an apprise URL for this receiver (``json://127.0.0.1:PORT/hook``)."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def answer(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (after any scripted before)."""
        with self._lock:
            self._script.extend([status] * times)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout_s: float) -> list[ReceivedRequest]:
        """Block until ``count`` requests arrived (or ``timeout_s``); return them."""
        with self._lock:
            self._lock.wait_for(lambda: len(self._requests) >= count, timeout_s)
            return list(self._requests)

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = self._script.popleft() if self._script else 200
            self._requests.append(
                ReceivedRequest(method, path, headers, body, status, self._clock())
            )
            self._lock.notify_all()
            return status
