"""FastAPI integration: the claims as a dependency, scopes per route, the scheme in OpenAPI.

:class:`~jwt_guard.asgi.JWTGuard` verifies the token (and, for a sender-constrained one, its
DPoP proof or client certificate); the dependency here reads the claims it left in the scope,
enforces the route's scopes, and declares the HTTP ``bearer`` scheme (or ``DPoP``, RFC 9449) so
``/docs`` shows the Authorize button and each operation lists the scopes it needs. A refusal is
the very answer the middleware gives (same body, same headers, through the same
``error_handler``): the dependency hands it to ``JWTGuard``, which sends it. This is the only
module of jwt_guard that imports FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Security, WebSocketException, params
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from .asgi import ROUTE_ADAPTER
from .core.claims import Claims
from .errors import ConfigurationError, DPoPBindingMismatch, JWTGuardError
from .guard.middleware import (
    CLAIMS_KEY,
    GUARD_KEY,
    ErrorResponse,
    RouteRefusal,
    check_scopes,
    refuse,
    scope_names,
)

__all__ = [
    "JWTBearer",
    "docs_paths",
    "document_refusals",
    "dpop_claims",
    "jwt_claims",
    "require_scopes",
]

_SKIPPED_HEADERS = frozenset({"content-type", "content-length"})
_SCHEMES: set[str] = set()  # the scheme names of every JWTBearer, for document_refusals
_DPOP_DESCRIPTION = (
    "A DPoP-bound access token (RFC 9449): `Authorization: DPoP <token>` and a `DPoP` header "
    "holding a proof signed with the key the token is bound to, made for this method and URL"
)


class JWTBearer(SecurityBase):
    """The HTTP bearer (JWT) security scheme as a FastAPI dependency returning the ``Claims``.

    It reads the claims :class:`~jwt_guard.asgi.JWTGuard` verified (it does not verify tokens
    itself), checks the scopes FastAPI collects from ``Security(..., scopes=[...])`` and
    answers like the middleware: 401 without verified claims (an open path, optional mode),
    403 ``insufficient_scope`` with ``scope="..."`` in ``WWW-Authenticate`` when one is missing,
    with the middleware's body and ``error_handler``. Use the ready-made :data:`jwt_claims`
    instance unless you need another scheme name.

    Args:
        scheme_name: the name in ``components.securitySchemes`` (default ``"JWTBearer"``, or
            ``"DPoP"`` for the DPoP scheme).
        description: shown in ``/docs``.
        bearer_format: the ``bearerFormat`` hint (default ``"JWT"``; bearer scheme only).
        any_of: one of the required scopes is enough (default: all are required).
        scheme: ``"Bearer"`` (default) or ``"DPoP"``: the HTTP authentication scheme OpenAPI
            names. ``"DPoP"`` also refuses a token that is not DPoP-bound (401
            ``invalid_token``), so a route declared DPoP is DPoP-only even when the guard
            accepts both (``dpop="allowed"``); with ``dpop="required"`` every token is.

    Example::

        app = FastAPI()
        app.add_middleware(JWTGuard, issuer=..., audience=..., jwks_url=...)

        @app.get("/items")
        async def items(claims: Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]):
            return {"sub": claims.subject}
    """

    model: HTTPBaseModel

    def __init__(
        self,
        *,
        scheme_name: str | None = None,
        description: str | None = None,
        bearer_format: str = "JWT",
        any_of: bool = False,
        scheme: str = "Bearer",
    ) -> None:
        if scheme not in ("Bearer", "DPoP"):
            raise ConfigurationError(f"JWTBearer(scheme=...): 'Bearer' or 'DPoP', not {scheme!r}")
        self.dpop = scheme == "DPoP"
        if self.dpop:
            self.model = HTTPBaseModel(scheme="DPoP", description=description or _DPOP_DESCRIPTION)
        else:
            self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name or ("DPoP" if self.dpop else "JWTBearer")
        self.any_of = any_of
        _SCHEMES.add(self.scheme_name)

    async def __call__(self, connection: HTTPConnection, security_scopes: SecurityScopes) -> Claims:
        scope = connection.scope
        try:
            claims = scope.get(CLAIMS_KEY)
            if self.dpop and claims is not None and _jkt(claims) is None:
                raise DPoPBindingMismatch("this route takes DPoP-bound tokens only")
            return check_scopes(claims, security_scopes.scopes, any_of=self.any_of)
        except JWTGuardError as exc:
            answer = refuse(ROUTE_ADAPTER.route_request(connection), exc)  # logged once
            if scope["type"] == "websocket":
                raise WebSocketException(code=1008) from None
            if GUARD_KEY in scope:
                raise RouteRefusal(answer) from None  # JWTGuard sends it, as its own refusals
            raise _http_exception(answer) from None


def _http_exception(answer: ErrorResponse) -> HTTPException:
    """Without ``JWTGuard`` in front (a misconfiguration, logged) nothing can send the answer
    as it is: FastAPI's own ``HTTPException`` carries it (its body then wraps it in
    ``detail``). Still a 401, never a 500."""
    try:
        detail: Any = json.loads(answer.body)
    except ValueError:
        detail = answer.body.decode("utf-8", "replace")
    headers = {k: v for k, v in answer.headers if k.lower() not in _SKIPPED_HEADERS}
    return HTTPException(answer.status, detail=detail, headers=headers)


def _jkt(claims: object) -> object:
    cnf = claims.confirmation if isinstance(claims, Claims) else None
    return None if cnf is None else cnf.get("jkt")


jwt_claims = JWTBearer()
"""The dependency: ``Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]``."""

dpop_claims = JWTBearer(scheme="DPoP")
"""The same for DPoP-bound tokens, declared as the ``DPoP`` scheme in OpenAPI:
``Annotated[Claims, Security(dpop_claims, scopes=["read:items"])]``."""

_any_of_claims = JWTBearer(any_of=True)
_any_of_dpop_claims = JWTBearer(scheme="DPoP", any_of=True)


def require_scopes(*scopes: str, any_of: bool = False, scheme: str = "Bearer") -> params.Security:
    """A route dependency requiring ``scopes`` (all of them, or one with ``any_of=True``).

    The scopes appear in the operation's OpenAPI ``security`` requirement (an ``any_of``
    route lists all of them there), under the ``bearer`` scheme, or ``DPoP`` with
    ``scheme="DPoP"`` (which also refuses tokens that are not DPoP-bound).

    Example::

        @app.delete("/items/{item_id}", dependencies=[require_scopes("write:items")])
        async def delete_item(item_id: int): ...
    """
    wanted = scope_names("jwt_guard.fastapi.require_scopes", scopes)
    if scheme not in ("Bearer", "DPoP"):
        raise ConfigurationError(
            f"jwt_guard.fastapi.require_scopes(scheme=...): 'Bearer' or 'DPoP', not {scheme!r}"
        )
    if scheme == "DPoP":
        chosen = _any_of_dpop_claims if any_of else dpop_claims
    else:
        chosen = _any_of_claims if any_of else jwt_claims
    dependency: params.Security = Security(chosen, scopes=list(wanted))
    return dependency


def docs_paths(app: FastAPI) -> list[str]:
    """The paths FastAPI serves its API description on, as configured on ``app``.

    ``/openapi.json``, ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` by default (whichever
    of them the app serves). They are guarded like any path unless you open them, all together:
    ``exclude_paths=["/health", *docs_paths(app)]``. Leave them guarded to keep the description
    of your API private.
    """
    if not app.openapi_url:
        return []
    paths = [app.openapi_url]
    if app.docs_url:
        paths.append(app.docs_url)
        if app.swagger_ui_oauth2_redirect_url:
            paths.append(app.swagger_ui_oauth2_redirect_url)
    if app.redoc_url:
        paths.append(app.redoc_url)
    return paths


_ERROR_BODY = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "required": ["error", "error_description"],
}


def _refusal(description: str, challenge: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"WWW-Authenticate": {"description": challenge, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ERROR_BODY}},
    }


_UNAUTHORIZED = _refusal(
    "No valid bearer token (missing, malformed, expired, or not trusted), or no valid DPoP "
    "proof for a DPoP-bound one",
    'RFC 6750 challenge, e.g. Bearer realm="api", error="invalid_token" (RFC 9449: '
    'DPoP error="invalid_dpop_proof", algs="...")',
)
_FORBIDDEN = _refusal(
    "The token lacks a scope this operation needs",
    'Bearer realm="api", error="insufficient_scope", scope="..."',
)


def document_refusals(app: FastAPI) -> None:
    """List the 401 (and, where scopes are required, 403) answers in ``app``'s OpenAPI.

    Every operation secured by a :class:`JWTBearer` dependency gets them, with the default
    body ``{"error": ..., "error_description": ...}`` and the ``WWW-Authenticate`` header (a
    custom ``error_handler`` may answer otherwise). Call it once, before or after the routes are
    defined: it wraps ``app.openapi``, the documented way to extend FastAPI's schema.
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict):
                    _document(operation)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(operation: dict[str, Any]) -> None:
    ours = [
        scopes
        for requirement in operation.get("security", ())
        for name, scopes in requirement.items()
        if name in _SCHEMES
    ]
    if not ours:
        return
    responses = operation.setdefault("responses", {})
    responses.setdefault("401", _UNAUTHORIZED)
    if any(ours):
        responses.setdefault("403", _FORBIDDEN)
