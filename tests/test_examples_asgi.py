"""The Starlette and FastAPI examples run as written, against a LocalIssuer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from _asgi_helpers import TestClient, bearer
from _common import verifier_for
from _servers import ROOT, clean_env, run_uvicorn
from jwt_guard import ConfigurationError, JWTGuard
from jwt_guard.sources.jwks import JWKSClient
from jwt_guard.testing import LocalIssuer

EXAMPLES = ROOT / "examples"


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
    with verifier_for(issuer) as verifier, TestClient(module.create_app(verifier)) as c:
        yield c


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
def test_module_app_from_the_issuer_and_audience_alone(
    name: str, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the library: the two variables are enough, the keys come through discovery."""
    monkeypatch.delenv("JWT_GUARD_JWKS_URL", raising=False)
    monkeypatch.setenv("JWT_GUARD_ISSUER", issuer.issuer)
    monkeypatch.setenv("JWT_GUARD_AUDIENCE", issuer.audience)
    issuer.reset_counts()
    app = load(name).app
    with TestClient(app) as client:
        assert client.get("/me", headers=bearer(issuer.mint(subject="env"))).json()["sub"] == "env"
    assert issuer.discovery_requests == 1
    close_guards(app)


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app"])
@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        pytest.param({}, "JWT_GUARD_ISSUER", id="nothing"),
        pytest.param(
            {"JWT_GUARD_ISSUER": "https://idp.example.com/"}, "JWT_GUARD_AUDIENCE", id="aud"
        ),
    ],
)
def test_a_missing_variable_is_named(
    name: str, variables: dict[str, str], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("JWT_GUARD_")]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    module = load(name)  # importing needs no configuration: tests use create_app(verifier)
    with pytest.raises(ConfigurationError, match=f"set {missing}"):
        module.app  # noqa: B018


def test_fastapi_example_under_uvicorn_with_discovery(issuer: LocalIssuer, tmp_path: Path) -> None:
    """``uvicorn examples.fastapi_app:app`` with only the issuer and audience set."""
    env = clean_env(JWT_GUARD_ISSUER=issuer.issuer, JWT_GUARD_AUDIENCE=issuer.audience)
    with (
        run_uvicorn("examples.fastapi_app:app", tmp_path / "uvicorn.log", env) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        token = issuer.mint(subject="uv", scopes=["read:items"])
        assert http.get("/me", headers=bearer(token)).json()["sub"] == "uv"
        assert http.get("/items").status_code == 401


def test_fastapi_example_under_uvicorn_without_configuration_says_what_to_set() -> None:
    command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"]
    result = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "set JWT_GUARD_ISSUER" in result.stderr
    assert 'Attribute "app" not found' not in result.stderr


def test_fastapi_example_docs_are_open(issuer: LocalIssuer) -> None:
    with verifier_for(issuer) as verifier:
        app = load("fastapi_app").create_app(verifier)
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
