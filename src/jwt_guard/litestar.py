"""Litestar: ``JWTGuard`` as Litestar middleware, scope guards, claims from the connection.

``JWTGuard`` is a plain ASGI middleware, so Litestar takes it as it is::

    from litestar import Litestar, get
    from litestar.middleware import DefineMiddleware

    from jwt_guard import JWTGuard
    from jwt_guard.litestar import get_claims, require_scopes

    @get("/items", guards=[require_scopes("read:items")])
    async def items() -> dict[str, list[str]]: ...

    @get("/me")
    async def me(request: Request) -> dict[str, str | None]:
        return {"sub": get_claims(request).subject}

    app = Litestar(
        [items, me],
        middleware=[DefineMiddleware(JWTGuard, issuer="https://idp.example.com/",
                                     audience="my-api", exclude_paths=["/health"])],
    )

The middleware refuses a request without a valid token before Litestar routes it (the RFC 6750
answer, as everywhere). :func:`require_scopes` is a Litestar guard (``guards=[...]`` on a
handler, controller, router or the app): a missing scope raises Litestar's
``PermissionDeniedException`` (403) and no verified token its ``NotAuthorizedException`` (401),
each carrying the RFC 6750 ``WWW-Authenticate`` challenge and ``Cache-Control: no-store``
(the body is Litestar's error body). Each refusal is logged once by jwt_guard. On a websocket
handler the guard refuses the same way (Litestar closes the socket). This module imports
Litestar; ``import jwt_guard`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Response
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException

from .core.claims import Claims
from .guard.middleware import (
    CLAIMS_KEY,
    ErrorResponse,
    RouteRequest,
    check_route,
    scope_names,
)

__all__ = ["get_claims", "require_scopes"]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], Any], None]
"""Litestar's guard signature: ``(connection, route_handler) -> None``, raising to refuse."""


def get_claims(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims | None:
    """The verified claims of a Litestar ``Request`` or ``WebSocket`` (``None`` on an open
    path, in optional mode, or without ``JWTGuard`` in front)."""
    claims = connection.scope.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


def _exception(answer: ErrorResponse) -> HTTPException:
    """``answer`` as the Litestar exception its exception handling turns into a response: the
    one place this adapter converts a refusal."""
    headers = {
        name: value
        for name, value in answer.headers
        if name.lower() in ("www-authenticate", "cache-control", "retry-after")
    }
    if answer.status == 401:
        return NotAuthorizedException(detail="Authentication required", headers=headers)
    if answer.status == 403:
        return PermissionDeniedException(detail="Insufficient scope", headers=headers)
    return HTTPException(status_code=answer.status, headers=headers)


class _LitestarRoutes:
    """The Litestar side of ``require_scopes``: a ``Request``/``WebSocket`` in, a refusal out."""

    def route_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> RouteRequest:
        scope: Any = connection.scope
        client = scope.get("client")
        return RouteRequest(
            store=scope,
            method=scope.get("method", "GET"),
            path=scope.get("path", ""),
            client=client[0] if client else None,
            header=connection.headers.get,
            websocket=scope["type"] == "websocket",
        )

    def respond(self, connection: ASGIConnection[Any, Any, Any, Any], answer: ErrorResponse) -> Any:
        headers = [
            ResponseHeader(name=name, value=value)
            for name, value in answer.headers
            if name.lower() != "content-length"
        ]
        return Response(content=answer.body, status_code=answer.status, headers=headers)

    async def refuse_websocket(self, websocket: Any, answer: ErrorResponse) -> None:
        await websocket.close(code=1008)


ROUTE_ADAPTER = _LitestarRoutes()
"""How ``jwt_guard.require_scopes`` reads a Litestar connection and answers it."""


def require_scopes(*scopes: str, any_of: bool = False) -> Guard:
    """A Litestar guard: the request's verified token must grant ``scopes`` (all of them, or
    one with ``any_of=True``).

    Example::

        @get("/items", guards=[require_scopes("read:items")])
        async def items() -> list[str]: ...

        app = Litestar(..., guards=[require_scopes("api")])   # for every route
    """
    wanted = scope_names("jwt_guard.litestar.require_scopes", scopes)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        answer = check_route(ROUTE_ADAPTER.route_request(connection), wanted, any_of)
        if answer is not None:
            raise _exception(answer)

    guard.__name__ = guard.__qualname__ = f"require_scopes({', '.join(map(repr, wanted))})"
    guard.required_scopes = wanted  # type: ignore[attr-defined]
    return guard
