"""Operating jwt_guard: its log lines (one per refusal, whichever adapter refuses; nothing
secret; no raw control character) and start-up prefetch.

The observer interface is tested in test_events.py, health in test_health.py, configuration from
the environment in test_env.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from _adapter_apps import FRAMEWORKS, ROUTE_REFUSES_OPEN_ME, Driver, driver
from _asgi_helpers import call_raw
from _observe import Recorder, bearer, make_app
from jwt_guard import (
    ConfigurationError,
    ErrorResponse,
    GuardObserver,
    Issuer,
    JWTGuard,
    JWTGuardError,
    JWTGuardWSGI,
    KeysUnavailable,
    TokenVerifier,
)
from jwt_guard.core.verifier import fingerprint
from jwt_guard.errors import ExpiredToken, MissingClaim
from jwt_guard.testing import JWKSFault, LocalIssuer

SECRET = "s3cr3t-value-that-must-never-be-logged-0123456789"


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


# -- every refusal, every adapter: one log line, one observer event -----------------------------

Auth = Callable[[LocalIssuer, LocalIssuer], "str | None"]


@dataclass(frozen=True)
class Refusal:
    path: str
    auth: Auth
    status: int
    frameworks: frozenset[str] = frozenset(FRAMEWORKS)


def _token(make: Callable[[LocalIssuer, LocalIssuer], str]) -> Auth:
    return lambda good, down: f"Bearer {make(good, down)}"


REFUSAL_PATHS = {
    "no-token": Refusal("/me", lambda g, d: None, 401),
    "malformed-header": Refusal("/me", lambda g, d: "Bearer a b", 400),
    "another-scheme": Refusal("/me", lambda g, d: "Basic eA==", 401),
    "junk-token": Refusal("/me", lambda g, d: "Bearer junk.junk.junk", 401),
    "expired": Refusal("/me", _token(lambda g, d: g.mint(expires_in=-3600)), 401),
    "keys-unavailable": Refusal("/me", _token(lambda g, d: d.mint()), 503),
    "route-403": Refusal("/admin", _token(lambda g, d: g.mint()), 403),
    "route-401-open-path": Refusal("/open/admin", lambda g, d: None, 401),
    # Flask's require_claims() and FastAPI's jwt_claims on an open path
    "route-401-claims-helper": Refusal(
        "/open/me", lambda g, d: None, 401, frozenset(ROUTE_REFUSES_OPEN_ME)
    ),
}
MATRIX = [
    pytest.param(framework, refusal, id=f"{framework}-{name}")
    for framework in FRAMEWORKS
    for name, refusal in REFUSAL_PATHS.items()
    if framework in refusal.frameworks
]


@pytest.fixture(scope="module")
def two_issuers() -> Iterator[tuple[LocalIssuer, LocalIssuer]]:
    """A working issuer and one whose JWKS endpoint answers 500 (its tokens get 503)."""
    with LocalIssuer() as good, LocalIssuer() as down:
        down.set_fault(JWKSFault.ERROR_500)
        yield good, down


@dataclass
class Guarded:
    framework: str
    app: Driver
    recorder: Recorder


@pytest.fixture(scope="module")
def guarded(
    request: pytest.FixtureRequest, two_issuers: tuple[LocalIssuer, LocalIssuer]
) -> Guarded:
    recorder = Recorder()
    verifier = TokenVerifier(
        issuers=[Issuer(i.issuer, i.audience, jwks_url=i.jwks_url) for i in two_issuers],
        observer=recorder,
    )
    return Guarded(request.param, driver(request.param, verifier), recorder)


def _rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")]


def _rejected_events(recorder: Recorder) -> int:
    return sum(n for event, n in recorder.events.items() if event[0] == "rejected")


@pytest.mark.parametrize(("guarded", "refusal"), MATRIX, indirect=["guarded"])
def test_every_refusal_is_logged_once_and_observed_once(
    refusal: Refusal,
    guarded: Guarded,
    two_issuers: tuple[LocalIssuer, LocalIssuer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """README: "every refused request is logged exactly once", whichever adapter and whichever
    layer refuses (header, token, key source, route); Flask's require_claims() 401 was neither
    logged nor observed."""
    guarded.recorder.events.clear()
    with caplog.at_level(logging.INFO):
        reply = guarded.app.get(refusal.path, refusal.auth(*two_issuers))
    assert reply.status == refusal.status, reply.body
    (line,) = _rejections(caplog)
    assert f"status={refusal.status}" in line
    assert _rejected_events(guarded.recorder) == 1
    # Django does not log the same refusal again as "WARNING django.request: Unauthorized"
    assert not [r for r in caplog.records if r.name == "django.request"]


@pytest.mark.parametrize("guarded", FRAMEWORKS, indirect=True)
def test_an_accepted_request_logs_no_rejection(
    guarded: Guarded, two_issuers: tuple[LocalIssuer, LocalIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    guarded.recorder.events.clear()
    admin = f"Bearer {two_issuers[0].mint(subject='root', scopes=['admin'])}"
    with caplog.at_level(logging.INFO):
        for path in ("/me", "/admin"):
            assert guarded.app.get(path, admin).status == 200
    assert _rejections(caplog) == []
    assert _rejected_events(guarded.recorder) == 0


@pytest.mark.parametrize(
    ("framework", "scopes", "code"),
    [
        pytest.param("starlette", None, 401, id="starlette-middleware"),
        # require_scopes refuses before accept like the guard: the 403 where the server can
        pytest.param("starlette", [], 403, id="starlette-decorator"),
        pytest.param("fastapi", None, 401, id="fastapi-middleware"),
        pytest.param("fastapi", [], 1008, id="fastapi-dependency"),
    ],
)
def test_every_websocket_refusal_is_logged_once_and_observed_once(
    framework: str,
    scopes: list[str] | None,
    code: int,
    two_issuers: tuple[LocalIssuer, LocalIssuer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = two_issuers[0]
    recorder = Recorder()
    verifier = TokenVerifier(
        issuer=good.issuer, audience=good.audience, jwks_url=good.jwks_url, observer=recorder
    )
    app = driver(framework, verifier)
    auth = None if scopes is None else f"Bearer {good.mint(scopes=scopes)}"
    with caplog.at_level(logging.INFO):
        assert app.websocket("/ws", auth) == code
    assert len(_rejections(caplog)) == 1
    assert _rejected_events(recorder) == 1
    assert app.websocket("/ws", f"Bearer {good.mint(scopes=['chat'])}") == 1000


# -- what a 403 line says -----------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_403_line_names_client_subject_token_and_missing_scopes(
    framework: str, two_issuers: tuple[LocalIssuer, LocalIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    """A 403 used to log ``iss=None kid=None client=None token=-``: nothing to act on."""
    good = two_issuers[0]
    verifier = TokenVerifier(issuer=good.issuer, audience=good.audience, jwks_url=good.jwks_url)
    token = good.mint(subject="carol", scopes=["read"])
    with caplog.at_level(logging.INFO):
        reply = driver(framework, verifier).get("/admin", f"Bearer {token}", client="10.0.0.7")
    assert reply.status == 403
    (line,) = _rejections(caplog)
    assert "code=insufficient_scope status=403" in line
    assert f"iss={good.issuer}" in line
    assert "kid='" in line
    assert "client=10.0.0.7" in line
    assert f"token={fingerprint(token)}" in line
    assert "missing scopes: admin" in line
    assert "sub=carol" in line
    assert token not in line


# -- no outside control character reaches a log record ------------------------------------------

CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))] + ["\u2028", "\u2029"]
"""Every character that can break or disguise a log line: C0, DEL, C1, U+2028, U+2029."""
GROUPS = [CONTROLS[i : i + 12] for i in range(0, len(CONTROLS), 12)]
"""A handful of characters per request, so no field's length limit hides one."""


