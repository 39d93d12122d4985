"""The apps of ``_adapter_apps`` (Starlette, FastAPI, Werkzeug, Flask, Django), driven with the
request facts sender-constrained tokens depend on: any headers (repeated ones too), the peer
address, the TLS layer's client certificate, the raw request target.

``Driver.send(path, headers, ...)``: for ASGI the scope gets ``client``, ``raw_path`` and the TLS
extension (``scope["extensions"]["tls"]``, as the ASGI TLS spec has it); for WSGI and Django the
environ gets ``REMOTE_ADDR``, ``REQUEST_URI`` and ``SSL_CLIENT_CERT``: each set the way a server
sets it, so the guard sees what it would see behind a real one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.test import Client as DjangoClient
from django.test import override_settings
from werkzeug.test import Client as WerkzeugClient

from _adapter_apps import (
    _URLS,
    FRAMEWORKS,
    OPEN,
    Reply,
    _wsgi_string,
    fastapi_app,
    flask_app,
    starlette_app,
    werkzeug_app,
)
from _asgi_helpers import TestClient
from jwt_guard import TokenVerifier

__all__ = ["ASGI", "FRAMEWORKS", "PUBLIC", "Driver", "Facts", "driver"]

PUBLIC = "https://api.example.com"
ASGI = {"starlette", "fastapi"}


@dataclass
class Facts:
    """What a server knows of one request besides its headers."""

    client: str | None = "198.51.100.7"
    raw_path: bytes | None = None  # the request target as received; default: the path
    tls_cert: str | None = None  # PEM of the client certificate the TLS layer verified
    tls_error: str | None = None  # ASGI client_cert_error / WSGI SSL_CLIENT_VERIFY failure
    environ: dict[str, Any] = field(default_factory=dict)  # extra WSGI environ keys


Headers = Sequence[tuple[str, str]]


class Driver:
    """One guarded app and the client that reaches it."""

    def __init__(self, send: Callable[[str, str, Headers, Facts], Reply], framework: str) -> None:
        self._send = send
        self.framework = framework

    def send(
        self,
        path: str = "/me",
        headers: Headers | dict[str, str] = (),
        *,
        method: str = "GET",
        facts: Facts | None = None,
    ) -> Reply:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        return self._send(method, path, pairs, facts or Facts())


def _asgi(app: Any, framework: str) -> Driver:
    current: list[Facts] = [Facts()]

    async def with_facts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        facts = current[0]
        if scope["type"] in ("http", "websocket"):
            scope["client"] = None if facts.client is None else (facts.client, 50123)
            if facts.raw_path is not None:
                scope["raw_path"] = facts.raw_path
            if facts.tls_cert is not None or facts.tls_error is not None:
                scope.setdefault("extensions", {})["tls"] = {
                    "server_cert": None,
                    "client_cert_chain": [] if facts.tls_cert is None else [facts.tls_cert],
                    "client_cert_name": None,
                    "client_cert_error": facts.tls_error,
                    "tls_version": 0x0304,
                    "cipher_suite": 0x1301,
                }
        await app(scope, receive, send)

    client = TestClient(with_facts)

    def send(method: str, path: str, headers: Headers, facts: Facts) -> Reply:
        current[0] = facts
        raw = [(name, value.encode("latin-1")) for name, value in headers]  # any byte
        response = client.request(method, path, headers=raw)
        return Reply(response.status_code, dict(response.headers), response.content)

    return Driver(send, framework)


def _environ(facts: Facts, path: str) -> dict[str, Any]:
    environ: dict[str, Any] = {}
    if facts.client is not None:
        environ["REMOTE_ADDR"] = facts.client
    if facts.raw_path is not None:
        environ["REQUEST_URI"] = environ["RAW_URI"] = facts.raw_path.decode("latin-1")
    if facts.tls_cert is not None:
        environ["SSL_CLIENT_CERT"] = facts.tls_cert
    if facts.tls_error is not None:
        environ["SSL_CLIENT_VERIFY"] = f"FAILED:{facts.tls_error}"
    environ.update(facts.environ)
    return environ


def _wsgi(app: Any, framework: str) -> Driver:
    client = WerkzeugClient(app)

    def send(method: str, path: str, headers: Headers, facts: Facts) -> Reply:
        overrides = _environ(facts, path)
        with client.open(
            path, method=method, headers=list(headers), environ_overrides=overrides
        ) as response:
            return Reply(response.status_code, dict(response.headers), response.get_data())

    return Driver(send, framework)


def _django(verifier: TokenVerifier, **options: Any) -> Driver:
    """One Django client, so its middleware (and the guard in it) is built once, as in a
    server process; each request runs under the settings."""
    settings = {"verifier": verifier, **OPEN, **options}
    client = DjangoClient()

    def send(method: str, path: str, headers: Headers, facts: Facts) -> Reply:
        extra: dict[str, Any] = {}
        for name, value in headers:  # repeated headers joined, as a WSGI server does
            key = "HTTP_" + name.upper().replace("-", "_")
            text = _wsgi_string(value)
            extra[key] = f"{extra[key]},{text}" if key in extra else text
        extra.update(_environ(facts, path))
        with override_settings(
            ROOT_URLCONF=_URLS,
            MIDDLEWARE=["jwt_guard.django.JWTGuardMiddleware"],
            JWT_GUARD=settings,
        ):
            response = client.generic(method, path, **extra)
        return Reply(response.status_code, dict(response.headers), response.content)

    return Driver(send, "django")


def driver(framework: str, verifier: TokenVerifier, **options: Any) -> Driver:
    """The app of ``framework`` behind a guard with ``options`` (``dpop=...``, ``mtls=...``)."""
    if framework == "starlette":
        return _asgi(starlette_app(verifier, **options), framework)
    if framework == "fastapi":
        return _asgi(fastapi_app(verifier, **options), framework)
    if framework == "werkzeug":
        return _wsgi(werkzeug_app(verifier, **options), framework)
    if framework == "flask":
        return _wsgi(flask_app(verifier, **options), framework)
    if framework == "django":
        return _django(verifier, **options)
    raise ValueError(framework)
