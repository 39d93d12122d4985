"""JWTGuard in front of a real Starlette app, against a real LocalIssuer (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from _asgi_helpers import (
    TestClient,
    WebSocketDenialResponse,
    bearer,
    call_raw,
    parse_challenge,
    verifier_for,
)
from jwt_guard import ConfigurationError, JWTGuard, TokenVerifier
from jwt_guard.asgi import JWTUser
from jwt_guard.decorators import require_scopes
from jwt_guard.errors import JWTGuardError
from jwt_guard.guard.middleware import CLAIMS_KEY, ErrorResponse
from jwt_guard.testing import JWKSFault, LocalIssuer


async def me(request: Request) -> JSONResponse:
    for _ in range(3):  # interleave concurrent requests
        await asyncio.sleep(0)
    claims = request.scope[CLAIMS_KEY]
    return JSONResponse(
        {
            "user": type(request.user).__name__,
            "authenticated": request.user.is_authenticated,
            "identity": getattr(request.user, "identity", None),
            "display_name": request.user.display_name,
            "auth_scopes": request.auth.scopes,
            "scope_sub": None if claims is None else claims["sub"],
            "user_claims_sub": getattr(request.user, "claims", {}).get("sub"),
        }
    )


@require_scopes("read:items")
async def items(request: Request) -> JSONResponse:
    return JSONResponse({"items": [1, 2]})


@requires("read:items")
async def starlette_items(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


SEEN_WEBSOCKETS: list[str] = []


async def ws_endpoint(websocket: WebSocket) -> None:
    SEEN_WEBSOCKETS.append(websocket.url.path)
    await websocket.accept()
    await websocket.send_json({"sub": websocket.scope[CLAIMS_KEY].subject})
    await websocket.close()


def build(verifier: TokenVerifier, **options: Any) -> Starlette:
    routes = [
        Route("/me", me),
        Route("/items", items),
        Route("/starlette-items", starlette_items),
        Route("/health", health),
        Route("/healthz", health),
        Route("/public/{rest:path}", health),
        WebSocketRoute("/ws", ws_endpoint),
    ]
    cors = Middleware(CORSMiddleware, allow_origins=["https://app.example"], allow_methods=["*"])
    guard = Middleware(JWTGuard, verifier=verifier, **options)
    return Starlette(routes=routes, middleware=[guard, cors])


@pytest.fixture
def client(verifier: TokenVerifier) -> Iterator[TestClient]:
    with TestClient(build(verifier, exclude_paths=["/health"])) as c:
        yield c


Headers = Callable[[LocalIssuer], list[tuple[str, str]]]


def auth(make: Callable[[LocalIssuer], str]) -> Headers:
    return lambda issuer: [("Authorization", make(issuer))]


REFUSALS = [
    pytest.param(lambda i: [], 401, None, id="no-token"),
    # another scheme holds no bearer credentials: 401 with the bare challenge (RFC 6750 3.1)
    pytest.param(auth(lambda i: "Basic dXNlcjpwYXNz"), 401, None, id="basic"),
    pytest.param(auth(lambda i: "Digest username=x"), 401, None, id="digest"),
    pytest.param(auth(lambda i: "Bearer=abc"), 400, "invalid_request", id="not-a-scheme"),
    pytest.param(auth(lambda i: "Bearer a.b.c d.e.f"), 400, "invalid_request", id="two-tokens"),
    pytest.param(auth(lambda i: "Bearer abc$def"), 400, "invalid_request", id="not-token68"),
    pytest.param(auth(lambda i: "Bearer"), 400, "invalid_request", id="empty-bearer"),
    pytest.param(
        lambda i: [("Authorization", f"Bearer {i.mint()}"), ("Authorization", "Bearer x")],
        400,
        "invalid_request",
        id="several-headers",
    ),
    pytest.param(auth(lambda i: "Bearer abc.def.ghi"), 401, "invalid_token", id="garbage"),
    pytest.param(
        auth(lambda i: f"Bearer {i.mint(expires_in=-3600)}"), 401, "invalid_token", id="expired"
    ),
    pytest.param(
        auth(lambda i: f"Bearer {i.mint(audience='other')}"), 401, "invalid_token", id="wrong-aud"
    ),
    pytest.param(
        auth(lambda i: f"Bearer {i.mint(issuer='https://evil.example')}"),
        401,
        "invalid_token",
        id="wrong-iss",
    ),
    pytest.param(
        auth(lambda i: f"Bearer {i.mint()[:-4]}AAAA"), 401, "invalid_token", id="bad-signature"
    ),
    pytest.param(
        auth(lambda i: f"Bearer {i.mint(scopes=['write:items'])}"),
        403,
        "insufficient_scope",
        id="missing-scope",
    ),
]


@pytest.mark.parametrize(("headers", "status", "error"), REFUSALS)
def test_refusals_follow_rfc6750(
    client: TestClient, issuer: LocalIssuer, headers: Headers, status: int, error: str | None
) -> None:
    response = client.get("/items", headers=headers(issuer))
    assert response.status_code == status
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "Bearer"
    assert params["realm"] == "api"
    assert params.get("error") == error
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == (error or "unauthorized")
    if error is None:
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    else:
        assert params["error_description"] == body["error_description"]
    if error == "insufficient_scope":
        assert params["scope"] == "read:items"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_valid_token_puts_claims_on_request(
    client: TestClient, issuer: LocalIssuer, scheme: str
) -> None:
    token = issuer.mint(subject="alice", scopes=["read:items", "b"])
    response = client.get("/me", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "user": "JWTUser",
        "authenticated": True,
        "identity": "alice",
        "display_name": "alice",
        "auth_scopes": ["b", "read:items"],
        "scope_sub": "alice",
        "user_claims_sub": "alice",
    }
    assert client.get("/items", headers={"Authorization": f"{scheme} {token}"}).status_code == 200


def test_starlette_requires_works_unchanged(client: TestClient, issuer: LocalIssuer) -> None:
    ok = client.get("/starlette-items", headers=bearer(issuer.mint(scopes=["read:items"])))
    assert (ok.status_code, ok.text) == (200, "ok")
    assert client.get("/starlette-items", headers=bearer(issuer.mint())).status_code == 403


def test_expired_token_says_why(client: TestClient, issuer: LocalIssuer) -> None:
    response = client.get("/me", headers=bearer(issuer.mint(expires_in=-3600)))
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error_description"] == "The access token expired"


def test_jwks_down_at_cold_start_is_503_with_retry_after() -> None:
    with LocalIssuer() as cold, verifier_for(cold) as verifier:
        token = cold.mint()
        cold.set_fault(JWKSFault.DOWN)
        with TestClient(build(verifier)) as client:
            response = client.get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "www-authenticate" not in response.headers
    assert response.json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(
    ("path", "is_open"),
    [
        pytest.param("/health", True, id="exact"),
        pytest.param("/healthz", False, id="exact-is-not-prefix"),
        pytest.param("/health/", False, id="exact-trailing-slash"),
        pytest.param("/public", True, id="prefix-itself"),
        pytest.param("/public/a/b", True, id="under-prefix"),
        pytest.param("/publicity", False, id="prefix-is-segment"),
        pytest.param("/health/../admin", False, id="dot-segments"),
        pytest.param("/public/../admin", False, id="dot-segments-prefix"),
        pytest.param("/public/./x", False, id="dot-segment"),
        pytest.param("/public//x", False, id="double-slash"),
        pytest.param("/admin", False, id="guarded"),
    ],
)
async def test_open_paths(verifier: TokenVerifier, path: str, is_open: bool) -> None:
    app = build(verifier, exclude_paths=["/health"], exclude_prefixes=["/public/"])
    result = await call_raw(app, path=path)
    if is_open:  # reached the app (the router may answer 200 or redirect)
        assert result.status in (200, 307)
    else:
        assert result.status == 401
        assert result.headers["www-authenticate"] == 'Bearer realm="api"'


async def test_open_path_passes_without_claims(verifier: TokenVerifier) -> None:
    app = build(verifier, exclude_paths=["/me"])
    body = json.loads((await call_raw(app, path="/me")).body)
    assert (body["user"], body["authenticated"], body["scope_sub"]) == (
        "UnauthenticatedUser",
        False,
        None,
    )


PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}


@pytest.mark.parametrize(
    ("allow", "headers", "status"),
    [
        pytest.param(True, PREFLIGHT, 200, id="preflight-passes"),
        pytest.param(False, PREFLIGHT, 401, id="preflight-disabled"),
        pytest.param(True, {"Origin": "https://app.example"}, 401, id="plain-options"),
    ],
)
def test_cors_preflight(
    verifier: TokenVerifier, allow: bool, headers: dict[str, str], status: int
) -> None:
    with TestClient(build(verifier, allow_preflight=allow)) as client:
        response = client.options("/items", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_optional_mode(verifier: TokenVerifier, issuer: LocalIssuer) -> None:
    with TestClient(build(verifier, optional=True)) as client:
        anonymous = client.get("/me")
        assert anonymous.status_code == 200
        assert anonymous.json()["user"] == "UnauthenticatedUser"
        assert anonymous.json()["auth_scopes"] == []
        assert client.get("/me", headers=bearer("abc.def.ghi")).status_code == 401
        # optional mode passes only requests without the header: another scheme is refused
        basic = client.get("/me", headers={"Authorization": "Basic eA=="})
        assert (basic.status_code, basic.headers["www-authenticate"]) == (401, 'Bearer realm="api"')
        assert client.get("/me", headers={"Authorization": "Bearer a b"}).status_code == 400
        assert client.get("/me", headers=bearer(issuer.mint())).json()["user"] == "JWTUser"
        # decorated routes reached without claims answer 401, never 500
        decorated = client.get("/items")
        assert decorated.status_code == 401
        assert decorated.headers["www-authenticate"] == 'Bearer realm="api"'
        assert client.get("/starlette-items").status_code == 403


def test_decorated_route_on_open_path_is_401(verifier: TokenVerifier) -> None:
    with TestClient(build(verifier, exclude_paths=["/items"], realm="shop")) as client:
        response = client.get("/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="shop"'


def test_realm_is_quoted_and_escaped(verifier: TokenVerifier) -> None:
    with TestClient(build(verifier, realm='my "api"\\x')) as client:
        response = client.get("/me")
    assert response.headers["www-authenticate"] == r'Bearer realm="my \"api\"\\x"'
    assert parse_challenge(response.headers["www-authenticate"])[1]["realm"] == 'my "api"\\x'


def reshape(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse | None:
    if exc.status == 401:
        return ErrorResponse(401, [*response.headers, ("x-error-code", exc.code)], b"nope")
    return None


def broken(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse | None:
    if exc.status == 400:
        return ErrorResponse(400, [("x-evil", "a\r\nset-cookie: x=1")], b"")
    raise RuntimeError("handler bug")


def test_error_handler_reshapes(verifier: TokenVerifier, issuer: LocalIssuer) -> None:
    with TestClient(build(verifier, error_handler=reshape)) as client:
        shaped = client.get("/me", headers=bearer(issuer.mint(expires_in=-3600)))
        kept = client.get("/me", headers={"Authorization": "Bearer a b"})
    assert (shaped.status_code, shaped.text, shaped.headers["x-error-code"]) == (
        401,
        "nope",
        "expired",
    )
    assert shaped.headers["www-authenticate"].startswith('Bearer realm="api", error=')
    assert kept.status_code == 400
    assert kept.json()["error"] == "invalid_request"


@pytest.mark.parametrize("auth_value", ["Bearer a b", "Bearer abc.def.ghi"])
def test_broken_error_handler_falls_back(verifier: TokenVerifier, auth_value: str) -> None:
    with TestClient(build(verifier, error_handler=broken)) as client:
        response = client.get("/me", headers={"Authorization": auth_value})
    assert response.status_code in (400, 401)
    assert "set-cookie" not in response.headers
    assert "x-evil" not in response.headers
    assert response.json()["error"] in ("invalid_request", "invalid_token")


def test_lifespan_passes_through(verifier: TokenVerifier) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=[Route("/me", me)], lifespan=lifespan)
    app.add_middleware(JWTGuard, verifier=verifier)
    with TestClient(app) as client:
        assert events == ["startup"]
        assert client.get("/me").status_code == 401
    assert events == ["startup", "shutdown"]


def test_websocket_refused_before_the_app(client: TestClient, issuer: LocalIssuer) -> None:
    SEEN_WEBSOCKETS.clear()
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == 'Bearer realm="api"'
    with (
        pytest.raises(WebSocketDenialResponse) as bad,
        client.websocket_connect("/ws", headers=bearer("abc.def.ghi")),
    ):
        pass
    assert bad.value.status_code == 401
    assert bad.value.json()["error"] == "invalid_token"
    assert SEEN_WEBSOCKETS == []
    with client.websocket_connect("/ws", headers=bearer(issuer.mint(subject="ws-user"))) as ws:
        assert ws.receive_json() == {"sub": "ws-user"}
    assert SEEN_WEBSOCKETS == ["/ws"]


async def test_websocket_without_denial_extension_is_closed_1008(verifier: TokenVerifier) -> None:
    SEEN_WEBSOCKETS.clear()
    result = await call_raw(build(verifier), path="/ws", scope_type="websocket")
    assert result.messages == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    assert SEEN_WEBSOCKETS == []


async def test_lifespan_and_unknown_scopes_untouched(verifier: TokenVerifier) -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    guard = JWTGuard(inner, verifier=verifier)
    await guard({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await guard({"type": "custom.thing"}, None, None)  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan"}, {"type": "custom.thing"}]


async def test_attacker_bytes_are_never_echoed(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    app = build(verifier)
    evil_kid = issuer.mint(headers={"kid": 'EVIL"\r\nx-injected: 1'})
    cases = [
        [(b"authorization", b"Bearer " + evil_kid.encode())],
        [(b"authorization", b'Basic EVIL"\xff\xfe')],
        [(b"authorization", b'Bearer EVIL"\r\nx-injected: 1')],
        [(b"authorization", "Bearer EVILé".encode("latin-1"))],
    ]
    for headers in cases:
        result = await call_raw(app, path="/me", headers=headers)
        assert result.status in (400, 401)
        assert "x-injected" not in result.headers
        raw = b"".join(k + b": " + v for k, v in result.messages[0]["headers"]) + result.body
        assert b"EVIL" not in raw
        assert b"\r" not in raw
        assert b"\n" not in raw


async def test_a_broken_verifier_is_401_not_500(issuer: LocalIssuer) -> None:
    class Exploding(TokenVerifier):
        async def averify(self, token: str | bytes, *, client: str | None = None) -> Any:
            raise RuntimeError("boom")

    app = build(Exploding(issuer=issuer.issuer, audience=issuer.audience, jwks=issuer.jwks()))
    result = await call_raw(app, path="/me", headers=[(b"authorization", b"Bearer a.b.c")])
    assert result.status == 401
    assert json.loads(result.body)["error"] == "invalid_token"


def test_add_middleware_with_verifier_options(issuer: LocalIssuer) -> None:
    import requests

    with requests.Session() as session:
        app = Starlette(routes=[Route("/me", me)])
        app.add_middleware(
            JWTGuard,
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            jwks_options={"session": session},
        )
        with TestClient(app) as client:
            response = client.get("/me", headers=bearer(issuer.mint(subject="opt")))
    assert response.json()["scope_sub"] == "opt"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"issuer": "https://idp.example/", "verifier": "x"}, id="both"),
        pytest.param({"issuer": "https://i/", "audience": "a", "realm": "é"}, id="realm"),
        pytest.param({"issuer": "https://i/", "audience": "a", "exclude_paths": ["x"]}, id="path"),
    ],
)
def test_configuration_errors_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        JWTGuard(health, **kwargs)  # type: ignore[arg-type]


async def test_concurrent_requests_see_only_their_own_claims(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    tokens = {f"user-{n}": issuer.mint(subject=f"user-{n}") for n in range(20)}
    subjects = [f"user-{n % 20}" for n in range(200)]
    transport = httpx.ASGITransport(app=build(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = await asyncio.gather(
            *(client.get("/me", headers=bearer(tokens[sub])) for sub in subjects)
        )
    for sub, response in zip(subjects, responses, strict=True):
        body = response.json()
        assert (body["identity"], body["scope_sub"], body["user_claims_sub"]) == (sub, sub, sub)


def test_jwt_user() -> None:
    from jwt_guard import Claims

    user = JWTUser(Claims({"sub": "bob", "scope": "a b"}))
    assert (user.is_authenticated, user.display_name, user.identity) == (True, "bob", "bob")
    assert repr(user) == "JWTUser('bob')"
    assert JWTUser(Claims({})).identity == ""


def _tamper(request: Request) -> list[str]:
    """What a careless (or hostile) view might try on the shared per-token objects; the
    exception type of each attempt, or "changed" when one succeeds."""
    attempts = {
        "auth.scopes": lambda: setattr(request.auth, "scopes", (*request.auth.scopes, "admin")),
        "auth.extra": lambda: setattr(request.auth, "granted", True),
        "del auth.scopes": lambda: delattr(request.auth, "scopes"),
        "auth.scopes.append": lambda: request.auth.scopes.append("admin"),
        "user.claims": lambda: setattr(request.user, "claims", {"scope": "admin"}),
        "del user.claims": lambda: delattr(request.user, "claims"),
        "claims[scope]": lambda: request.user.claims.__setitem__("scope", "admin"),
        "claims.scopes": lambda: setattr(request.user.claims, "scopes", frozenset({"admin"})),
    }
    outcomes = []
    for attempt in attempts.values():
        try:
            attempt()
        except (AttributeError, TypeError) as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append("changed")
    return outcomes


def test_shared_per_token_objects_are_read_only(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    """A view that set ``request.auth.scopes = (..., "admin")`` granted "admin" to every later
    request carrying the same token (403 on a ``requires("admin")`` route before, 200 after)."""
    outcomes: list[list[str]] = []

    async def tamper(request: Request) -> PlainTextResponse:
        outcomes.append(_tamper(request))
        return PlainTextResponse("tried")

    @requires("admin")
    async def admin(request: Request) -> PlainTextResponse:
        return PlainTextResponse("admin")

    @require_scopes("admin")
    async def admin_too(request: Request) -> PlainTextResponse:
        return PlainTextResponse("admin")

    routes = [Route("/me", me), Route("/tamper", tamper), Route("/admin", admin)]
    app = Starlette(
        routes=[*routes, Route("/admin-too", admin_too)],
        middleware=[Middleware(JWTGuard, verifier=verifier)],
    )
    token = bearer(issuer.mint(scopes=["read"]))
    with TestClient(app) as client:
        assert client.get("/admin", headers=token).status_code == 403
        assert client.get("/tamper", headers=token).text == "tried"
        assert client.get("/tamper", headers=token).text == "tried"  # the cached objects too
        assert client.get("/admin", headers=token).status_code == 403
        assert client.get("/admin-too", headers=token).status_code == 403
        seen_by_me = client.get("/me", headers=token).json()
    assert seen_by_me["auth_scopes"] == ["read"]
    for seen in outcomes:
        assert "changed" not in seen, seen
