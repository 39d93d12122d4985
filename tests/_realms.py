"""Keycloak-like realms behind one host, for the multi-tenant tests: per realm its own keys, its
discovery document and its JWKS, as Keycloak serves them, on 127.0.0.1.

``/realms/{realm}/.well-known/openid-configuration`` names ``{base}/realms/{realm}`` as issuer and
``/realms/{realm}/protocol/openid-connect/certs`` as ``jwks_uri``; every other path is a 404.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jwt_guard.testing import SigningKey, generate_key
from jwt_guard.testing._keys import compact_jws
from jwt_guard.testing._server import ServingThread

CERTS = "/protocol/openid-connect/certs"


@functools.cache
def realm_key(realm: str) -> SigningKey:
    """The RS256 key of ``realm``, one per realm name for the whole run: the realms of one server
    have keys of their own, and generating RSA keys was most of what starting a server cost."""
    return generate_key("RS256")


class Realms:
    """A running realms server: ``base`` URL, one RS256 key per realm, request counts."""

    def __init__(self, names: list[str]) -> None:
        self.keys: dict[str, SigningKey] = {name: realm_key(name) for name in names}
        self.requests: Counter[str] = Counter()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._serving: ServingThread | None = None

    def issuer(self, realm: str) -> str:
        return f"{self.base}/realms/{realm}"

    def mint(
        self,
        realm: str,
        claims: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        audience: str = "my-api",
        iss: str | None = None,
    ) -> str:
        """A token of ``realm`` (``iss`` its issuer unless given), signed by the key of realm
        ``key`` (default: its own)."""
        signing = self.keys[key or realm]
        now = int(time.time())
        payload = {
            "iss": iss or self.issuer(realm),
            "aud": audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + 300,
            **(claims or {}),
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": signing.kid}
        return compact_jws(header, payload, signing)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        realms = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def do_GET(self) -> None:
                realms.requests[self.path] += 1
                document: Any = None
                for name, key in realms.keys.items():
                    prefix = f"/realms/{name}"
                    if self.path == prefix + "/.well-known/openid-configuration":
                        document = {
                            "issuer": realms.issuer(name),
                            "jwks_uri": realms.issuer(name) + CERTS,
                        }
                    elif self.path == prefix + CERTS:
                        document = {"keys": [key.public_jwk()]}
                body = json.dumps(document or {"error": "not found"}).encode()
                self.send_response(200 if document else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def serve(self) -> None:
        self._serving = ServingThread(self._httpd, "realms")  # stops at once, not at a poll

    def close(self) -> None:
        if self._serving is not None:
            self._serving.stop()
        self._httpd.server_close()


@contextmanager
def realms(*names: str) -> Iterator[Realms]:
    server = Realms(list(names))
    server.serve()
    try:
        yield server
    finally:
        server.close()
