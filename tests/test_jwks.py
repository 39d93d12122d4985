"""The remote key source against a real JWKS server (``LocalIssuer`` on 127.0.0.1).

Time is a hand-advanced clock shared by the issuer (``iat``/``exp``) and the verifier (cache
lifetimes, cool-down, back-off, stale serving). Counts are read from the server itself. Background
refreshes are awaited by joining jwt_guard's fetch threads before counting.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import requests.adapters

from _core_helpers import Clock, settle_jwks_threads
from jwt_guard import ConfigurationError, Issuer, KeysUnavailable, TokenVerifier
from jwt_guard.errors import BadSignature, UnknownKey, WrongIssuer
from jwt_guard.sources._policy import Action, Attempt, Decision, Reason
from jwt_guard.sources.jwks import JWKSClient
from jwt_guard.testing import JWKSFault, LocalIssuer

MakeIssuer = Callable[..., LocalIssuer]
MakeVerifier = Callable[..., TokenVerifier]

# Short network timeouts for the fault tests, as in test_key_source_faults.py: loopback answers
# in milliseconds, and within 0.3 s even on a loaded 2-core machine (0.25 s seen at worst).
FAST = {"timeout": (0.3, 0.3), "total_timeout": 0.6}
HANG_READ_TIMEOUT = 0.1
"""The read timeout while a HANG is set (:func:`set_fault`): what ends a hung fetch, the one
real-time wait of a hang test, far below the 30 s the server holds it. Fetches that must succeed
keep FAST's 0.3 s."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


class GatedIssuer(LocalIssuer):
    """A ``LocalIssuer`` whose JWKS answers first call ``gate()`` once it is set (any time): it
    blocks until the test lets the answer go, so a fetch is held in flight by an event rather
    than by a delay."""

    def __init__(self, **options: Any) -> None:
        self.gate: Callable[[], object] | None = None
        super().__init__(**options)

    def jwks(self) -> dict[str, Any]:
        gate = self.gate
        if gate is not None:
            gate()
        return super().jwks()


def opened_by(event: threading.Event) -> Callable[[], object]:
    """A gate that holds each answer until ``event`` is set (10 s at most: a test that never
    sets it fails on its own assertions, not by hanging)."""
    return lambda: event.wait(10)


@pytest.fixture
def make_issuer(clock: Clock) -> Iterator[MakeIssuer]:
    """``make(**LocalIssuer options)``; ``gated=True`` makes a :class:`GatedIssuer`."""
    started: list[LocalIssuer] = []

    def make(gated: bool = False, **kwargs: Any) -> LocalIssuer:
        kwargs.setdefault("algorithms", ("ES256",))
        kwargs.setdefault("clock", clock)
        issuer = (GatedIssuer(**kwargs) if gated else LocalIssuer(**kwargs)).start()
        started.append(issuer)
        return issuer

    yield make
    for issuer in started:
        issuer.stop()
    settle_jwks_threads()


@pytest.fixture
def issuer(make_issuer: MakeIssuer) -> LocalIssuer:
    return make_issuer()


@pytest.fixture
def make_verifier(clock: Clock) -> Iterator[MakeVerifier]:
    """``make(local_issuer, jwks_options={...}, **kwargs)``: a verifier of that issuer's JWKS.

    Pass ``jwks_url=None`` to use discovery. Sessions are closed at teardown.
    """
    sessions: list[requests.Session] = []

    def make(local: LocalIssuer | None = None, /, **kwargs: Any) -> TokenVerifier:
        session = requests.Session()
        sessions.append(session)
        # The exact schedule (refresh at 80 %, back-off 1, 2, 4 ... s): jitter has tests of its
        # own (test_jitter_*), with an injected random source.
        options = {
            "session": session,
            "timeout": (2.0, 2.0),
            "total_timeout": 5.0,
            "jitter": False,
        }
        options.update(kwargs.pop("jwks_options", {}))
        if local is not None and "issuers" not in kwargs:
            kwargs.setdefault("issuer", local.issuer)
            kwargs.setdefault("audience", local.audience)
            kwargs.setdefault("jwks_url", local.jwks_url)
        return TokenVerifier(clock=clock, monotonic=clock.monotonic, jwks_options=options, **kwargs)

    yield make
    settle_jwks_threads()
    for session in sessions:
        session.close()


def _client(verifier: TokenVerifier) -> JWKSClient:
    (source,) = verifier.key_sources().values()
    assert isinstance(source, JWKSClient)
    return source


def set_fault(
    issuer: LocalIssuer, verifier: TokenVerifier, fault: JWKSFault | None, **options: Any
) -> None:
    """``issuer.set_fault``; while it is a HANG, the fetches of ``verifier`` (made with FAST)
    give up after ``HANG_READ_TIMEOUT`` (the key source reads its timeouts at each fetch)."""
    issuer.set_fault(fault, **options)
    connect, read = FAST["timeout"]
    hung = fault is JWKSFault.HANG
    _client(verifier).timeout = (connect, HANG_READ_TIMEOUT if hung else read)


