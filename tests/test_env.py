"""Configuration from the environment (``jwt_guard.core._env``): ``TokenVerifier.from_env``,
``JWTGuard.from_env`` and ``JWTGuardWSGI.from_env`` read ``JWT_GUARD_*`` (or another prefix);
keyword arguments win; a bad value or a misspelt name says which variable or keyword."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from _core_helpers import AUDIENCE, ISSUER, Key, make_key
from _observe import make_app
from jwt_guard import ConfigurationError, JWTGuard, JWTGuardWSGI, TokenVerifier
from jwt_guard.errors import AlgorithmNotAllowed
from jwt_guard.testing import LocalIssuer


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key("HS256", "hs-1")


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return []


def test_environment_configuration_round_trips(jwt_issuer: LocalIssuer) -> None:
    environ = {
        "JWT_GUARD_ISSUER": jwt_issuer.issuer,
        "JWT_GUARD_AUDIENCE": f"other-api, {jwt_issuer.audience}",
        "JWT_GUARD_JWKS_URL": jwt_issuer.jwks_url,
        "JWT_GUARD_ALGORITHMS": "RS256,ES256",
        "JWT_GUARD_LEEWAY": "5",
        "JWT_GUARD_REQUIRED_CLAIMS": "sub,jti",
        "JWT_GUARD_JWKS_MAX_STALE": "120",
        "JWT_GUARD_JWKS_TIMEOUT": "1.5,2",
        "JWT_GUARD_EXCLUDE_PATHS": "/health",
        "UNRELATED": "ignored",
    }
    verifier = TokenVerifier.from_env(environ=environ)
    assert verifier.issuers == (jwt_issuer.issuer,)
    assert verifier.leeway == 5
    source = verifier.key_sources()[jwt_issuer.issuer]
    assert source.status()["source"] == jwt_issuer.jwks_url
    assert source.max_stale == 120
    assert source.timeout == (1.5, 2.0)
    assert verifier.verify(jwt_issuer.mint()).subject == "user-1"
    assert verifier.verify(jwt_issuer.mint(alg="ES256")).subject == "user-1"
    with pytest.raises(AlgorithmNotAllowed):
        verifier.verify(jwt_issuer.mint(alg="EdDSA"))

    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    wsgi = JWTGuardWSGI.from_env(hello, environ=environ)
    assert WerkzeugClient(wsgi).get("/health").status_code == 200
    assert WerkzeugClient(wsgi).get("/other").status_code == 401
    asgi = JWTGuard.from_env(make_app(verifier), environ=environ, realm="env")
    response = TestClient(asgi).get("/me")
    assert response.headers["www-authenticate"] == 'Bearer realm="env"'


ISS = "https://idp.example.com/"


@pytest.mark.parametrize("middleware", [JWTGuard, JWTGuardWSGI], ids=["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        pytest.param(
            {"audience": "b"},
            lambda v: v._issuers[ISS].rules.audiences == {"b"},
            id="verifier-option-wins",
        ),
        pytest.param({"leeway": 5}, lambda v: v.leeway == 5, id="verifier-option-not-in-env"),
        pytest.param(
            {"jwks_options": {"max_stale": 7}},
            lambda v: v.key_sources()[ISS].max_stale == 7,
            id="jwks-options",
        ),
    ],
)
def test_middleware_from_env_keyword_arguments_win(
    middleware: Any, overrides: dict[str, Any], check: Callable[[TokenVerifier], bool]
) -> None:
    # README: "keyword arguments win over the environment", for the verifier's options too
    # (they raised "belong to TokenVerifier" when given to JWTGuard/JWTGuardWSGI.from_env).
    environ = {
        "JWT_GUARD_ISSUER": ISS,
        "JWT_GUARD_AUDIENCE": "a",
        "JWT_GUARD_JWKS_URL": ISS + "jwks.json",
        "JWT_GUARD_REALM": "env",
    }
    guard = middleware.from_env(Starlette(), environ=environ, **overrides)
    assert check(guard.verifier)
    assert guard.guard.realm == "env"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param("JWT_GUARD_LEEWAY", "soon", "JWT_GUARD_LEEWAY='soon'", id="not-a-number"),
        pytest.param("JWT_GUARD_LEEWAY", "-1", "finite number >= 0", id="negative"),
        pytest.param("JWT_GUARD_OPTIONAL", "maybe", "expected true/false", id="not-a-bool"),
        pytest.param("JWT_GUARD_ALGORITHMS", "RS256,none", "never accepted", id="alg-none"),
        pytest.param("JWT_GUARD_AUDEINCE", "x", "did you mean JWT_GUARD_AUDIENCE", id="typo"),
        pytest.param("JWT_GUARD_ISSUERS", "{bad json", "JWT_GUARD_ISSUERS", id="bad-json"),
    ],
)
def test_bad_environment_values_name_the_variable(variable: str, value: str, message: str) -> None:
    environ = {
        "JWT_GUARD_ISSUER": "https://idp.example.com/",
        "JWT_GUARD_AUDIENCE": "api",
        variable: value,
    }
    with pytest.raises(ConfigurationError, match=message):
        JWTGuard.from_env(Starlette(), environ=environ)


def test_environment_needs_issuer_and_audience_and_takes_several_issuers(
    jwt_issuer: LocalIssuer,
) -> None:
    with pytest.raises(ConfigurationError, match="set JWT_GUARD_ISSUER"):
        TokenVerifier.from_env(environ={})
    with pytest.raises(ConfigurationError, match="set APP_AUDIENCE"):
        TokenVerifier.from_env("APP_", environ={"APP_ISSUER": "https://idp.example.com/"})
    issuers = (
        f'[{{"issuer": "{jwt_issuer.issuer}", "audience": "{jwt_issuer.audience}",'
        f' "jwks_url": "{jwt_issuer.jwks_url}"}},'
        ' {"issuer": "https://login.example.org/", "audience": "api"}]'
    )
    verifier = TokenVerifier.from_env(environ={"JWT_GUARD_ISSUERS": issuers})
    assert verifier.issuers == (jwt_issuer.issuer, "https://login.example.org/")
    assert verifier.verify(jwt_issuer.mint()).issuer == jwt_issuer.issuer


@pytest.mark.parametrize("middleware", [JWTGuard, JWTGuardWSGI], ids=["asgi", "wsgi"])
def test_from_env_keyword_typos_are_caught_too(middleware: Any) -> None:
    environ = {"JWT_GUARD_ISSUER": "https://idp.example.test/", "JWT_GUARD_AUDIENCE": "api"}
    expected = f"{middleware.__name__}.from_env(exclude_path=...): no such option; did you mean"
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        middleware.from_env(_wsgi_app, environ=environ, exclude_path=["/health"])


def test_the_byte_budget_can_come_from_the_environment(key: Key) -> None:
    environ = {"JWT_GUARD_ISSUER": ISSUER, "JWT_GUARD_AUDIENCE": AUDIENCE}
    options = {"jwks": key.jwks()}
    budget = TokenVerifier.from_env(
        environ={**environ, "JWT_GUARD_TOKEN_CACHE_BYTES": "123456"}, **options
    )
    assert budget._cache is not None
    assert budget._cache.maxbytes == 123456
    off = TokenVerifier.from_env(environ={**environ, "JWT_GUARD_TOKEN_CACHE_BYTES": "0"}, **options)
    assert "cache=off" in repr(off)
