"""``require_scopes`` (``jwt_guard.decorators``), what is the same for every framework: it finds
the request by its class (from an explicit table, never by duck typing), refuses a view it
cannot place with a ``ConfigurationError``, and refuses to guard a FastAPI operation (that takes
the dependency ``jwt_guard.fastapi.require_scopes``) while still serving plain Starlette routes.

Each framework's own use of it (Starlette, Flask, Django, Werkzeug) is tested with that adapter.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient as FastAPIClient

import jwt_guard
from _asgi_helpers import bearer
from jwt_guard import ConfigurationError, JWTGuard, TokenVerifier
from jwt_guard.decorators import require_scopes
from jwt_guard.guard.middleware import CLAIMS_KEY
from jwt_guard.testing import LocalIssuer


def test_require_scopes_dispatches_on_request_classes_not_attribute_names() -> None:
    """``require_scopes`` guessed the framework by duck typing (``hasattr(arg, "META")``): any
    object with ``META`` and ``method`` passed for a Django request. Now only the request
    classes of the table count, and a view it cannot place is a ConfigurationError (not a
    TypeError) that names what to do."""
    lookalike = SimpleNamespace(META={CLAIMS_KEY: "forged"}, method="GET", headers={})
    view = require_scopes("read:items")(lambda request: "ran")
    with pytest.raises(ConfigurationError, match=r"found no request.*fastapi\.require_scopes"):
        view(lookalike)
    with pytest.raises(ConfigurationError, match="found no request"):
        view()


def test_the_generic_decorator_on_a_fastapi_route_fails_when_the_route_is_defined() -> None:
    """``jwt_guard.require_scopes`` on a FastAPI route answered 500 at every request (FastAPI
    passes no request to it). Now defining the route raises, pointing at the dependency."""
    app = FastAPI()
    message = r"cannot guard a FastAPI route.*jwt_guard\.fastapi\.require_scopes"
    with pytest.raises(ConfigurationError, match=message):

        @app.get("/items")
        @jwt_guard.require_scopes("read:items")
        async def items(request: Request) -> Any:
            return {}

    with pytest.raises(ConfigurationError, match=message):

        @app.get("/sync", response_model=None)
        @jwt_guard.require_scopes("read:items")
        def sync_items(item: int, **extra: Any) -> Any:
            return {}

    with pytest.raises(ConfigurationError, match=message):

        @app.websocket("/ws")
        @jwt_guard.require_scopes("chat")
        async def ws(websocket: WebSocket) -> None:
            await websocket.close()

    assert not [r for r in app.router.routes if getattr(r, "path", "") in ("/items", "/ws")]


def test_the_generic_decorator_still_serves_starlette_routes_in_a_fastapi_app(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    """A plain Starlette route (``add_route``) is not a FastAPI operation: the decorator works
    there, as on any Starlette endpoint."""
    app = FastAPI()

    @jwt_guard.require_scopes("read:items")
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    app.add_route("/items", items)
    app.add_middleware(JWTGuard, verifier=verifier)
    with FastAPIClient(app) as client:
        ok = client.get("/items", headers=bearer(issuer.mint(scopes=["read:items"])))
        refused = client.get("/items", headers=bearer(issuer.mint()))
    assert ok.json() == {"sub": "user-1"}
    assert refused.status_code == 403
