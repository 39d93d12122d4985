"""The reference: bearer-token middlewares written the way PyJWT's documentation shows.

``PyJWKClient`` (with its JWK Set cache and ``cache_keys=True``) finds the signing key for the
token's ``kid``; ``jwt.decode`` checks signature, ``exp``, ``aud`` and ``iss``. Both are pure
middlewares (no ``BaseHTTPMiddleware``), so the comparison measures the token work, not an
adapter. PyJWT is a benchmark dependency only, never a runtime one.

From the PyJWT docs ("Retrieve RSA signing keys from a JWKS endpoint")::

    jwks_client = PyJWKClient(url)
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    data = jwt.decode(token, signing_key, audience="https://expenses-api", algorithms=["RS256"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jwt
from jwt import PyJWKClient

__all__ = ["PyJWTASGIMiddleware", "PyJWTVerifier", "PyJWTWSGIMiddleware"]

_UNAUTHORIZED_BODY = b'{"error":"invalid_token"}'
_UNAUTHORIZED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"www-authenticate", b'Bearer error="invalid_token"'),
    (b"content-length", str(len(_UNAUTHORIZED_BODY)).encode()),
]


class PyJWTVerifier:
    """``PyJWKClient`` + ``jwt.decode``, as documented."""

    def __init__(
        self, jwks_url: str, *, audience: str, issuer: str, algorithms: Sequence[str] = ("RS256",)
    ) -> None:
        self.jwks_client = PyJWKClient(jwks_url, cache_keys=True)
        self.audience = audience
        self.issuer = issuer
        self.algorithms = list(algorithms)

    def verify(self, token: str) -> dict[str, Any]:
        signing_key = self.jwks_client.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key,
            algorithms=self.algorithms,
            audience=self.audience,
            issuer=self.issuer,
        )
        return claims


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class PyJWTASGIMiddleware:
    """ASGI: 401 unless the bearer token decodes; claims in ``scope["jwt.claims"]``."""

    def __init__(self, app: Any, verifier: PyJWTVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        token = _bearer(authorization)
        try:
            if token is None:
                raise jwt.InvalidTokenError("no bearer token")
            scope["jwt.claims"] = self.verifier.verify(token)
        except jwt.PyJWTError:  # PyJWKClientError included
            await send(
                {"type": "http.response.start", "status": 401, "headers": _UNAUTHORIZED_HEADERS}
            )
            await send({"type": "http.response.body", "body": _UNAUTHORIZED_BODY})
            return
        await self.app(scope, receive, send)


class PyJWTWSGIMiddleware:
    """WSGI: 401 unless the bearer token decodes; claims in ``environ["jwt.claims"]``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], verifier: PyJWTVerifier) -> None:
        self.app = app
        self.verifier = verifier

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        token = _bearer(environ.get("HTTP_AUTHORIZATION"))
        try:
            if token is None:
                raise jwt.InvalidTokenError("no bearer token")
            environ["jwt.claims"] = self.verifier.verify(token)
        except jwt.PyJWTError:  # PyJWKClientError included
            headers = [(k.decode(), v.decode()) for k, v in _UNAUTHORIZED_HEADERS]
            start_response("401 Unauthorized", headers)
            return [_UNAUTHORIZED_BODY]
        return self.app(environ, start_response)
