"""The same small app in every framework jwt_guard supports, each through its own test client.

Every app serves, behind its guard (``exclude_prefixes=["/open"]``):

- ``/me``: any verified token (Flask: ``require_claims()``, FastAPI: ``Depends(jwt_claims)``);
- ``/admin``: ``require_scopes("admin")`` (FastAPI: ``jwt_guard.fastapi.require_scopes``);
- ``/open/admin``: the same scope check on an open path, so it refuses at the route (401);
- ``/open/me``: ``/me`` on an open path (Flask and FastAPI refuse at the route, 401; the others
  answer ``{"sub": null}``).

Tests reach the apps through :class:`Driver`: ``get(path, authorization, client=..., prefix=...)``.
The client address is set as a proxy-aware server would set it (ASGI ``scope["client"]``, WSGI and
Django ``REMOTE_ADDR``) and ``prefix`` is the path the app is mounted under (ASGI ``root_path``,
WSGI ``SCRIPT_NAME``), so a test can put any bytes in either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security, WebSocket
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from werkzeug.test import Client as WerkzeugClient
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from _asgi_helpers import TestClient, WebSocketDenialResponse
from _wsgi_helpers import ensure_django
from jwt_guard import Claims, JWTGuard, JWTGuardWSGI, TokenVerifier, require_scopes
from jwt_guard.fastapi import jwt_claims
from jwt_guard.fastapi import require_scopes as fastapi_scopes
from jwt_guard.flask import require_claims
from jwt_guard.guard.middleware import CLAIMS_KEY

ensure_django()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client as DjangoClient  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.urls import path as django_path  # noqa: E402

OPEN = {"exclude_prefixes": ["/open"]}
FRAMEWORKS = ["starlette", "fastapi", "werkzeug", "flask", "django"]
ROUTE_REFUSES_OPEN_ME = {"fastapi", "flask"}
"""Where ``/open/me`` is refused at the route (the others have no claims-or-401 helper)."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Driver:
    """One app and the test client that reaches it."""

    def __init__(
        self,
        get: Callable[[str, str | None, str | None, str], Reply],
        websocket: Callable[[str, str | None], int] | None = None,
    ) -> None:
        self._get = get
        self._websocket = websocket

    def get(
        self,
        path: str,
        authorization: str | None = None,
        client: str | None = None,
        prefix: str = "",
    ) -> Reply:
        return self._get(path, authorization, client, prefix)

    def websocket(self, path: str, authorization: str | None = None) -> int:
        """Open a websocket at ``path``: the close code (1000 if it was accepted and closed)
        or the status of the HTTP denial."""
        if self._websocket is None:
            raise NotImplementedError("no websockets under WSGI")
        return self._websocket(path, authorization)


def _sub(claims: Claims | None) -> dict[str, Any]:
    return {"sub": None if claims is None else claims.subject}


# -- ASGI ---------------------------------------------------------------------------------------


