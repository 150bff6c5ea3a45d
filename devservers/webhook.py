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

from devservers.http import LocalHttpServer
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


class WebhookServer(LocalHttpServer):
    """An HTTP receiver that records requests and answers scripted statuses (thread-safe)."""

    name = "the webhook server"

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__()
        self._clock = clock
        self._lock = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._script: deque[int] = deque()

    def respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """Record the request; answer its scripted status (200 unless scripted)."""
        status = self._record(method, path, headers, body)
        payload = b'{"ok": true}' if status < 400 else b'{"ok": false}'
        return status, "application/json", payload

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
