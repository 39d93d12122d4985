"""The Starlette and FastAPI examples run as written, against a LocalIssuer."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _asgi_helpers import TestClient, bearer
from jwt_guard import JWTGuard
from jwt_guard.jwks import JWKSClient
from jwt_guard.testing import LocalIssuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = ("JWT_GUARD_ISSUER", "JWT_GUARD_AUDIENCE", "JWT_GUARD_JWKS_URL")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def close_guards(app: Any) -> None:
    """Close the JWKS sessions of every JWTGuard in ``app``'s middleware stack."""
    layer, found = getattr(app, "middleware_stack", None), 0
    while layer is not None:
        if isinstance(layer, JWTGuard):
            found += 1
            for source in layer.verifier.key_sources().values():
                if isinstance(source, JWKSClient):
                    source.session.close()
        layer = getattr(layer, "app", None)
    assert found == 1


@pytest.fixture(params=["starlette_app", "fastapi_app"])
def client(request: pytest.FixtureRequest, issuer: LocalIssuer) -> Iterator[TestClient]:
    module = load(request.param)
    assert not hasattr(module, "app")  # no environment: only the factory
    app = module.create_app(
        issuer=issuer.issuer, audience=issuer.audience, jwks_url=issuer.jwks_url
    )
    with TestClient(app) as c:
        yield c
    close_guards(app)


@pytest.mark.parametrize(
    ("path", "scopes", "status"),
    [
        pytest.param("/health", None, 200, id="public"),
        pytest.param("/me", None, 401, id="me-no-token"),
        pytest.param("/items", None, 401, id="scoped-no-token"),
        pytest.param("/items", [], 403, id="scoped-without-scope"),
        pytest.param("/items", ["read:items"], 200, id="scoped-ok"),
    ],
)
def test_routes(
    client: TestClient, issuer: LocalIssuer, path: str, scopes: list[str] | None, status: int
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(scopes=scopes))
    response = client.get(path, headers=headers)
    assert response.status_code == status
    if status == 403:
        assert 'scope="read:items"' in response.headers["www-authenticate"]


def test_me_reads_claims(client: TestClient, issuer: LocalIssuer) -> None:
    token = issuer.mint(subject="erin", scopes=["read:items", "profile"])
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"sub": "erin", "scopes": ["profile", "read:items"]}


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app"])
def test_module_app_from_environment(
    name: str, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in zip(ENV, (issuer.issuer, issuer.audience, issuer.jwks_url), strict=True):
        monkeypatch.setenv(key, value)
    app = load(name).app
    with TestClient(app) as client:
        assert client.get("/me", headers=bearer(issuer.mint(subject="env"))).json()["sub"] == "env"
    close_guards(app)


def test_fastapi_example_docs_are_open(issuer: LocalIssuer) -> None:
    app = load("fastapi_app").create_app(
        issuer=issuer.issuer, audience=issuer.audience, jwks_url=issuer.jwks_url
    )
    with TestClient(app) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 200, path
        schema = client.get("/openapi.json").json()
        assert client.get("/docsx").status_code == 401  # the docs paths, nothing more
    items = schema["paths"]["/items"]["get"]
    assert items["security"] == [{"JWTBearer": ["read:items"]}]
    assert {"401", "403"} <= set(items["responses"])
    assert set(schema["paths"]["/me"]["get"]["responses"]) == {"200", "401"}
    assert set(schema["paths"]["/health"]["get"]["responses"]) == {"200"}
    close_guards(app)
