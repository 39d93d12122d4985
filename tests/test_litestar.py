"""Litestar: JWTGuard as Litestar middleware (DefineMiddleware and a plain factory), the scope
guard ``jwt_guard.litestar.require_scopes``, claims from the connection; Litestar's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, WebSocket, get, websocket
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient

from _common import parse_challenge
from _servers import issuer_env, run_uvicorn
from jwt_guard import ConfigurationError, JWTGuard, TokenVerifier
from jwt_guard.asgi import JWTUser
from jwt_guard.decorators import require_scopes as require_scopes_decorator
from jwt_guard.litestar import get_claims, require_scopes
from jwt_guard.testing import LocalIssuer


@get("/me")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    claims = get_claims(request)
    return {
        "sub": None if claims is None else claims.subject,
        "user": type(request.user).__name__,
        "scopes": sorted(request.auth.scopes),
    }


@get("/items", guards=[require_scopes("read:items")])
async def items() -> dict[str, list[str]]:
    return {"items": ["apple", "pear"]}


@get("/any", guards=[require_scopes("admin", "ops", any_of=True)])
async def any_of() -> dict[str, bool]:
    return {"ok": True}


@get("/open/items", guards=[require_scopes("read:items")])
async def open_items() -> dict[str, bool]:  # pragma: no cover - never reached without claims
    return {"ok": True}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@require_scopes_decorator("admin")
async def admin_report(request: Request[Any, Any, Any]) -> Any:
    """A helper Litestar never introspects: the table-driven decorator finds the request."""
    return {"admin": True}


@get("/helper")
async def helper(request: Request[Any, Any, Any]) -> Any:
    return await admin_report(request)


@websocket("/ws", guards=[require_scopes("chat")])
async def chat(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    claims = get_claims(socket)
    await socket.send_json({"sub": None if claims is None else claims.subject})
    await socket.close()


HANDLERS = [me, items, any_of, open_items, health, helper, chat]
OPTIONS = {"exclude_paths": ["/health"], "exclude_prefixes": ["/open"]}

Build = Callable[[TokenVerifier], Litestar]

BUILDS: dict[str, Build] = {
    "define-middleware": lambda v: Litestar(
        HANDLERS, middleware=[DefineMiddleware(JWTGuard, verifier=v, **OPTIONS)]
    ),
    "asgi-factory": lambda v: Litestar(
        HANDLERS, middleware=[lambda app: JWTGuard(app, verifier=v, **OPTIONS)]
    ),
}


@pytest.fixture(params=sorted(BUILDS))
def client(request: pytest.FixtureRequest, verifier: TokenVerifier) -> Iterator[TestClient[Any]]:
    with TestClient(BUILDS[request.param](verifier)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_claims_reach_the_handler(client: TestClient[Any], issuer: LocalIssuer) -> None:
    token = issuer.mint(subject="lit", scopes=["read:items", "profile"])
    assert client.get("/me", headers=bearer(token)).json() == {
        "sub": "lit",
        "user": JWTUser.__name__,
        "scopes": ["profile", "read:items"],
    }
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "scopes", "status", "error"),
    [
        pytest.param("/items", ["read:items"], 200, None, id="granted"),
        pytest.param("/items", ["profile"], 403, "insufficient_scope", id="missing-scope"),
        pytest.param("/items", None, 401, None, id="no-token-middleware"),
        pytest.param("/any", ["ops"], 200, None, id="any-of"),
        pytest.param("/any", ["read:items"], 403, "insufficient_scope", id="any-of-none"),
        pytest.param("/open/items", None, 401, None, id="no-claims-guard"),
        pytest.param("/helper", ["read:items"], 403, "insufficient_scope", id="decorator"),
        pytest.param("/helper", ["admin"], 200, None, id="decorator-granted"),
    ],
)
def test_scope_guard(
    path: str,
    scopes: list[str] | None,
    status: int,
    error: str | None,
    client: TestClient[Any],
    issuer: LocalIssuer,
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(scopes=scopes))
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        params = parse_challenge(response.headers["www-authenticate"])[1]
        assert (params["realm"], params.get("error")) == ("api", error)
        assert response.headers["cache-control"] == "no-store"
    if error == "insufficient_scope" and path == "/items":
        assert params["scope"] == "read:items"


def test_the_guard_logs_a_refusal_once(
    client: TestClient[Any], issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="jwt_guard")
    client.get("/items", headers=bearer(issuer.mint(scopes=["profile"])))
    assert caplog.text.count("rejected code=insufficient_scope") == 1


def test_websocket_handlers(client: TestClient[Any], issuer: LocalIssuer) -> None:
    token = issuer.mint(subject="ws", scopes=["chat"])
    with client.websocket_connect("/ws", subprotocols=["bearer", token]) as ws:
        assert ws.receive_json() == {"sub": "ws"}


def test_bad_scope_names_are_refused_at_definition() -> None:
    with pytest.raises(ConfigurationError, match=r"litestar\.require_scopes"):
        require_scopes("read items")
    assert require_scopes("a", "b").required_scopes == ("a", "b")  # type: ignore[attr-defined]


# -- the example, in a real uvicorn process ------------------------------------------------------


def test_the_example_under_uvicorn(issuer: LocalIssuer, tmp_path: Path) -> None:
    env = issuer_env(issuer)
    with (
        run_uvicorn("examples.litestar_app:app", tmp_path / "uvicorn.log", env) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        assert http.get("/health").json() == {"status": "ok"}
        reader = bearer(issuer.mint(subject="uv", scopes=["read:items"]))
        assert http.get("/me", headers=reader).json() == {"sub": "uv", "scopes": ["read:items"]}
        assert http.get("/items", headers=reader).json() == {"items": ["apple", "pear"]}
        other = http.get("/items", headers=bearer(issuer.mint(scopes=["profile"])))
        assert other.status_code == 403
        assert 'error="insufficient_scope"' in other.headers["www-authenticate"]
        assert http.get("/items").status_code == 401
