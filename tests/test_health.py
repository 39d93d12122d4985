"""Health (``jwt_guard.guard.health``): ``verifier.health()`` and the readiness apps for ASGI
and WSGI; what an open endpoint may say (ready or not, nothing more), what ``details=True`` adds,
stale keys with their age, and one log line per change of readiness."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from _observe import Recorder
from jwt_guard import (
    ConfigurationError,
    JWTGuard,
    TokenVerifier,
    health_asgi_app,
    health_wsgi_app,
)
from jwt_guard.testing import JWKSFault, LocalIssuer


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
        assert response.json == {"ok": False, "issuers": {jwt_issuer.issuer: {"ready": False}}}
        asgi = TestClient(health_asgi_app(verifier))
        assert asgi.get("/").status_code == 503


def _probes(verifier: TokenVerifier, details: bool = False) -> list[Callable[[], Any]]:
    """GET on the ASGI and the WSGI health app: each returns ``(status, json body, raw body)``."""
    asgi = TestClient(health_asgi_app(verifier, details=details))
    wsgi = WerkzeugClient(health_wsgi_app(verifier, details=details))

    def via_asgi() -> tuple[int, Any, bytes]:
        response = asgi.get("/ready")
        return response.status_code, response.json(), response.content

    def via_wsgi() -> tuple[int, Any, bytes]:
        response = wsgi.get("/ready")
        return response.status_code, response.json, response.data

    return [via_asgi, via_wsgi]


def test_the_open_readiness_answer_says_only_ready_or_not(
    jwt_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """An open path must not tell anyone which URLs the server fetches, what failed with which
    error, or which kids it holds: with item 2 of issue 10 that was a blind port-scan oracle."""
    wrong = jwt_issuer.issuer + "/no-such-jwks.json"
    good = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    down = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        jwks_url=wrong,
        jwks_options={"timeout": (0.5, 0.5)},
    )
    for probe in _probes(good):
        assert probe()[:2] == (200, {"ok": True, "issuers": {jwt_issuer.issuer: {"ready": True}}})
    with caplog.at_level(logging.INFO, logger="jwt_guard"):
        for probe in _probes(down):
            status, body, raw = probe()
            assert (status, body) == (
                503,
                {"ok": False, "issuers": {jwt_issuer.issuer: {"ready": False}}},
            )
            for secret in (b"no-such-jwks", b"404", b"HTTP", b"jwks_uri", b"kid", b"failures"):
                assert secret not in raw
    # The why goes to the log, once per change of readiness, not once per probe.
    assert "HTTP 404 from " + wrong in caplog.text
    assert caplog.text.count("health not ready") == 2  # one per app: each app tracks its own


def test_details_true_puts_the_full_report_in_the_body(jwt_issuer: LocalIssuer) -> None:
    wrong = jwt_issuer.issuer + "/no-such-jwks.json"
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        jwks_url=wrong,
        jwks_options={"timeout": (0.5, 0.5)},
    )
    for probe in _probes(verifier, details=True):
        status, body, _ = probe()
        assert status == 503
        (report,) = body["issuers"].values()
        assert report["source"] == wrong
        assert report["last_error"] == f"HTTP 404 from {wrong}"
        assert report["failures"] >= 1
    # The Python API keeps the details for operators, whatever the endpoints show.
    (report,) = verifier.health()["issuers"].values()
    assert report["last_error"] == f"HTTP 404 from {wrong}"
    with pytest.raises(ConfigurationError, match="details"):
        health_asgi_app(verifier, details="yes")  # type: ignore[arg-type]


def test_the_health_log_says_when_readiness_changes(
    jwt_issuer: LocalIssuer, jwt_issuer_fault: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        clock=clock,
        monotonic=clock.monotonic,
        jwks_options={"timeout": (0.5, 0.5), "backoff": (1.0, 1.0)},
    )
    app = WerkzeugClient(health_wsgi_app(verifier))
    with caplog.at_level(logging.INFO, logger="jwt_guard.health"):
        with jwt_issuer_fault(JWKSFault.DOWN):
            for _ in range(5):
                assert app.get("/").status_code == 503
                clock.advance(2)  # past each back-off: every probe fetches and fails
        assert app.get("/").status_code == 200
        assert app.get("/").status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "jwt_guard.health"]
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"health not ready issuer={jwt_issuer.issuer} ")
    assert messages[1] == "health ready again"


def test_a_readiness_probe_fetches_the_keys_of_a_pod_that_has_served_nothing(
    jwt_issuer: LocalIssuer,
) -> None:
    verifier = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    app = Starlette(routes=[Route("/ready", health_asgi_app(verifier))])
    app.add_middleware(JWTGuard, verifier=verifier, exclude_paths=["/ready"])
    response = TestClient(app).get("/ready")
    assert response.status_code == 200
    assert response.json()["issuers"][jwt_issuer.issuer] == {"ready": True}
    (status,) = verifier.health()["issuers"].values()
    assert status["keys"] >= 1
    assert WerkzeugClient(health_wsgi_app(verifier)).get("/").status_code == 200
    assert jwt_issuer.jwks_requests == 1
