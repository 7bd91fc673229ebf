"""The loopback adapter: a real HTTP/1.1 server (keep-alive, one thread per connection)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconcile.sandbox.emulator import Sandbox


@dataclass(frozen=True)
class RunningSandbox:
    """Where a served sandbox listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The API base URL, with the /api prefix (paths without it are served too)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api"


@contextmanager
def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningSandbox]:
    """Serve `sandbox` over HTTP in a background thread for the duration of the with block.

    Port 0 picks a free port; read it from the yielded RunningSandbox.
    """
    server = _Server(sandbox, host, port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="tallyfy-sandbox",
        daemon=True,
    )
    thread.start()
    try:
        yield RunningSandbox(host, server.server_address[1])
    finally:
        server.shutdown()
        server.close()
        thread.join()


def serve_forever(sandbox: Sandbox, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve `sandbox` in this thread until KeyboardInterrupt; `ready(url)` runs once listening."""
    server = _Server(sandbox, host, port)
    try:
        ready(RunningSandbox(host, server.server_address[1]).url)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: Sandbox, host: str, port: int) -> None:
        self.sandbox = sandbox
        # Open keep-alive connections would otherwise hold their threads (and the port) after
        # the server stops, so they are tracked and shut down on close.
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def close(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                # OSError: the client already closed it.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-request is normal (timeouts, dropped faults); stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TallyfySandbox/1"
    # Headers and body go out in two writes; with Nagle on, each answer would wait for the
    # client's delayed ACK (about 40 ms) and a benchmark would measure that instead.
    disable_nagle_algorithm = True
    # Buffered, so that the status line, headers and body leave in one write when the handler
    # flushes after each request, rather than in two segments the client must read apart.
    wbufsize = 256 * 1024

    def setup(self) -> None:
        super().setup()
        server = self._sandbox_server()
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        server = self._sandbox_server()
        with server.connections_lock:
            server.connections.discard(self.connection)
        super().finish()

    def _sandbox_server(self) -> _Server:
        assert isinstance(self.server, _Server)
        return self.server

    def parse_request(self) -> bool:
        # Called as soon as the request line has arrived: delays count from here, so the time
        # spent reading headers and answering is part of the latency rather than added to it.
        self.arrived = time.monotonic()
        return super().parse_request()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = dict(self.headers.items())
        answer = self._sandbox_server().sandbox.dispatch(self.command, self.path, headers, body)
        wait = answer.delay - (time.monotonic() - self.arrived)
        if wait > 0:
            time.sleep(wait)
        if answer.drop:
            # Hang up without a status line: the client sees a dropped connection.
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        # The sandbox never prints; its request log is the record of what it saw.
        pass