def _client_from_header(app: Any) -> Any:
    """What a proxy-aware server does: the client address (uvicorn's ``--proxy-headers``) and
    the mount prefix (``root_path``) from request headers."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == b"x-test-client":
                    scope["client"] = (value.decode(), 1234)
                elif name == b"x-test-prefix":
                    scope["root_path"] = value.decode()
                    scope["path"] = scope["root_path"] + scope["path"]
        await app(scope, receive, send)

    return middleware


def _asgi_driver(app: Any) -> Driver:
    client = TestClient(_client_from_header(app))

    def get(path: str, authorization: str | None, address: str | None, prefix: str) -> Reply:
        headers: dict[str, str | bytes] = {}
        if authorization is not None:
            headers["Authorization"] = authorization
        if address is not None:
            headers["X-Test-Client"] = address.encode()
        if prefix:
            headers["X-Test-Prefix"] = prefix.encode()
        response = client.get(path, headers=headers)
        return Reply(response.status_code, dict(response.headers), response.content)

    def websocket(path: str, authorization: str | None) -> int:
        headers = {} if authorization is None else {"Authorization": authorization}
        try:
            with client.websocket_connect(path, headers=headers) as ws:
                ws.receive_json()
        except WebSocketDenialResponse as denied:
            return int(denied.status_code)
        except WebSocketDisconnect as closed:
            return int(closed.code)
        return 1000

    return Driver(get, websocket)


async def _starlette_me(request: Request) -> JSONResponse:
    return JSONResponse(_sub(request.scope.get(CLAIMS_KEY)))


@require_scopes("admin")
async def _starlette_admin(request: Request) -> JSONResponse:
    return JSONResponse(_sub(request.scope.get(CLAIMS_KEY)))


@require_scopes("chat")
async def _starlette_chat(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_sub(websocket.scope.get(CLAIMS_KEY)))
    await websocket.close()


def starlette_app(verifier: TokenVerifier | None, **options: Any) -> Any:
    routes = [
        Route("/me", _starlette_me),
        Route("/admin", _starlette_admin),
        Route("/open/me", _starlette_me),
        Route("/open/admin", _starlette_admin),
        WebSocketRoute("/ws", _starlette_chat),
    ]
    app = Starlette(routes=routes)
    return app if verifier is None else JWTGuard(app, verifier=verifier, **OPEN, **options)


Me = Annotated[Claims, Depends(jwt_claims)]
Chat = Annotated[Claims, Security(jwt_claims, scopes=["chat"])]


def fastapi_app(verifier: TokenVerifier | None, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(claims: Me) -> dict[str, Any]:
        return _sub(claims)

    @app.get("/open/me")
    async def open_me(claims: Me) -> dict[str, Any]:
        return _sub(claims)

    @app.get("/admin", dependencies=[fastapi_scopes("admin")])
    async def admin() -> dict[str, Any]:
        return {"admin": True}

    @app.get("/open/admin", dependencies=[fastapi_scopes("admin")])
    async def open_admin() -> dict[str, Any]:
        return {"admin": True}

    @app.websocket("/ws")
    async def chat(websocket: WebSocket, claims: Chat) -> None:
        await websocket.accept()
        await websocket.send_json(_sub(claims))
        await websocket.close()

    if verifier is not None:
        app.add_middleware(JWTGuard, verifier=verifier, **OPEN, **options)
    return app


# -- WSGI ---------------------------------------------------------------------------------------


def _wsgi_driver(app: Any) -> Driver:
    client = WerkzeugClient(app)

    def get(path: str, authorization: str | None, address: str | None, prefix: str) -> Reply:
        overrides = {"SCRIPT_NAME": _wsgi_string(prefix)}
        if address is not None:
            overrides["REMOTE_ADDR"] = _wsgi_string(address)
        headers = {} if authorization is None else {"Authorization": authorization}
        with client.get(path, headers=headers, environ_overrides=overrides) as response:
            return Reply(response.status_code, dict(response.headers), response.get_data())

    return Driver(get)


def _wsgi_string(text: str) -> str:
    """``text`` as a WSGI server puts it in the environ: its UTF-8 bytes, one char per byte."""
    return text.encode().decode("latin-1")


def _werkzeug_me(request: WerkzeugRequest) -> WerkzeugResponse:
    body = json.dumps(_sub(request.environ.get(CLAIMS_KEY)))
    return WerkzeugResponse(body, content_type="application/json")


_werkzeug_admin = require_scopes("admin")(_werkzeug_me)


def werkzeug_app(verifier: TokenVerifier | None, **options: Any) -> Any:
    routes = {"/admin": _werkzeug_admin, "/open/admin": _werkzeug_admin}

    @WerkzeugRequest.application  # type: ignore[arg-type]
    def app(request: WerkzeugRequest) -> WerkzeugResponse:
        return routes.get(request.path, _werkzeug_me)(request)

    return app if verifier is None else JWTGuardWSGI(app, verifier=verifier, **OPEN, **options)


def flask_app(verifier: TokenVerifier | None, **options: Any) -> Flask:
    app = Flask(__name__)

    def me() -> dict[str, Any]:
        return _sub(require_claims())

    admin = require_scopes("admin")(lambda: {"admin": True})
    app.add_url_rule("/me", "me", me)
    app.add_url_rule("/open/me", "open_me", me)
    app.add_url_rule("/admin", "admin", admin)
    app.add_url_rule("/open/admin", "open_admin", admin)
    if verifier is not None:
        app.wsgi_app = JWTGuardWSGI(  # type: ignore[method-assign]
            app.wsgi_app, verifier=verifier, **OPEN, **options
        )
    return app


def _flask_driver(app: Flask) -> Driver:
    return _wsgi_driver(app)


# -- Django -------------------------------------------------------------------------------------


def _django_me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_sub(request.META.get(CLAIMS_KEY)))


_django_admin = require_scopes("admin")(_django_me)

_URLS = type(
    "urls",
    (),
    {
        "urlpatterns": [
            django_path("me", _django_me),
            django_path("open/me", _django_me),
            django_path("admin", _django_admin),
            django_path("open/admin", _django_admin),
        ]
    },
)


def _django_driver(verifier: TokenVerifier | None, **options: Any) -> Driver:
    middleware = [] if verifier is None else ["jwt_guard.django.JWTGuardMiddleware"]
    settings = {"verifier": verifier, **OPEN, **options}

    def get(path: str, authorization: str | None, address: str | None, prefix: str) -> Reply:
        extra = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
        if address is not None:
            extra["REMOTE_ADDR"] = _wsgi_string(address)
        if prefix:
            extra["SCRIPT_NAME"] = _wsgi_string(prefix)
        with override_settings(ROOT_URLCONF=_URLS, MIDDLEWARE=middleware, JWT_GUARD=settings):
            response = DjangoClient().get(path, **extra)
        return Reply(response.status_code, dict(response.headers), response.content)

    return Driver(get)


def driver(framework: str, verifier: TokenVerifier | None, **options: Any) -> Driver:
    """The app of ``framework``, guarded by ``verifier`` (unguarded when it is ``None``)."""
    if framework == "starlette":
        return _asgi_driver(starlette_app(verifier, **options))
    if framework == "fastapi":
        return _asgi_driver(fastapi_app(verifier, **options))
    if framework == "werkzeug":
        return _wsgi_driver(werkzeug_app(verifier, **options))
    if framework == "flask":
        return _flask_driver(flask_app(verifier, **options))
    if framework == "django":
        return _django_driver(verifier, **options)
    raise ValueError(framework)
