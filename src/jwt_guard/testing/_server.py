"""The loopback HTTP server behind :class:`LocalIssuer`: JWKS + discovery, counters, faults."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

from ._faults import BROKEN_JWKS, DEFAULT_DELAY, JWKSFault

__all__ = ["ServingThread"]

_Doc = Callable[[], dict[str, Any]]
_CHUNK = 64 * 1024


class ServingThread:
    """Serves ``server`` (any ``socketserver.TCPServer``) on a daemon thread until :meth:`stop`.

    Unlike ``serve_forever``, which notices ``shutdown()`` only at its next poll (every 0.5 s by
    default), ``stop()`` wakes the loop through a socket pair and returns as soon as it has
    ended: a test that starts and stops a server per case does not wait for the poll.
    """

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self._server = server
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector, self._wake_r:
            selector.register(self._server, selectors.EVENT_READ, data=True)
            selector.register(self._wake_r, selectors.EVENT_READ, data=False)
            while not self._stopping:
                ready = selector.select()
                if self._stopping:
                    break
                if any(key.data for key, _ in ready):
                    # what serve_forever calls when the listening socket is ready
                    self._server._handle_request_noblock()  # type: ignore[attr-defined]
                self._server.service_actions()

    def stop(self, timeout: float = 2.0) -> None:
        """End the loop (no new connection is accepted) and wait for it, up to ``timeout``."""
        self._stopping = True
        with contextlib.suppress(OSError), self._wake_w:
            self._wake_w.send(b"\0")
        self._thread.join(timeout)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, app: _LoopbackServer) -> None:
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup of the host
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients of a fault server hang up mid-response on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def send(self, status: int, body: bytes, content_type: str, *headers: tuple[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _LoopbackServer:
    """Serves ``jwks()`` and ``discovery()`` as JSON on 127.0.0.1, with counters and faults."""

    def __init__(
        self,
        jwks_path: str,
        discovery_path: str,
        jwks: _Doc,
        discovery: _Doc,
        cache_max_age: Callable[[], int | None],
        port: int = 0,
    ) -> None:
        self._docs = {jwks_path: ("jwks", jwks), discovery_path: ("discovery", discovery)}
        self._cache_max_age = cache_max_age
        self._lock = threading.RLock()
        self._counted = threading.Condition(self._lock)  # notified at each request counted
        self._counts: Counter[str] = Counter()
        self._httpd: _HTTPServer | None = None
        self._serving: ServingThread | None = None
        self._port: int | None = port or None
        self._running = False
        self._closing = threading.Event()
        self._fault: JWKSFault | None = None
        self._delay = 0.0
        self._body_size = 0
        self._fault_endpoint: str | None = None
        self._released = threading.Event()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the issuer is not started; call start() or use it as a context")
        return self._port

    # -- lifecycle

    def start(self) -> None:
        with self._lock:
            if not self._running:
                self._running = True
                self._closing = threading.Event()
                self._sync()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._closing.set()
            self._released.set()
            self._sync()

    def _sync(self) -> None:
        listen = self._running and self._fault is not JWKSFault.DOWN
        if listen and self._httpd is None:
            self._httpd = _HTTPServer(self._port or 0, self)
            self._port = self._httpd.server_address[1]
            self._serving = ServingThread(self._httpd, f"jwt_guard-local-issuer-{self._port}")
        elif not listen and self._httpd is not None:
            httpd, serving = self._httpd, self._serving
            self._httpd = self._serving = None
            if serving is not None:
                serving.stop()
            httpd.close_connections()
            httpd.server_close()
        elif self._running and self._port is None:  # DOWN before the first start: get a port
            with _HTTPServer(0, self) as probe:
                self._port = probe.server_address[1]

    # -- faults and counters

    def set_fault(
        self,
        fault: JWKSFault | None,
        delay: float | None,
        body_size: int,
        endpoint: Literal["jwks", "discovery"] | None,
    ) -> None:
        with self._lock:
            self._released.set()  # let requests held by a previous HANG go
            self._released = threading.Event()
            self._fault = fault
            if delay is None:
                delay = DEFAULT_DELAY.get(fault, 0.0) if fault is not None else 0.0
            self._delay = float(delay)
            self._body_size = body_size
            self._fault_endpoint = endpoint
            self._sync()

    def count(self, path: str | None) -> int:
        with self._lock:
            return self._count(path)

    def wait_count(self, count: int, path: str | None, timeout: float) -> int:
        with self._counted:
            self._counted.wait_for(lambda: self._count(path) >= count, timeout)
            return self._count(path)

    def _count(self, path: str | None) -> int:  # under the lock
        if path is None:
            return sum(self._counts.values())
        return self._counts[urlsplit(path).path if "://" in path else path]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # -- request handling (handler threads)

    def handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self._counts[path] += 1
            self._counted.notify_all()
            fault, delay, size = self._fault, self._delay, self._body_size
            released, closing, only = self._released, self._closing, self._fault_endpoint
        route = self._docs.get(path)
        if route is None:
            handler.send(404, b'{"error":"not_found"}', "application/json")
            return
        kind, document = route
        if only is not None and only != kind:
            fault = None
        if fault is JWKSFault.HANG:
            released.wait(delay)
        elif fault is JWKSFault.SLOW:
            closing.wait(delay)
        if closing.is_set():
            handler.close_connection = True
            return
        try:
            self._respond(handler, kind, document, fault, size)
        except OSError:  # the client hung up, as fault tests do on purpose
            handler.close_connection = True

    def _respond(
        self, handler: _Handler, kind: str, document: _Doc, fault: JWKSFault | None, size: int
    ) -> None:
        max_age = self._cache_max_age()
        cache = () if max_age is None else (("Cache-Control", f"public, max-age={max_age}"),)
        json_type = "application/json"
        if fault is JWKSFault.ERROR_500:
            handler.send(500, b'{"error":"server_error"}', json_type)
        elif fault is JWKSFault.HTML:
            body = b"<html><body><h1>Service Unavailable</h1></body></html>"
            handler.send(200, body, "text/html; charset=utf-8", *cache)
        elif fault is JWKSFault.INVALID_JSON:
            handler.send(200, b'{"keys": [{"kty": "RSA",', json_type, *cache)
        elif fault is JWKSFault.NOT_AN_OBJECT:
            handler.send(200, b"[1,2]", json_type, *cache)
        elif fault is JWKSFault.REDIRECT_LOOP:
            location = f"http://127.0.0.1:{self.port}{handler.path}"
            handler.send(302, b"", json_type, ("Location", location))
        elif fault is JWKSFault.HUGE:
            self._stream_huge(handler, size, cache)
        else:
            doc = document()
            if kind == "jwks" and fault is JWKSFault.NO_KEYS:
                doc = {"keys": []}
            elif kind == "jwks" and fault is JWKSFault.BROKEN_KEYS:
                doc = {"keys": [*BROKEN_JWKS, *doc.get("keys", [])]}
            body = json.dumps(doc, separators=(",", ":")).encode()
            handler.send(200, body, json_type, *cache)

    @staticmethod
    def _stream_huge(handler: _Handler, size: int, cache: tuple[tuple[str, str], ...]) -> None:
        head, tail = b'{"keys":[],"padding":"', b'"}'
        if size < len(head) + len(tail):
            head, tail = b" " * size, b""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(size))
        for name, value in cache:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(head)
        remaining = size - len(head) - len(tail)
        chunk = b"x" * min(_CHUNK, remaining)
        while remaining > 0:
            piece = chunk if remaining >= len(chunk) else chunk[:remaining]
            handler.wfile.write(piece)
            remaining -= len(piece)
        handler.wfile.write(tail)
