"""FastAPI integration: the claims as a dependency, scopes per route, the scheme in OpenAPI.

:class:`~jwt_guard.asgi.JWTGuard` verifies the token; the dependency here reads the claims it
left in the scope, enforces the route's scopes, and declares the HTTP bearer scheme so ``/docs``
shows the Authorize button and each operation lists the scopes it needs. This is the only module
of jwt_guard that imports FastAPI.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import HTTPException, Security, WebSocketException, params
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ._http import CLAIMS_KEY, GUARD_KEY, ErrorResponse, Guard, render_error
from .claims import Claims
from .decorators import check_scopes, record_refusal
from .errors import ConfigurationError, JWTGuardError

__all__ = ["JWTBearer", "jwt_claims", "require_scopes"]

logger = logging.getLogger("jwt_guard.fastapi")

_SKIPPED_HEADERS = frozenset({"content-type", "content-length"})


class JWTBearer(SecurityBase):
    """The HTTP bearer (JWT) security scheme as a FastAPI dependency returning the ``Claims``.

    It reads the claims :class:`~jwt_guard.asgi.JWTGuard` verified (it does not verify tokens
    itself), checks the scopes FastAPI collects from ``Security(..., scopes=[...])`` and
    answers like the middleware: 401 without verified claims (an open path, optional mode),
    403 ``insufficient_scope`` with ``scope="..."`` in ``WWW-Authenticate`` when one is missing.
    Use the ready-made :data:`jwt_claims` instance unless you need another scheme name.

    Args:
        scheme_name: the name in ``components.securitySchemes`` (default ``"JWTBearer"``).
        description: shown in ``/docs``.
        bearer_format: the ``bearerFormat`` hint (default ``"JWT"``).
        any_of: one of the required scopes is enough (default: all are required).

    Example::

        app = FastAPI()
        app.add_middleware(JWTGuard, issuer=..., audience=..., jwks_url=...,
                           exclude_paths=["/docs", "/docs/oauth2-redirect", "/openapi.json"])

        @app.get("/items")
        async def items(claims: Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]):
            return {"sub": claims.subject}
    """

    model: HTTPBearerModel

    def __init__(
        self,
        *,
        scheme_name: str = "JWTBearer",
        description: str | None = None,
        bearer_format: str = "JWT",
        any_of: bool = False,
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name
        self.any_of = any_of

    async def __call__(self, connection: HTTPConnection, security_scopes: SecurityScopes) -> Claims:
        scope = connection.scope
        if GUARD_KEY not in scope:
            logger.warning("no JWTGuard in front of %s: add the middleware", scope.get("path"))
        try:
            return check_scopes(scope.get(CLAIMS_KEY), security_scopes.scopes, any_of=self.any_of)
        except JWTGuardError as exc:
            record_refusal(scope, exc)
            if scope["type"] == "websocket":
                raise WebSocketException(code=1008) from None
            raise _http_exception(scope.get(GUARD_KEY), exc) from None


def _http_exception(guard: Any, exc: JWTGuardError) -> HTTPException:
    response: ErrorResponse
    if isinstance(guard, Guard):
        try:
            response = guard.error_response(exc)
        except Exception as problem:  # a broken error_handler: the plain RFC 6750 answer
            logger.error("error_handler failed: %s", type(problem).__name__, exc_info=problem)
            response = render_error(exc, guard.realm)
    else:
        response = render_error(exc)
    try:
        detail: Any = json.loads(response.body)
    except ValueError:
        detail = response.body.decode("utf-8", "replace")
    headers = {k: v for k, v in response.headers if k.lower() not in _SKIPPED_HEADERS}
    return HTTPException(response.status, detail=detail, headers=headers)


jwt_claims = JWTBearer()
"""The dependency: ``Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]``."""

_any_of_claims = JWTBearer(any_of=True)


def require_scopes(*scopes: str, any_of: bool = False) -> params.Security:
    """A route dependency requiring ``scopes`` (all of them, or one with ``any_of=True``).

    The scopes appear in the operation's OpenAPI ``security`` requirement (an ``any_of``
    route lists all of them there).

    Example::

        @app.delete("/items/{item_id}", dependencies=[require_scopes("write:items")])
        async def delete_item(item_id: int): ...
    """
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ConfigurationError(f"scope {scope!r} must be a non-empty string without spaces")
    dependency: params.Security = Security(
        _any_of_claims if any_of else jwt_claims, scopes=list(scopes)
    )
    return dependency
