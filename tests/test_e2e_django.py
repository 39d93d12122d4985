"""End to end: ``examples/drf_project`` (Django + DRF behind JWTGuardMiddleware) in a real
server process, under uvicorn (ASGI: the middleware on the event loop) and under gunicorn
(WSGI), each fetching the keys from a LocalIssuer over HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _common import parse_challenge
from _servers import free_port, start, stop, wait_until_listening
from jwt_guard.testing import LocalIssuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SERVERS = {
    "uvicorn-asgi": ["-m", "uvicorn", "drf_project.asgi:application", "--log-level", "warning"],
    "gunicorn-wsgi": ["-m", "gunicorn", "drf_project.wsgi:application", "--workers", "1"],
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    name: str = request.param
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    if name.startswith("gunicorn"):
        bind = ["--bind", f"127.0.0.1:{port}"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_GUARD_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "drf_project.settings",
        "JWT_GUARD_ISSUER": issuer.issuer,
        "JWT_GUARD_AUDIENCE": issuer.audience,
        "JWT_GUARD_JWKS_URL": issuer.jwks_url,
    }
    log = tmp_path_factory.mktemp(name) / "server.log"
    proc = start([sys.executable, *SERVERS[name], *bind], log, cwd=EXAMPLES, env=env)
    try:
        wait_until_listening(port, proc, log, name)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)  # gunicorn's worker too


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_async_view_gets_the_token_user(http: httpx.Client, issuer: LocalIssuer) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    token = issuer.mint(subject="dj", scopes=["read:items", "profile"])
    assert http.get("/me", headers=bearer(token)).json() == {
        "sub": "dj",
        "scopes": ["profile", "read:items"],
        "can_read_items": True,
    }
    refused = http.get("/me", headers=bearer(issuer.mint(expires_in=-3600)))
    assert refused.status_code == 401
    assert parse_challenge(refused.headers["www-authenticate"])[1]["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("path", "scopes", "status", "error"),
    [
        pytest.param("/api/items", ["read:items"], 200, None, id="items"),
        pytest.param("/api/items", ["profile"], 403, "insufficient_scope", id="items-no-scope"),
        pytest.param("/api/items", None, 401, None, id="items-no-token"),
        pytest.param("/api/admin", ["ops"], 200, None, id="admin-any-of"),
        pytest.param("/api/admin", ["read:items"], 403, "insufficient_scope", id="admin-none"),
    ],
)
def test_drf_views(
    path: str,
    scopes: list[str] | None,
    status: int,
    error: str | None,
    http: httpx.Client,
    issuer: LocalIssuer,
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(subject="api", scopes=scopes))
    response = http.get(path, headers=headers)
    assert response.status_code == status
    if status == 200 and path == "/api/items":
        assert response.json() == {"items": ["apple", "pear"], "user": "api"}
    if status != 200:
        params = parse_challenge(response.headers["www-authenticate"])[1]
        assert (params["realm"], params.get("error")) == ("api", error)
