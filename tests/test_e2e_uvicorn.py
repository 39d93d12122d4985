"""End to end: the Starlette example in a real uvicorn process, a LocalIssuer in this one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from _common import shared_key
from _servers import issuer_env, run_uvicorn
from jwt_guard.testing import LocalIssuer


@pytest.fixture(scope="module")
def server(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    env = issuer_env(issuer)
    with run_uvicorn("examples.starlette_app:app", log, env) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "scopes", "status"),
    [
        pytest.param("/health", None, 200, id="public"),
        pytest.param("/me", None, 401, id="no-token"),
        pytest.param("/items", [], 403, id="missing-scope"),
        pytest.param("/items", ["read:items"], 200, id="scoped"),
        pytest.param("/me", ["profile"], 200, id="claims"),
    ],
)
def test_real_server(
    http: httpx.Client, issuer: LocalIssuer, path: str, scopes: list[str] | None, status: int
) -> None:
    headers = {} if scopes is None else {"Authorization": f"Bearer {issuer.mint(scopes=scopes)}"}
    response = http.get(path, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    if status == 403:
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    if path == "/me" and status == 200:
        assert response.json() == {"sub": "user-1", "scopes": ["profile"]}


def test_real_server_refuses_a_forged_token(http: httpx.Client, issuer: LocalIssuer) -> None:
    with LocalIssuer(keys=[shared_key()]) as other:  # same iss claim, keys the server never saw
        forged = other.mint(issuer=issuer.issuer, kid=issuer.key().kid)
    response = http.get("/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
