"""Operating jwt_guard: logs, the observer interface, health, start-up prefetch, env config."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from jwt_guard import (
    AlgorithmNotAllowed,
    ConfigurationError,
    ExpiredToken,
    GuardObserver,
    JWTGuard,
    JWTGuardWSGI,
    MissingClaim,
    TokenVerifier,
    health_asgi_app,
    health_wsgi_app,
    require_scopes,
)
from jwt_guard.testing import JWKSFault, LocalIssuer

SECRET = "s3cr3t-value-that-must-never-be-logged-0123456789"


class FakeClock:
    """A wall clock (call it) and its monotonic clock (``monotonic``), advanced together."""

    def __init__(self) -> None:
        self.now = time.time()
        self.ticks = 0.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.ticks += seconds


class Recorder(GuardObserver):
    """Counts every event, the way a Prometheus/StatsD adapter would."""

    def __init__(self) -> None:
        self.events: Counter[tuple[Any, ...]] = Counter()

    def verified(self, issuer: str, cached: bool) -> None:
        self.events["verified", cached] += 1

    def rejected(self, code: str, issuer: str | None) -> None:
        self.events["rejected", code] += 1

    def keys_fetched(self, source: str, keys: int, seconds: float) -> None:
        self.events["keys_fetched",] += 1

    def keys_failed(self, source: str, error: str) -> None:
        self.events["keys_failed",] += 1

    def keys_stale(self, source: str, age: float) -> None:
        self.events["keys_stale",] += 1

    def unknown_kid(self, source: str, kid: str | None) -> None:
        self.events["unknown_kid",] += 1


def make_app(verifier: TokenVerifier, **options: Any) -> Starlette:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    @require_scopes("admin")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/me", me), Route("/admin", admin)])
    app.add_middleware(JWTGuard, verifier=verifier, **options)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_rejection_is_logged_once_without_token_secret_or_private_claims(
    jwt_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    client = TestClient(make_app(verifier))
    expired = jwt_issuer.mint({"email": "alice@example.com"}, expires_in=-3600)
    forged = expired[: expired.rindex(".")] + ".AAAA"
    with caplog.at_level(logging.INFO, logger="jwt_guard"):
        for token in (expired, forged, SECRET):
            assert client.get("/me", headers=bearer(token)).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert len(lines) == 3
    assert "code=expired" in lines[0]
    assert f"iss={jwt_issuer.issuer}" in lines[0]
    assert "kid='" in lines[0]
    assert "client=testclient" in lines[0]
    assert "sha256:" in lines[0]
    assert "code=" in lines[1]
    assert "code=malformed" in lines[2]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for leaked in (expired, forged, SECRET, "alice@example.com", expired.split(".")[1]):
        assert leaked not in everything


def test_observer_counts_match_a_scripted_sequence(jwt_issuer: LocalIssuer) -> None:
    recorder = Recorder()
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer, audience=jwt_issuer.audience, observer=recorder
    )
    client = TestClient(make_app(verifier))
    good = jwt_issuer.mint(scopes=["read"])
    script = [
        (good, "/me", 200),  # fresh: fetch + verify
        (good, "/me", 200),  # cached
        (good, "/admin", 403),  # verified (cached), then the route refuses
        (jwt_issuer.mint(expires_in=-600), "/me", 401),
        (None, "/me", 401),
        ("not a token!", "/me", 400),
        (jwt_issuer.mint(kid="nobody"), "/me", 401),  # unknown kid: one refetch, in vain
        (jwt_issuer.mint(kid="nobody-2"), "/me", 401),  # inside the cool-down: no refetch
    ]
    for token, path, status in script:
        headers = bearer(token) if token else {}
        assert client.get(path, headers=headers).status_code == status
    assert recorder.events == Counter(
        {
            ("verified", False): 1,
            ("verified", True): 2,
            ("rejected", "insufficient_scope"): 1,
            ("rejected", "expired"): 1,
            ("rejected", "missing_token"): 1,
            ("rejected", "invalid_request"): 1,
            ("rejected", "unknown_key"): 2,
            ("keys_fetched",): 2,
            ("unknown_kid",): 2,
        }
    )


def test_a_raising_observer_never_decides_a_request(
    jwt_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(GuardObserver):
        def verified(self, issuer: str, cached: bool) -> None:
            raise RuntimeError("metrics backend down")

    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer, audience=jwt_issuer.audience, observer=Broken()
    )
    assert verifier.verify(jwt_issuer.mint()).subject == "user-1"
    assert "observer Broken.verified raised" in caplog.text


def test_health_reports_stale_keys_with_their_age_during_an_outage(
    jwt_issuer: LocalIssuer, jwt_issuer_fault: Any, clock: FakeClock
) -> None:
    jwt_issuer.cache_max_age = 300
    recorder = Recorder()
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        clock=clock,
        monotonic=clock.monotonic,
        observer=recorder,
        jwks_options={"max_stale": 600, "timeout": (0.5, 0.5)},
        token_cache_size=0,
    )
    token = jwt_issuer.mint(expires_in=3600)
    verifier.verify(token)
    health = verifier.health()
    assert health["ok"] is True
    (status,) = health["issuers"].values()
    assert status["stale"] is False
    assert status["age"] == 0
    assert status["last_error"] is None

    with jwt_issuer_fault(JWKSFault.DOWN):
        clock.advance(400)  # past the 300 s lifetime: refresh fails, stale keys serve
        verifier.prefetch()
        assert verifier.verify(token).subject == "user-1"
        (status,) = verifier.health()["issuers"].values()
        assert status["stale"] is True
        assert status["usable"] is True
        assert status["age"] == pytest.approx(400)
        assert "ConnectionError" in status["last_error"]
        assert recorder.events["keys_failed",] >= 1
        assert recorder.events["keys_stale",] >= 1

        wsgi = WerkzeugClient(health_wsgi_app(verifier))
        assert wsgi.get("/").status_code == 200
        clock.advance(600)  # past max_stale: no usable keys
        response = wsgi.get("/")
        assert response.status_code == 503
        assert response.json is not None
        assert response.json["ok"] is False
        asgi = TestClient(health_asgi_app(verifier))
        assert asgi.get("/").status_code == 503


def test_prefetch_fails_the_boot_fast_on_a_wrong_jwks_url(jwt_issuer: LocalIssuer) -> None:
    wrong = jwt_issuer.issuer + "/no-such-jwks.json"
    options = {"issuer": jwt_issuer.issuer, "audience": jwt_issuer.audience, "jwks_url": wrong}
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"could not fetch signing keys: .*HTTP 404"):
        JWTGuardWSGI(lambda environ, start_response: [], prefetch=True, **options)
    app = Starlette()
    app.add_middleware(JWTGuard, prefetch=True, **options)
    with pytest.raises(RuntimeError, match="could not fetch signing keys"), TestClient(app):
        pass
    assert time.monotonic() - started < 5


def test_prefetch_at_lifespan_start_means_no_request_waits_for_keys(
    jwt_issuer: LocalIssuer,
) -> None:
    verifier = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    with TestClient(make_app(verifier, prefetch=True)) as client:
        assert jwt_issuer.jwks_requests == 1
        assert client.get("/me", headers=bearer(jwt_issuer.mint())).status_code == 200
        assert jwt_issuer.jwks_requests == 1


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


def test_a_readiness_probe_fetches_the_keys_of_a_pod_that_has_served_nothing(
    jwt_issuer: LocalIssuer,
) -> None:
    verifier = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    app = Starlette(routes=[Route("/ready", health_asgi_app(verifier))])
    app.add_middleware(JWTGuard, verifier=verifier, exclude_paths=["/ready"])
    response = TestClient(app).get("/ready")
    assert response.status_code == 200
    assert response.json()["issuers"][jwt_issuer.issuer]["keys"] >= 1
    assert WerkzeugClient(health_wsgi_app(verifier)).get("/").status_code == 200
    assert jwt_issuer.jwks_requests == 1


def test_a_refetch_that_keeps_the_key_keeps_the_cached_tokens(jwt_issuer: LocalIssuer) -> None:
    recorder = Recorder()
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        observer=recorder,
        jwks_options={"cooldown": 0},
    )
    token = jwt_issuer.mint()
    verifier.verify(token)
    jwt_issuer.rotate("RS256", keep_old=True)  # a new key is published next to the old one
    verifier.verify(jwt_issuer.mint())  # its unknown kid makes the verifier refetch
    assert recorder.events["keys_fetched",] == 2
    verifier.verify(token)  # the old key is still there: the cache still answers
    assert recorder.events["verified", True] == 1


def test_a_client_address_cannot_forge_log_fields(
    jwt_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    with caplog.at_level(logging.INFO, logger="jwt_guard"), pytest.raises(ExpiredToken):
        verifier.verify(jwt_issuer.mint(expires_in=-600), client="1.2.3.4 code=ok iss=evil")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert "client='1.2.3.4 code=ok iss=evil'" in line
    assert line.count("code=") == 2  # the real field and the quoted one


def test_single_claim_names_may_be_given_as_a_string(jwt_issuer: LocalIssuer) -> None:
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        scope_claims="roles",
        required_claims="roles",
    )
    assert verifier.verify(jwt_issuer.mint({"roles": ["admin"]})).scopes == {"admin"}
    with pytest.raises(MissingClaim):
        verifier.verify(jwt_issuer.mint({"r": "x"}))