# -- fetching ----------------------------------------------------------------------------------


def test_keys_are_fetched_once_and_reused(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(issuer)
    assert issuer.jwks_requests == 0  # nothing is fetched at construction
    for _ in range(5):
        assert verifier.verify(issuer.mint(scopes=["read"])).scopes == {"read"}
    settle_jwks_threads()
    assert issuer.jwks_requests == 1
    assert issuer.discovery_requests == 0


def test_discovery_finds_the_jwks(make_issuer: MakeIssuer, make_verifier: MakeVerifier) -> None:
    issuer = make_issuer(path="/realms/demo", algorithms=("EdDSA",))
    verifier = make_verifier(issuer, jwks_url=None)
    assert verifier.verify(issuer.mint()).issuer == issuer.issuer
    assert verifier.verify(issuer.mint()).subject == "user-1"
    settle_jwks_threads()
    assert (issuer.discovery_requests, issuer.jwks_requests) == (1, 1)


@pytest.mark.parametrize(
    "configured",
    [
        pytest.param(lambda url: url + "/", id="trailing-slash"),
        pytest.param(lambda url: url.replace("127.0.0.1", "localhost"), id="other-host-name"),
    ],
)
def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier, configured: Callable[[str], str]
) -> None:
    issuer = make_issuer(path="/realms/demo")
    claimed = configured(issuer.issuer)
    verifier = make_verifier(issuer, issuer=claimed, jwks_url=None, jwks_options=FAST)
    with pytest.raises(KeysUnavailable) as excinfo:
        verifier.verify(issuer.mint(issuer=claimed))
    assert excinfo.value.status == 503
    assert "issuer" in str(excinfo.value)
    assert issuer.discovery_requests >= 1
    assert issuer.jwks_requests == 0  # the lying document's jwks_uri is never fetched


