"""A local HTTP server for the tests' fakes: 127.0.0.1, a port of its own, a thread of its own.

The standard library's threading HTTP server, serving in a thread so that it answers while
a test's event loop (or a synchronous ``asyncio.run`` inside the code under test) is busy.
A subclass says what to answer in ``respond``; binding port 0 leaves no window between
picking a free port and taking it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devservers._common import StartStop


class LocalHttpServer(StartStop):
    """Serves ``respond`` on 127.0.0.1 until ``stop`` (also a context manager)."""

    #: Named in the error when a test asks for the port before ``start``.
    name = "the local HTTP server"

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """Return the status, content type and body of the answer to one request."""
        raise NotImplementedError

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, content_type, payload = owner.respond(
                    self.command, self.path, dict(self.headers), body
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout tests): nobody to answer

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

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

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._httpd is not None, f"{self.name} has not been started"
        return int(self._httpd.server_address[1])
