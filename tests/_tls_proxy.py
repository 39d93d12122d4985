"""A TLS-terminating reverse proxy for the end-to-end test of the certificate header.

It accepts HTTPS on 127.0.0.1 (client certificates verified against a CA, optional), drops any
``Client-Cert`` header the client sent, sets ``Client-Cert`` (RFC 9440) to the certificate the
handshake verified, and forwards the request to a plain-HTTP upstream: what nginx or Envoy do in
front of an app. Stdlib only; one thread per connection.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import ssl
from pathlib import Path
from types import TracebackType

from jwt_guard.testing._server import ServingThread

__all__ = ["TLSProxy"]

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "client-cert"})


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        if der is not None:
            headers["Client-Cert"] = ":" + base64.b64encode(der).decode() + ":"
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=10)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
        finally:
            upstream.close()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream: int


class TLSProxy:
    """``with TLSProxy(upstream_port, cert, key, ca) as proxy:`` serves ``proxy.url``."""

    def __init__(self, upstream: int, certfile: Path, keyfile: Path, cafile: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cafile))
        context.load_cert_chain(str(certfile), str(keyfile))
        context.verify_mode = ssl.CERT_OPTIONAL
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = upstream
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._serving: ServingThread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TLSProxy:
        self._serving = ServingThread(self._server, "tls-proxy")  # stops at once, not at a poll
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._serving is not None:
            self._serving.stop()
        self._server.server_close()