def test_several_issuers_and_no_fetch_for_an_unknown_one(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    a = make_issuer(path="/a")
    b = make_issuer(path="/b", algorithms=("EdDSA",))
    stranger = make_issuer(path="/c")
    verifier = make_verifier(
        issuers=[
            Issuer(a.issuer, a.audience, jwks_url=a.jwks_url),
            Issuer(b.issuer, "b-api"),  # via discovery
        ]
    )
    for tok in (
        stranger.mint(),
        stranger.mint(headers={"jku": stranger.jwks_url, "x5u": stranger.jwks_url}),
        a.mint(issuer=stranger.issuer),
        a.mint(issuer=None),
    ):
        with pytest.raises(WrongIssuer):
            verifier.verify(tok)
    assert (a.request_count(), b.request_count(), stranger.request_count()) == (0, 0, 0)

    assert verifier.verify(a.mint()).issuer == a.issuer
    assert (a.jwks_requests, b.request_count()) == (1, 0)
    assert verifier.verify(b.mint(audience="b-api")).issuer == b.issuer
    with pytest.raises(UnknownKey):  # a's key, claiming to be b: b's keys do not hold it
        verifier.verify(a.mint(issuer=b.issuer, audience="b-api", alg="ES256"))
    settle_jwks_threads()
    assert stranger.request_count() == 0


def test_key_urls_in_the_token_are_never_fetched(
    issuer: LocalIssuer, make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    attacker = make_issuer()
    verifier = make_verifier(issuer)
    verifier.verify(issuer.mint())
    forged_kid = issuer.key().kid  # the attacker claims the real issuer's kid
    tokens = [
        attacker.mint(issuer=issuer.issuer, kid=forged_kid, headers={"jku": attacker.jwks_url}),
        attacker.mint(issuer=issuer.issuer, kid=forged_kid, headers={"x5u": attacker.jwks_url}),
        attacker.mint(
            issuer=issuer.issuer, kid=forged_kid, headers={"jwk": attacker.key().public_jwk()}
        ),
        attacker.mint(issuer=issuer.issuer, kid="attacker", headers={"jku": attacker.jwks_url}),
    ]
    for tok in tokens:
        with pytest.raises((UnknownKey, BadSignature)):
            verifier.verify(tok)
    settle_jwks_threads()
    assert attacker.request_count() == 0


# -- rotation ----------------------------------------------------------------------------------


def test_a_new_kid_is_fetched_at_once_then_one_refetch_per_cooldown(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.verify(issuer.mint())
    new = issuer.rotate("ES256", keep_old=True)
    # The first fetch was no unknown-kid refetch: it starts no cool-down (issue 10, item 32).
    assert verifier.verify(issuer.mint(key=new)).subject == "user-1"
    assert issuer.jwks_requests == 2
    newer = issuer.rotate("ES256", keep_old=True)
    with pytest.raises(UnknownKey):  # inside the cool-down of that refetch: none
        verifier.verify(issuer.mint(key=newer))
    settle_jwks_threads()
    assert issuer.jwks_requests == 2
    clock.advance(30)
    assert verifier.verify(issuer.mint(key=newer)).subject == "user-1"
    assert issuer.jwks_requests == 3


def test_a_removed_key_is_refused_after_the_next_successful_fetch(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer)
    old_key = issuer.key()
    cached = issuer.mint()
    verifier.verify(cached)  # now in the token cache
    new_key = issuer.rotate("ES256")  # the old key leaves the JWKS
    fresh_old = issuer.mint(key=old_key)
    verifier.verify(cached)  # the key set in memory still has the old key
    verifier.verify(fresh_old)
    clock.advance(31)
    verifier.verify(issuer.mint(key=new_key))  # unknown kid -> refetch
    assert issuer.jwks_requests == 2
    for tok in (cached, fresh_old, issuer.mint(key=old_key)):
        with pytest.raises(UnknownKey):
            verifier.verify(tok)


def test_past_its_lifetime_a_key_set_waits_for_the_refresh(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Issue 10, item 36: after an idle period longer than the lifetime, a key the provider has
    removed must not verify while the refresh runs, cached tokens included."""
    verifier = make_verifier(issuer, jwks_options={"refresh_ahead": 1.0})
    old_key = issuer.key()
    tok = issuer.mint(expires_in=3600)
    first = verifier.verify(tok)
    assert verifier.verify(tok) is first  # from the token cache
    issuer.rotate("ES256")
    # The refresh takes a while: answering from the stale set instead would take microseconds.
    issuer.set_fault(JWKSFault.SLOW, delay=0.05)
    clock.advance(300)  # max-age=300: the set is past its lifetime
    for token in (tok, issuer.mint(expires_in=3600, key=old_key)):
        with pytest.raises(UnknownKey):  # waited for the refresh, which removed the key
            verifier.verify(token)
    # The refresh, then one refetch for the old kid (a routine refresh starts no cool-down).
    assert issuer.jwks_requests == 3
    assert verifier.verify(issuer.mint()).subject == "user-1"  # the new key answers


async def test_past_its_lifetime_averify_waits_for_the_refresh_too(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer)
    tok = issuer.mint(expires_in=3600)
    await verifier.averify(tok)
    issuer.rotate("ES256")
    issuer.set_fault(JWKSFault.SLOW, delay=0.05)
    clock.advance(300)
    results = await asyncio.gather(
        *(verifier.averify(tok) for _ in range(8)), return_exceptions=True
    )
    assert [type(r) for r in results] == [UnknownKey] * 8
    # The refresh, then one refetch for the removed kid that all the others share.
    assert issuer.jwks_requests == 3


def test_past_its_lifetime_the_stale_set_answers_only_when_the_refresh_fails(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer, jwks_options={**FAST, "backoff": (5.0, 60.0)})
    verifier.verify(issuer.mint())
    issuer.set_fault(JWKSFault.ERROR_500)
    clock.advance(300)
    assert verifier.verify(issuer.mint()).subject == "user-1"  # the refresh failed: stale
    assert issuer.jwks_requests == 2
    assert _client(verifier).status()["stale"] is True
    clock.advance(4)  # inside the back-off: stale at once, no new attempt
    assert verifier.verify(issuer.mint()).subject == "user-1"
    assert issuer.jwks_requests == 2


# -- cache lifetime ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_age", "options", "ttl"),
    [
        pytest.param(120, {}, 120, id="max-age-honoured"),
        pytest.param(5, {"min_ttl": 30}, 30, id="clamped-to-min-ttl"),
        pytest.param(100_000, {"max_ttl": 600}, 600, id="clamped-to-max-ttl"),
        pytest.param(None, {"default_ttl": 200}, 200, id="no-header-default-ttl"),
    ],
)
def test_cache_control_max_age(
    make_issuer: MakeIssuer,
    make_verifier: MakeVerifier,
    clock: Clock,
    max_age: int | None,
    options: dict[str, Any],
    ttl: float,
) -> None:
    issuer = make_issuer(cache_max_age=max_age)
    verifier = make_verifier(issuer, jwks_options={"refresh_ahead": 1.0, **options})
    verifier.verify(issuer.mint())
    clock.advance(ttl - 1)
    verifier.verify(issuer.mint())
    settle_jwks_threads()
    assert issuer.jwks_requests == 1
    clock.advance(1)
    verifier.verify(issuer.mint())
    settle_jwks_threads()
    assert issuer.jwks_requests == 2


def test_refresh_ahead_runs_in_the_background(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    # refresh_ahead 0.8 of max-age=300 -> 240 s; a read timeout far longer than the test
    verifier = make_verifier(issuer, jwks_options={"timeout": (30.0, 30.0), "total_timeout": 60})
    verifier.verify(issuer.mint())
    issuer.set_fault(JWKSFault.HANG)  # the refresh cannot end before the fault is cleared
    clock.advance(240)
    assert verifier.verify(issuer.mint()).subject == "user-1"  # answered from memory...
    status = _client(verifier).status()
    assert (status["failures"], _client(verifier).fetch_count) == (0, 1)  # ...while it hangs
    issuer.set_fault(None)  # releases the held refresh, which then succeeds
    settle_jwks_threads()
    assert issuer.jwks_requests == 2
    assert _client(verifier).fetch_count == 2


# -- faults ------------------------------------------------------------------------------------

FAULTS = [
    pytest.param(JWKSFault.DOWN, {}, id="down"),
    pytest.param(JWKSFault.HANG, {}, id="hang"),
    pytest.param(JWKSFault.ERROR_500, {}, id="error-500"),
    pytest.param(JWKSFault.HTML, {}, id="html"),
    pytest.param(JWKSFault.INVALID_JSON, {}, id="invalid-json"),
    pytest.param(JWKSFault.NOT_AN_OBJECT, {}, id="not-an-object"),
    pytest.param(JWKSFault.NO_KEYS, {}, id="no-keys"),
    pytest.param(JWKSFault.HUGE, {"body_size": 2 * 1024 * 1024}, id="huge"),
    pytest.param(JWKSFault.REDIRECT_LOOP, {}, id="redirect-loop"),
]


@pytest.mark.parametrize(("fault", "fault_options"), FAULTS)
def test_cold_start_fault_is_503_then_recovers_after_backoff(
    issuer: LocalIssuer,
    make_verifier: MakeVerifier,
    clock: Clock,
    fault: JWKSFault,
    fault_options: dict[str, Any],
) -> None:
    verifier = make_verifier(issuer, jwks_options={**FAST, "backoff": (5.0, 60.0)})
    set_fault(issuer, verifier, fault, **fault_options)
    started = time.monotonic()
    with pytest.raises(KeysUnavailable) as excinfo:
        verifier.verify(issuer.mint())
    assert time.monotonic() - started < 3.0  # bounded by the timeouts, never a hang
    assert excinfo.value.status == 503
    assert excinfo.value.retry_after >= 1
    # A hung fetch gives up in 0.1 s, maybe before the server's thread has counted it.
    hung = fault is JWKSFault.HANG
    attempts = issuer.wait_for_requests(1, issuer.jwks_url) if hung else issuer.jwks_requests

    set_fault(issuer, verifier, None)
    with pytest.raises(KeysUnavailable) as again:  # inside the back-off: no new attempt
        verifier.verify(issuer.mint())
    assert 1 <= again.value.retry_after <= 5
    assert issuer.jwks_requests == attempts

    clock.advance(5)
    assert verifier.verify(issuer.mint()).subject == "user-1"
    assert issuer.jwks_requests == attempts + 1


class _SlowSession(requests.Session):
    """A real session whose every request takes ``seconds`` of the verifier's clock."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.clock.advance(self.seconds)
        return super().get(*args, **kwargs)


@pytest.mark.parametrize(
    ("fault", "fetch_seconds"),
    [
        pytest.param(JWKSFault.ERROR_500, 4.0, id="error-500-after-4s"),
        pytest.param(JWKSFault.HTML, 1.5, id="html-after-1.5s"),
    ],
)
def test_backoff_counts_from_the_failure_not_from_the_start_of_the_fetch(
    issuer: LocalIssuer,
    make_verifier: MakeVerifier,
    clock: Clock,
    fault: JWKSFault,
    fetch_seconds: float,
) -> None:
    # A fetch that fails after the timeouts (a hanging provider) must still be followed by the
    # back-off: requests right after it get a quick 503, not one more wait on the provider.
    session = _SlowSession(clock, fetch_seconds)
    verifier = make_verifier(issuer, jwks_options={"session": session, "backoff": (1.0, 60.0)})
    issuer.set_fault(fault)
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.mint())
    attempts = issuer.jwks_requests
    with pytest.raises(KeysUnavailable) as again:  # inside the back-off: no new attempt
        verifier.verify(issuer.mint())
    assert again.value.retry_after == 1
    assert issuer.jwks_requests == attempts
    session.close()


@pytest.mark.parametrize(("fault", "fault_options"), FAULTS)
def test_after_warm_up_cached_keys_serve_until_max_stale(
    issuer: LocalIssuer,
    make_verifier: MakeVerifier,
    clock: Clock,
    fault: JWKSFault,
    fault_options: dict[str, Any],
) -> None:
    verifier = make_verifier(issuer, jwks_options={**FAST, "max_stale": 600})
    verifier.verify(issuer.mint())  # fetched at t0; max-age=300 -> expires t0+300
    set_fault(issuer, verifier, fault, **fault_options)

    for step in (300, 200, 399):  # t0+300: expired; t0+500; t0+899: the last stale second
        clock.advance(step)
        assert verifier.verify(issuer.mint()).subject == "user-1"
        settle_jwks_threads()
    status = _client(verifier).status()
    assert status["stale"] is True
    assert status["usable"] is True
    assert status["last_error"]

    clock.advance(1)  # t0 + 300 + 600: past max_stale
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.mint())

    set_fault(issuer, verifier, None)
    clock.advance(60)  # past the longest back-off
    assert verifier.verify(issuer.mint()).subject == "user-1"
    assert _client(verifier).status()["stale"] is False


def test_hang_past_the_timeout_is_quick_with_averify(
    issuer: LocalIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(issuer, jwks_options=FAST)
    set_fault(issuer, verifier, JWKSFault.HANG)  # holds each request for 30 s

    async def go() -> None:
        with pytest.raises(KeysUnavailable):
            await asyncio.wait_for(verifier.averify(issuer.mint()), timeout=3.0)

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 3.0


def test_broken_keys_do_not_poison_the_good_ones(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer = make_issuer(algorithms=("ES256", "RS256"))
    issuer.set_fault(JWKSFault.BROKEN_KEYS)
    verifier = make_verifier(issuer)
    assert verifier.verify(issuer.mint(alg="ES256")).subject == "user-1"
    assert verifier.verify(issuer.mint(alg="RS256")).subject == "user-1"
    with pytest.raises(UnknownKey):
        verifier.verify(issuer.mint(alg="ES256", kid="broken-ec-point"))
    assert len(_client(verifier).current() or ()) == 2


def test_remote_symmetric_keys_are_refused_unless_allowed(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer = make_issuer(algorithms=("ES256", "HS256"), include_secret_keys=True)
    assert any(k["kty"] == "oct" for k in issuer.jwks()["keys"])
    refusing = make_verifier(issuer, algorithms=["ES256", "HS256"])
    refusing.verify(issuer.mint(alg="ES256"))
    with pytest.raises(UnknownKey):
        refusing.verify(issuer.mint(alg="HS256"))

    allowing = make_verifier(
        issuers=[
            Issuer(
                issuer.issuer,
                issuer.audience,
                jwks_url=issuer.jwks_url,
                algorithms=["ES256", "HS256"],
                allow_remote_oct=True,
            )
        ]
    )
    assert allowing.verify(issuer.mint(alg="HS256")).subject == "user-1"


def test_only_symmetric_keys_remote_is_keys_unavailable(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer = make_issuer(algorithms=("HS256",), include_secret_keys=True)
    with pytest.raises(KeysUnavailable):
        make_verifier(issuer, algorithms=["HS256"]).verify(issuer.mint())


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        pytest.param({"jwks_url": "http://idp.example.com/jwks"}, False, id="http-remote"),
        pytest.param({"jwks_url": "ftp://idp.example.com/jwks"}, False, id="ftp"),
        pytest.param({"jwks_url": "/jwks.json"}, False, id="relative"),
        pytest.param({"jwks_url": "https:///jwks.json"}, False, id="no-host"),
        pytest.param({"issuer": "http://idp.example.com"}, False, id="http-discovery"),
        pytest.param(
            {"jwks_url": "http://idp.example.com/jwks", "jwks_options": {"allow_http": True}},
            True,
            id="http-allowed",
        ),
        pytest.param({"jwks_url": "https://idp.example.com/jwks"}, True, id="https"),
        pytest.param({"jwks_url": "http://127.0.0.1:9/jwks"}, True, id="http-127.0.0.1"),
        pytest.param({"jwks_url": "http://localhost:9/jwks"}, True, id="http-localhost"),
        pytest.param({"jwks_url": "http://[::1]:9/jwks"}, True, id="http-ipv6-loopback"),
        pytest.param({"jwks_options": {"min_ttl": 0}}, False, id="zero-min-ttl"),
        pytest.param({"jwks_options": {"refresh_ahead": 1.5}}, False, id="refresh-ahead-over-1"),
    ],
)
def test_jwks_url_rules_at_construction(
    make_verifier: MakeVerifier, kwargs: dict[str, Any], ok: bool
) -> None:
    kwargs.setdefault("issuer", "https://idp.example.com")
    kwargs.setdefault("audience", "api")
    if "jwks_url" not in kwargs and kwargs["issuer"].startswith("https"):
        kwargs["jwks_url"] = "https://idp.example.com/jwks"
    if ok:
        make_verifier(**kwargs)
    else:
        with pytest.raises(ConfigurationError):
            make_verifier(**kwargs)


# -- single flight and cool-down ---------------------------------------------------------------


def test_concurrent_cold_start_threads_share_one_fetch(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer = make_issuer(gated=True)
    verifier = make_verifier(issuer)
    everyone = threading.Event()  # the fetch is held until all 64 have arrived
    issuer.gate = opened_by(everyone)
    arrival = threading.Barrier(64, action=everyone.set)
    tokens = [issuer.mint() for _ in range(64)]

    def one(tok: str) -> Any:
        arrival.wait(timeout=30)
        return verifier.verify(tok)

    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(one, tokens))
    assert [c.subject for c in results] == ["user-1"] * 64
    assert issuer.jwks_requests == 1


class Arrivals:
    """Counts tasks as they arrive; ``everyone`` is set when the ``expected``-th does."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.everyone = threading.Event()

    def arrive(self) -> None:  # on the event loop's thread only
        self.count += 1
        if self.count == self.expected:
            self.everyone.set()


async def test_concurrent_cold_start_tasks_share_one_fetch(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer = make_issuer(gated=True)
    verifier = make_verifier(issuer)
    arrivals = Arrivals(64)  # the fetch is held until all 64 tasks have arrived
    issuer.gate = opened_by(arrivals.everyone)
    tokens = [issuer.mint() for _ in range(64)]

    async def one(tok: str) -> Any:
        arrivals.arrive()
        return await verifier.averify(tok)

    results = await asyncio.wait_for(asyncio.gather(*(one(t) for t in tokens)), timeout=10)
    assert len(results) == 64
    assert issuer.jwks_requests == 1


def test_unknown_kids_cause_at_most_one_refetch_per_cooldown(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.verify(issuer.mint())
    tokens = [issuer.mint(kid=secrets.token_hex(8)) for _ in range(1000)]
    for tok in tokens[:500]:  # the first refetches once, and starts the cool-down
        with pytest.raises(UnknownKey):
            verifier.verify(tok)
    assert issuer.jwks_requests == 2
    clock.advance(30)  # one refetch becomes possible, then a new cool-down
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(lambda t: _error_of(verifier, t), tokens[500:]))
    assert set(outcomes) == {UnknownKey}
    settle_jwks_threads()
    assert issuer.jwks_requests == 3


def _error_of(verifier: TokenVerifier, tok: str) -> type[Exception] | None:
    try:
        verifier.verify(tok)
    except Exception as exc:
        return type(exc)
    return None


async def test_averify_keeps_the_event_loop_responsive_during_a_fetch(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    # The JWKS answer waits until the loop has ticked three times: the fetch is in flight for
    # all three. A fetch run on the loop would block it, the ticker with it, and fail at its
    # read timeout (2 s) having seen one tick at most.
    ticked = threading.Event()
    issuer = make_issuer(gated=True)
    issuer.gate = opened_by(ticked)
    verifier = make_verifier(issuer)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks == 3:
                ticked.set()

    task = asyncio.create_task(ticker())
    claims = await asyncio.wait_for(verifier.averify(issuer.mint()), timeout=5)
    done.set()
    await task
    assert claims.subject == "user-1"
    assert issuer.jwks_requests == 1
    assert ticks >= 3


def test_rotation_under_load_every_thread_waits_for_the_one_refetch(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Issue 10, item 31: right after a rotation, 32 concurrent requests carrying the new kid all
    wait for one refetch and pass (before: 31 got 401 unknown_key at once)."""
    issuer = make_issuer(gated=True)
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.verify(issuer.mint())
    clock.advance(60)
    new = issuer.rotate("ES256", keep_old=True)
    everyone = threading.Event()  # the refetch is held until all 32 have arrived
    issuer.gate = opened_by(everyone)
    tokens = [issuer.mint(key=new, subject=f"user-{n}") for n in range(32)]
    barrier = threading.Barrier(32, action=everyone.set)

    def one(tok: str) -> str | type[Exception]:
        barrier.wait(timeout=30)
        try:
            return verifier.verify(tok).subject or ""
        except Exception as exc:
            return type(exc)

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(one, tokens))
    assert outcomes == [f"user-{n}" for n in range(32)]
    assert issuer.jwks_requests == 2


async def test_rotation_under_load_every_task_waits_for_the_one_refetch(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    issuer = make_issuer(gated=True)
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    await verifier.averify(issuer.mint())
    clock.advance(60)
    new = issuer.rotate("ES256", keep_old=True)
    arrivals = Arrivals(32)  # the refetch is held until all 32 tasks have arrived
    issuer.gate = opened_by(arrivals.everyone)
    tokens = [issuer.mint(key=new, subject=f"user-{n}") for n in range(32)]

    async def one(tok: str) -> Any:
        arrivals.arrive()
        return await verifier.averify(tok)

    results = await asyncio.wait_for(
        asyncio.gather(*(one(t) for t in tokens), return_exceptions=True), 30
    )
    assert [getattr(r, "subject", r) for r in results] == [f"user-{n}" for n in range(32)]
    assert issuer.jwks_requests == 2


def test_a_routine_refresh_starts_no_cooldown(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Issue 10, item 32: a rotation seconds after a routine refresh is picked up at once."""
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.prefetch()  # start-up
    clock.advance(240)  # refresh-ahead: a background refresh
    verifier.verify(issuer.mint())
    settle_jwks_threads()
    assert issuer.jwks_requests == 2
    clock.advance(5)
    new = issuer.rotate("ES256", keep_old=True)
    assert verifier.verify(issuer.mint(key=new)).subject == "user-1"
    assert issuer.jwks_requests == 3


def test_a_due_refresh_is_started_by_unknown_kid_traffic_inside_the_cooldown(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Issue 10, item 32: the cool-down limits unknown-kid refetches, not the routine refresh."""
    verifier = make_verifier(issuer, jwks_options={"cooldown": 1000})
    verifier.verify(issuer.mint())
    with pytest.raises(UnknownKey):  # an unknown-kid refetch: the cool-down runs to t+1000
        verifier.verify(issuer.mint(kid="nobody"))
    assert issuer.jwks_requests == 2
    new = issuer.rotate("ES256", keep_old=True)
    with pytest.raises(UnknownKey):  # inside the cool-down, the set not due yet
        verifier.verify(issuer.mint(key=new))
    assert issuer.jwks_requests == 2
    clock.advance(240)  # the set is due for its refresh: this request starts and awaits it
    assert verifier.verify(issuer.mint(key=new)).subject == "user-1"
    assert issuer.jwks_requests == 3


# -- clocks: every interval on the monotonic clock (issue 10, items 29 and 34) ----------------


@pytest.mark.parametrize("step", [3600, -3600], ids=["forward", "back"])
def test_a_wall_clock_step_moves_no_interval(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock, step: float
) -> None:
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.verify(issuer.mint())
    clock.step_wall(step)
    verifier.verify(issuer.mint())  # neither expired (forward) nor stretched (back)
    assert issuer.jwks_requests == 1
    status = _client(verifier).status()
    assert status["age"] == 0
    assert status["stale"] is False
    clock.advance(240)  # the refresh comes on schedule, whatever the wall clock did
    verifier.verify(issuer.mint())
    settle_jwks_threads()
    assert issuer.jwks_requests == 2


def test_after_a_step_forward_and_back_a_rotated_key_is_fetched(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """The reported incident: an hour forward, a refetch, an hour back; the provider rotates.
    Before, the last fetch and the cool-down both read "an hour from now": 401 for an hour."""
    verifier = make_verifier(issuer, jwks_options={"cooldown": 30})
    verifier.verify(issuer.mint())
    clock.step_wall(3600)
    first = issuer.rotate("ES256", keep_old=True)
    assert verifier.verify(issuer.mint(key=first)).subject == "user-1"  # the cool-down starts
    clock.step_wall(-3600)
    clock.advance(31)
    second = issuer.rotate("ES256", keep_old=True)
    assert verifier.verify(issuer.mint(key=second)).subject == "user-1"
    assert issuer.jwks_requests == 3


def test_after_a_step_back_the_backoff_is_not_frozen(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Item 34: a cold start during an outage, the clock steps back an hour, the provider
    recovers: Retry-After stays the back-off's, and the next attempt comes when it ends."""
    verifier = make_verifier(issuer, jwks_options={**FAST, "backoff": (2.0, 60.0)})
    issuer.set_fault(JWKSFault.DOWN)
    with pytest.raises(KeysUnavailable) as first:
        verifier.verify(issuer.mint())
    assert first.value.retry_after == 2
    clock.step_wall(-3600)
    issuer.set_fault(None)
    with pytest.raises(KeysUnavailable) as again:
        verifier.verify(issuer.mint())
    assert again.value.retry_after == 2
    assert verifier.health()["ok"] is False
    clock.advance(2)
    assert verifier.verify(issuer.mint()).subject == "user-1"
    assert verifier.health()["ok"] is True


def test_after_a_step_back_a_removed_key_stops_verifying_on_schedule(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    """Item 34: before, a removed key kept verifying for an hour after a back-step."""
    verifier = make_verifier(issuer)
    old_key = issuer.key()
    cached = issuer.mint(expires_in=7200)
    verifier.verify(cached)
    clock.step_wall(-3600)
    issuer.rotate("ES256")  # the old key leaves the JWKS
    clock.advance(300)  # the set's lifetime, on the monotonic clock
    for token in (cached, issuer.mint(key=old_key)):
        with pytest.raises(UnknownKey):
            verifier.verify(token)
    assert issuer.jwks_requests >= 2


def test_health_never_reports_a_negative_age(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer)
    verifier.verify(issuer.mint())
    clock.advance(10)
    clock.step_wall(-3600)
    (status,) = verifier.health()["issuers"].values()
    assert status["age"] == 10
    assert status["fetched_at"] == clock() + 3600 - 10  # the wall-clock stamp of the fetch


def test_both_clocks_reach_the_key_source(make_verifier: MakeVerifier, clock: Clock) -> None:
    verifier = make_verifier(issuer="https://idp.example.com", audience="api")
    client = _client(verifier)
    assert (client.clock, client.monotonic) == (clock, clock.monotonic)
    default = TokenVerifier(issuer="https://idp.example.com", audience="api")
    assert _client(default).monotonic is time.monotonic


# -- a fetch past its deadline, explicit refresh, fork ------------------------------------------


def test_a_request_waits_total_timeout_in_all(clock: Clock) -> None:
    """Each wait ends at the fetch's deadline, and a request that joined an older fetch and then
    needs one of its own stops at ``total_timeout`` after its first wait (the fetch runs on)."""
    client = JWKSClient("https://idp.example.com/jwks", monotonic=clock.monotonic)
    now = clock.monotonic()
    own_fetch = Attempt(1, Reason.COLD, now, now + 10)
    assert client._waiting(Decision(Action.WAIT, attempt=own_fetch), None)[1:] == (
        10,
        now + 10,
        False,
    )
    older = Attempt(1, Reason.REFRESH, now - 8, now + 2)  # joined 8 s into its 10
    _, seconds, until, own = client._waiting(Decision(Action.WAIT, attempt=older), None)
    assert (seconds, until, own) == (2, now + 10, False)
    clock.advance(2)
    refetch = Attempt(2, Reason.UNKNOWN_KID, now + 2, now + 12)
    _, seconds, until, own = client._waiting(Decision(Action.WAIT, attempt=refetch), until)
    assert (seconds, until, own) == (8, now + 10, True)


def test_a_fetch_thread_that_cannot_start_is_a_failed_fetch(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads: 503 with the back-off, not an unexpected error (and no waiter hangs)."""
    verifier = make_verifier(issuer)
    client = _client(verifier)

    def cannot_start(*args: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(client._flights, "launch", cannot_start)
    with pytest.raises(KeysUnavailable) as excinfo:
        verifier.verify(issuer.mint())
    assert excinfo.value.retry_after == 1
    assert "could not start a fetch" in str(client.last_error)
    monkeypatch.undo()
    clock.advance(1)
    assert verifier.verify(issuer.mint()).subject == "user-1"


def test_refresh_raises_the_public_error(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer, jwks_options=FAST)
    client = _client(verifier)
    client.refresh()  # fetches even with no request asking
    client.refresh()  # and again, though the set is fresh
    assert issuer.jwks_requests == 2
    issuer.set_fault(JWKSFault.ERROR_500)
    with pytest.raises(KeysUnavailable) as excinfo:
        client.refresh()
    assert "HTTP 500" in str(excinfo.value)
    assert excinfo.value.retry_after == 1
    assert verifier.verify(issuer.mint()).subject == "user-1"  # the last good set serves


class _Signalling(requests.adapters.HTTPAdapter):
    """A user's adapter that says when a request has been sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = threading.Event()

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.set()
        return super().send(*args, **kwargs)


def test_a_fetch_in_flight_at_fork_time_does_not_hold_the_child(
    make_issuer: MakeIssuer, make_verifier: MakeVerifier
) -> None:
    """Issue 10, item 33: a worker forked while the parent's fetch was in flight (and the key
    source's and the token cache's locks held) fetches for itself; before, it waited on a fetch
    that does not exist in it. A real fork of this process (no interpreter to start)."""
    # No JWKS answer before two requests are held: the parent's fetch stays in flight until the
    # child has made its own (a child waiting on the parent's fetch would make none: its alarm
    # ends it at 60 s, and the barrier lets the parent's fetch go then).
    both = threading.Barrier(2)
    issuer = make_issuer(gated=True)
    issuer.gate = lambda: both.wait(60)
    adapter = _Signalling()
    session = requests.Session()
    session.mount("http://", adapter)
    verifier = make_verifier(
        issuer, jwks_options={"session": session, "timeout": (20.0, 20.0), "total_timeout": 30.0}
    )
    client = _client(verifier)
    cache = verifier._cache
    assert cache is not None
    token = issuer.mint()
    parent = threading.Thread(target=verifier.verify, args=(token,), daemon=True)
    parent.start()
    assert adapter.sent.wait(30)  # the parent's fetch is in flight (held until the child's)
    client._lock.acquire()  # as if request threads held the locks at the moment of the fork
    cache._lock.acquire()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        pid = os.fork()
    if pid == 0:  # the child: it reports on the pipe and never returns into pytest
        outcome = b"no outcome"
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(60)  # a hang kills it: a failure
            subject = verifier.verify(token).subject
            outcome = b"ok" if subject == "user-1" else repr(subject).encode()
        except BaseException as exc:
            outcome = repr(exc).encode()
        finally:
            os.write(write, outcome)
            os._exit(0)
    os.close(write)
    client._lock.release()
    cache._lock.release()
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read()
    _, status = os.waitpid(pid, 0)
    parent.join(30)
    session.close()
    assert outcome == b"ok", f"child: {outcome!r}, exit status {status}"
    assert issuer.jwks_requests == 2  # the parent's fetch and the child's own


# -- health ------------------------------------------------------------------------------------


def test_status_reports_the_key_set(
    issuer: LocalIssuer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(issuer)
    client = _client(verifier)
    assert client.status()["usable"] is False
    assert client.current() is None
    verifier.verify(issuer.mint())
    status = client.status()
    assert status["kids"] == [issuer.key().kid]
    assert status["usable"] is True
    assert status["stale"] is False
    assert status["last_error"] is None
    assert client.fetch_count == 1