def _hostile(group: list[str]) -> str:
    return "".join(f"<{c}>" for c in group)


def _assert_no_raw_control(caplog: pytest.LogCaptureFixture, group: list[str]) -> int:
    """No record holds a raw control character: none in its message, and in a traceback only
    the newlines between frames (a hostile one would show as ``<\n>``). Returns how many records
    carry the hostile value (escaped), so a test can tell its sites were reached."""
    formatter = logging.Formatter()
    reached = 0
    for record in caplog.records:
        message = record.getMessage()
        assert not any(c in message for c in CONTROLS), (record.name, message)
        if record.exc_info:
            trace = formatter.formatException(record.exc_info)
            assert not any(c in trace for c in CONTROLS if c != "\n"), (record.name, trace)
            assert not any(f"<{c}>" in trace for c in group), (record.name, trace)
        reached += "<\\x" in message or "<\\u" in message
    return reached


HOSTILE_HOLDER = [""]


def _broken_handler(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
    """An error_handler whose exception text carries outside bytes."""
    raise RuntimeError(f"handler could not shape {exc.detail} for {HOSTILE_HOLDER[0]}")


@pytest.mark.parametrize("group", GROUPS, ids=[f"{ord(g[0]):#06x}" for g in GROUPS])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_control_character_reaches_an_adapter_log_line(
    framework: str,
    group: list[str],
    two_issuers: tuple[LocalIssuer, LocalIssuer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CR/LF in a request path forged a line through the FastAPI "no JWTGuard in front"
    warning. Every adapter log site gets every control character: the client address, the
    token's subject and kid, the request path and method, an error_handler's exception text."""
    good = two_issuers[0]
    hostile = _hostile(group)
    HOSTILE_HOLDER[0] = hostile
    verifier = TokenVerifier(issuer=good.issuer, audience=good.audience, jwks_url=good.jwks_url)
    app = driver(framework, verifier, error_handler=_broken_handler)
    unguarded = driver(framework, None)
    sub_token = good.mint(subject=hostile, scopes=["read"])
    kid_token = good.mint(headers={"kid": hostile})
    with caplog.at_level(logging.DEBUG):
        assert app.get("/admin", f"Bearer {sub_token}", client=hostile).status == 403
        assert app.get("/me", f"Bearer {kid_token}", client=hostile).status == 401
        assert app.get("/me", "Basic eA==", client=hostile).status == 401
        assert app.get("/open/admin", None, client=hostile).status == 401
        assert unguarded.get("/admin", None, client=hostile, prefix="/" + hostile).status == 401
    assert _assert_no_raw_control(caplog, group) >= 5


async def test_no_control_character_reaches_the_asgi_only_log_sites(
    two_issuers: tuple[LocalIssuer, LocalIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    """The other sites: a duck-typed verifier that raises, a raising observer, and a failed
    start-up prefetch (its text goes to the server, which logs it)."""
    good = two_issuers[0]
    hostile = "".join(_hostile(group) for group in GROUPS)

    class Exploding(TokenVerifier):
        async def averify(self, token: str | bytes, *, client: str | None = None) -> Any:
            raise RuntimeError(f"boom {hostile}")

        async def aprefetch(self) -> None:
            raise KeysUnavailable(f"jwks at {hostile} failed")

    class LoudObserver(GuardObserver):
        def rejected(self, code: str, issuer: str | None) -> None:
            raise ValueError(f"metrics down {hostile}")

    options = {"issuer": good.issuer, "audience": good.audience, "jwks_url": good.jwks_url}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    lifespan = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        return lifespan.pop(0) if lifespan else {"type": "lifespan.shutdown"}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    with caplog.at_level(logging.DEBUG):
        app = JWTGuard(Starlette(), verifier=Exploding(**options))
        assert (await call_raw(app, headers=[(b"authorization", b"Bearer a.b.c")])).status == 401
        observed = TokenVerifier(**options, observer=LoudObserver())
        with pytest.raises(ExpiredToken):
            observed.verify(good.mint(expires_in=-600))
        starting = JWTGuard(inner, verifier=Exploding(**options), prefetch=True)
        with pytest.raises(RuntimeError, match="could not fetch signing keys"):
            await starting({"type": "lifespan"}, receive, send)
    (failed,) = [m for m in sent if m["type"] == "lifespan.startup.failed"]
    for c in CONTROLS:
        assert f"<{c}>" not in failed["message"]
    assert _assert_no_raw_control(caplog, CONTROLS) >= 2
