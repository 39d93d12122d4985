"""The FastAPI dependency behind JWTGuard: claims, scopes, RFC 6750 errors, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient as FastAPIClient
from starlette.websockets import WebSocketDisconnect

import jwt_guard
from _asgi_helpers import TestClient, bearer, parse_challenge
from jwt_guard import Claims, ConfigurationError, ErrorResponse, JWTGuard, TokenVerifier
from jwt_guard.errors import JWTGuardError
from jwt_guard.fastapi import (
    JWTBearer,
    docs_paths,
    document_refusals,
    dpop_claims,
    jwt_claims,
    require_scopes,
)
from jwt_guard.testing import LocalIssuer

OPEN = ["/docs", "/docs/oauth2-redirect", "/openapi.json", "/open"]
ReadItems = Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]
PARTNER = JWTBearer(scheme_name="Partner", description="Partner tokens", bearer_format="JWS")


def build(verifier: TokenVerifier, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(JWTGuard, verifier=verifier, exclude_paths=OPEN, **options)

    @app.get("/items")
    async def items(claims: ReadItems) -> Any:
        return {"sub": claims.subject}

    @app.get("/me")
    async def me(claims: Annotated[Claims, Depends(jwt_claims)]) -> Any:
        return {"sub": claims.subject, "scopes": sorted(claims.scopes)}

    @app.delete("/items/{item_id}", dependencies=[require_scopes("write:items", "admin")])
    async def delete_item(item_id: int) -> Any:
        return {"deleted": item_id}

    @app.get("/either", dependencies=[require_scopes("a", "b", any_of=True)])
    async def either() -> Any:
        return {"ok": True}

    @app.get("/open")
    async def open_route(
        claims: ReadItems,
    ) -> Any:
        return {"sub": claims.subject}

    @app.get("/health")
    async def health() -> Any:
        return {"ok": True}

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket, claims: Annotated[Claims, Security(jwt_claims, scopes=["chat"])]
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": claims.subject})
        await websocket.close()

    return app


@pytest.fixture
def client(verifier: TokenVerifier) -> Iterator[TestClient]:
    with TestClient(build(verifier)) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "scopes", "status", "error"),
    [
        pytest.param("GET", "/items", ["read:items"], 200, None, id="scoped-ok"),
        pytest.param("GET", "/items", ["other"], 403, "insufficient_scope", id="scoped-403"),
        pytest.param("GET", "/me", [], 200, None, id="claims-no-scope"),
        pytest.param("DELETE", "/items/7", ["write:items", "admin"], 200, None, id="all-ok"),
        pytest.param("DELETE", "/items/7", ["write:items"], 403, "insufficient_scope", id="all"),
        pytest.param("GET", "/either", ["b"], 200, None, id="any-of-ok"),
        pytest.param("GET", "/either", ["c"], 403, "insufficient_scope", id="any-of-403"),
    ],
)
def test_scopes(
    client: TestClient,
    issuer: LocalIssuer,
    method: str,
    path: str,
    scopes: list[str],
    status: int,
    error: str | None,
) -> None:
    token = issuer.mint(subject="carol", scopes=scopes)
    response = client.request(method, path, headers=bearer(token))
    assert response.status_code == status
    if error is None:
        assert "www-authenticate" not in response.headers
        return
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == error
    assert params["realm"] == "api"
    assert response.headers["cache-control"] == "no-store"
    # the middleware's own shape, not FastAPI's {"detail": ...}
    assert response.json() == {
        "error": error,
        "error_description": "The access token lacks a required scope",
    }


def test_missing_scope_header_names_the_scopes(client: TestClient, issuer: LocalIssuer) -> None:
    response = client.delete("/items/1", headers=bearer(issuer.mint()))
    assert parse_challenge(response.headers["www-authenticate"])[1]["scope"] == "write:items admin"


def test_claims_returned(client: TestClient, issuer: LocalIssuer) -> None:
    response = client.get("/me", headers=bearer(issuer.mint(subject="dan", scopes=["x", "a"])))
    assert response.json() == {"sub": "dan", "scopes": ["a", "x"]}


def test_middleware_refuses_before_the_dependency(client: TestClient) -> None:
    response = client.get("/items")
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "error_description": "Authentication required",
    }


@pytest.mark.parametrize("optional", [False, True])
def test_route_without_claims_is_401_not_500(verifier: TokenVerifier, optional: bool) -> None:
    with TestClient(build(verifier, optional=optional, realm="shop")) as client:
        response = client.get("/open" if not optional else "/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="shop"'
    assert response.json() == {
        "error": "unauthorized",
        "error_description": "Authentication required",
    }


def test_error_handler_shapes_dependency_errors(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    def shape(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
        return ErrorResponse(
            exc.status, [("x-code", exc.code)], b'{"code": "%s"}' % exc.code.encode()
        )

    with TestClient(build(verifier, error_handler=shape)) as client:
        response = client.get("/items", headers=bearer(issuer.mint()))
    assert response.status_code == 403
    assert response.headers["x-code"] == "insufficient_scope"
    assert response.json() == {"code": "insufficient_scope"}  # the handler's body, as it is


def _answer(response: Any) -> tuple[int, set[str], Any]:
    headers = {k for k in response.headers if k not in ("content-length", "date")}
    return response.status_code, headers, response.json()


@pytest.mark.parametrize("handler", [None, "custom"])
def test_the_dependency_answers_exactly_like_the_middleware(
    verifier: TokenVerifier, issuer: LocalIssuer, handler: str | None
) -> None:
    """The dependency's 403 had another shape (``{"detail": {...}}``) than the middleware's 401,
    and a custom error_handler's body ended up inside ``detail``. One shape everywhere, seen
    through FastAPI's own test client."""

    def shape(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
        body = b'{"problem": "%s", "status": %d}' % (exc.code.encode(), exc.status)
        return ErrorResponse(exc.status, [*response.headers, ("x-problem", exc.code)], body)

    options = {} if handler is None else {"error_handler": shape}
    with FastAPIClient(build(verifier, **options)) as client:
        by_middleware = client.get("/items")  # no token: the middleware refuses
        by_dependency_401 = client.get("/open")  # open path, no claims: the dependency
        by_dependency_403 = client.get("/items", headers=bearer(issuer.mint()))
        by_require_scopes = client.delete("/items/1", headers=bearer(issuer.mint()))
    status, headers, body = _answer(by_middleware)
    assert _answer(by_dependency_401) == (status, headers, body)
    for refused in (by_dependency_403, by_require_scopes):
        assert _answer(refused)[:2] == (403, headers)
    if handler is None:
        assert set(body) == {"error", "error_description"}
        assert set(_answer(by_dependency_403)[2]) == {"error", "error_description"}
    else:
        assert body == {"problem": "missing_token", "status": 401}
        assert _answer(by_dependency_403)[2] == {"problem": "insufficient_scope", "status": 403}
        assert by_dependency_403.headers["x-problem"] == "insufficient_scope"


def test_without_middleware_fails_closed() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(claims: Annotated[Claims, Security(jwt_claims)]) -> Any:
        return {"sub": claims.subject}

    with TestClient(app) as client:
        response = client.get("/me", headers=bearer("a.b.c"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_websocket_scopes(client: TestClient, issuer: LocalIssuer) -> None:
    with client.websocket_connect("/ws", headers=bearer(issuer.mint(scopes=["chat"]))) as ws:
        assert ws.receive_json() == {"sub": "user-1"}
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws", headers=bearer(issuer.mint())),
    ):
        pass
    assert closed.value.code == 1008


def test_openapi_declares_scheme_and_scopes(verifier: TokenVerifier) -> None:
    schema = build(verifier).openapi()
    assert schema["components"]["securitySchemes"] == {
        "JWTBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    paths = schema["paths"]
    assert paths["/items"]["get"]["security"] == [{"JWTBearer": ["read:items"]}]
    assert paths["/me"]["get"]["security"] == [{"JWTBearer": []}]
    assert paths["/items/{item_id}"]["delete"]["security"] == [
        {"JWTBearer": ["write:items", "admin"]}
    ]
    assert paths["/either"]["get"]["security"] == [{"JWTBearer": ["a", "b"]}]
    assert "security" not in paths["/health"]["get"]


def test_docs_show_authorize(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert "JWTBearer" in spec.json()["components"]["securitySchemes"]


def test_custom_scheme() -> None:
    app = FastAPI()

    @app.get("/p")
    async def p(claims: Annotated[Claims, Security(PARTNER, scopes=["p"])]) -> Any:
        return {}

    assert app.openapi()["components"]["securitySchemes"]["Partner"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWS",
        "description": "Partner tokens",
    }


@pytest.mark.parametrize("bad", ["", "two words", "tab\there", "esc\x1b", "nbsp\u00a0", 3, None])
@pytest.mark.parametrize(
    ("entry", "name"),
    [
        pytest.param(require_scopes, "jwt_guard.fastapi.require_scopes", id="fastapi"),
        pytest.param(jwt_guard.require_scopes, "require_scopes", id="decorator"),
    ],
)
def test_scope_names_are_checked_once_for_every_entry_point(
    entry: Any, name: str, bad: Any
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{name}: scope"):
        entry("ok", bad)


@pytest.mark.parametrize(
    ("options", "paths"),
    [
        pytest.param(
            {}, ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"], id="defaults"
        ),
        pytest.param(
            {"docs_url": "/api/docs", "redoc_url": None, "openapi_url": "/api/openapi.json"},
            ["/api/openapi.json", "/api/docs", "/docs/oauth2-redirect"],
            id="moved-no-redoc",
        ),
        pytest.param({"openapi_url": None}, [], id="no-description"),
    ],
)
def test_docs_paths_are_the_apps_own(options: dict[str, Any], paths: list[str]) -> None:
    assert docs_paths(FastAPI(**options)) == paths


def test_the_docs_are_guarded_unless_opened(verifier: TokenVerifier) -> None:
    """The quick start opened /docs and /openapi.json but not /redoc; now the docs are one
    decision: all guarded, or all opened with docs_paths(app)."""
    guarded = FastAPI()
    guarded.add_middleware(JWTGuard, verifier=verifier)
    opened = FastAPI()
    opened.add_middleware(JWTGuard, verifier=verifier, exclude_paths=docs_paths(opened))
    docs = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    with FastAPIClient(guarded) as closed_client, FastAPIClient(opened) as open_client:
        for path in docs:
            assert closed_client.get(path).status_code == 401, path
            assert open_client.get(path).status_code == 200, path
        assert open_client.get("/redoc/x").status_code == 401


def test_document_refusals_lists_401_and_403_on_secured_operations(
    verifier: TokenVerifier,
) -> None:
    app = build(verifier)

    @app.get("/partner")
    async def partner(claims: Annotated[Claims, Security(PARTNER, scopes=["p"])]) -> Any:
        return {}

    @app.get("/documented", responses={403: {"description": "Ours"}})
    async def documented(claims: ReadItems) -> Any:
        return {}

    document_refusals(app)
    first = app.openapi()
    schema = app.openapi()  # cached: documented once, not twice
    assert schema is first
    paths = schema["paths"]

    def answers(path: str, method: str = "get") -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"200", "401", "403"} <= answers("/items")
    assert {"401", "403"} <= answers("/items/{item_id}", "delete")
    assert {"401", "403"} <= answers("/partner")
    assert "401" in answers("/me")
    assert "403" not in answers("/me")  # no scopes required: no 403 to document
    assert "401" not in answers("/health")
    assert "403" not in answers("/health")
    assert paths["/documented"]["get"]["responses"]["403"]["description"] == "Ours"
    unauthorized = paths["/items"]["get"]["responses"]["401"]
    assert "WWW-Authenticate" in unauthorized["headers"]
    body = unauthorized["content"]["application/json"]["schema"]
    assert body["required"] == ["error", "error_description"]


# -- DPoP -----------------------------------------------------------------------------------------


def _dpop_app(verifier: TokenVerifier, dpop: str) -> FastAPI:
    app = FastAPI()
    app.add_middleware(JWTGuard, verifier=verifier, dpop=dpop, public_url="https://api.example.com")

    @app.get("/items")
    async def items(claims: Annotated[Claims, Security(dpop_claims, scopes=["read:items"])]) -> Any:
        return {"sub": claims.subject}

    @app.delete("/items/{item_id}", dependencies=[require_scopes("write:items", scheme="DPoP")])
    async def delete_item(item_id: int) -> Any:
        return {"deleted": item_id}

    @app.get("/me")
    async def me(claims: Annotated[Claims, Security(jwt_claims)]) -> Any:
        return {"sub": claims.subject}

    return app


def test_openapi_says_dpop_where_the_route_takes_dpop_tokens(verifier: TokenVerifier) -> None:
    schema = _dpop_app(verifier, "allowed").openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["DPoP"]["type"] == "http"
    assert schemes["DPoP"]["scheme"] == "DPoP"
    assert "RFC 9449" in schemes["DPoP"]["description"]
    assert schemes["JWTBearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    paths = schema["paths"]
    assert paths["/items"]["get"]["security"] == [{"DPoP": ["read:items"]}]
    assert paths["/items/{item_id}"]["delete"]["security"] == [{"DPoP": ["write:items"]}]
    assert paths["/me"]["get"]["security"] == [{"JWTBearer": []}]


def test_a_dpop_route_refuses_a_bearer_token_the_guard_allows(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    from jwt_guard.testing.dpop import DPoPClient

    client = TestClient(_dpop_app(verifier, "allowed"))
    plain = issuer.mint(scopes=["read:items", "write:items"])
    assert client.get("/me", headers=bearer(plain)).status_code == 200  # the guard allows Bearer
    reply = client.get("/items", headers=bearer(plain))  # the route takes DPoP only
    assert reply.status_code == 401
    scheme, params = parse_challenge(reply.headers["www-authenticate"])
    assert (scheme, params["error"]) == ("Bearer", "invalid_token")
    assert reply.headers["www-authenticate"].endswith(
        'algs="ES256 EdDSA Ed25519 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 ES256K Ed448"'
    )
    assert client.delete("/items/3", headers=bearer(plain)).status_code == 401
    dpop = DPoPClient(issuer=issuer)
    token = dpop.mint(scopes=["read:items", "write:items"], subject="alice")
    assert client.get("/items", headers=dpop.headers("GET", "/items", token)).json() == {
        "sub": "alice"
    }
    reply = client.delete("/items/3", headers=dpop.headers("DELETE", "/items/3", token))
    assert reply.json() == {"deleted": 3}
    unscoped = dpop.mint()
    reply = client.get("/items", headers=dpop.headers("GET", "/items", unscoped))
    assert reply.status_code == 403
    assert parse_challenge(reply.headers["www-authenticate"])[0] == "DPoP"


def test_the_scheme_option_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="'Bearer' or 'DPoP'"):
        JWTBearer(scheme="bearer")
    with pytest.raises(ConfigurationError, match="'Bearer' or 'DPoP'"):
        require_scopes("a", scheme="MAC")
