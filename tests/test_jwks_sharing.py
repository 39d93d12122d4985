"""Key sets shared through a fleet's store (``sources/_sharing.py`` and the JWKS client).

First the steps on their own, driven by hand (each ``Sleep`` and ``Fetch`` the steps ask for is
answered by the test: no threads, no clock but the one passed in), with the in-process
``MemoryKeySetStore``. Then verifiers sharing a store, against a real JWKS server
(``LocalIssuer`` on 127.0.0.1): in process with the memory store, and across "workers" (each a
verifier with its own Redis connection) on a real ``redis-server`` (tests/_redis.py).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from _core_helpers import Clock, settle_jwks_threads
from _redis import RedisServer
from jwt_guard import KeysUnavailable, TokenVerifier
from jwt_guard.sources._sharing import (
    Failed,
    Fetch,
    Fetched,
    Obtained,
    Sleep,
    lock_name,
    obtain,
)
from jwt_guard.stores import _envelope
from jwt_guard.stores.fleet import Stores
from jwt_guard.stores.memory import MemoryKeySetStore
from jwt_guard.testing import JWKSFault, LocalIssuer

NAME = "https://idp.example.test/jwks"
SECRET = "fleet-secret-" + "x" * 32
WAIT = 10.0  # a bound for things that take milliseconds: never reached


class Ticks:
    """A monotonic and a wall clock the test moves by hand (together)."""

    def __init__(self) -> None:
        self.mono, self.wall = 100.0, 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def _doc(*kids: str) -> dict[str, Any]:
    return {"keys": [{"kty": "oct", "kid": kid, "k": "c2VjcmV0"} for kid in kids]}


def _build(document: Mapping[str, Any]) -> frozenset[str]:
    keys = document.get("keys")
    if not isinstance(keys, list) or any(k.get("kid") == "bad" for k in keys):
        raise ValueError("a key failed its checks")
    return frozenset(k["kid"] for k in keys)


Drive = Callable[..., tuple[Obtained[frozenset[str]] | Failed, list[str]]]


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def store(ticks: Ticks) -> MemoryKeySetStore:
    return MemoryKeySetStore(monotonic=lambda: ticks.mono)


@pytest.fixture
def drive(ticks: Ticks, store: MemoryKeySetStore) -> Drive:
    """Run the steps of one attempt; ``fetch`` answers a Fetch (a document, or an exception),
    ``on_sleep`` runs at each Sleep (after the clock moved). Returns the outcome and the effects
    the steps asked for, in order."""

    def run(
        *,
        held_at: float | None = None,
        serving: bool = False,
        fetch: dict[str, Any] | Exception | None = None,
        on_sleep: Callable[[int], None] = lambda n: None,
        use: Any = store,
    ) -> tuple[Obtained[frozenset[str]] | Failed, list[str]]:
        steps = obtain(
            use,
            NAME,
            _build,
            held_at=held_at,
            serving=serving,
            wall=lambda: ticks.wall,
            mono=lambda: ticks.mono,
            deadline=ticks.mono + 10.0,
            lock_ttl=10.0,
        )
        effects: list[str] = []
        reply: Any = None
        error: Exception | None = None
        try:
            while True:
                effect = steps.throw(error) if error is not None else steps.send(reply)
                reply, error = None, None
                if isinstance(effect, Sleep):
                    effects.append("sleep")
                    ticks.advance(effect.seconds)
                    on_sleep(effects.count("sleep"))
                else:
                    assert isinstance(effect, Fetch)
                    effects.append("fetch")
                    if isinstance(fetch, Exception):
                        error = fetch
                    else:
                        assert fetch is not None, "the steps fetched when they should not have"
                        reply = Fetched(_build(fetch), fetch, 300.0)
        except StopIteration as done:
            return done.value, effects
        except Failed as failed:
            return failed, effects

    return run


# -- the steps -----------------------------------------------------------------------------------


def test_a_newer_fresh_stored_set_is_taken_without_a_fetch(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks
) -> None:
    store.put(NAME, _doc("k1"), ticks.wall - 30, 300.0)
    outcome, effects = drive(held_at=ticks.wall - 400)
    assert effects == []
    assert isinstance(outcome, Obtained)
    assert (outcome.keyset, outcome.origin, outcome.age) == (frozenset({"k1"}), "store", 30.0)


def test_nothing_stored_the_lock_holder_fetches_stores_and_releases(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks
) -> None:
    outcome, effects = drive(fetch=_doc("k1"))
    assert effects == ["fetch"]
    assert isinstance(outcome, Obtained)
    assert outcome.origin == "provider"
    stored = store.get(NAME)
    assert stored is not None
    assert stored.document == _doc("k1")
    assert stored.fetched_at == ticks.wall
    assert store.try_lock(lock_name(NAME), 1.0) is not None  # released


def test_the_set_held_is_due_so_the_same_stored_set_means_a_fetch(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks
) -> None:
    store.put(NAME, _doc("k1"), ticks.wall - 250, 300.0)
    outcome, effects = drive(held_at=ticks.wall - 250, serving=True, fetch=_doc("k2"))
    assert effects == ["fetch"]
    assert isinstance(outcome, Obtained)
    assert outcome.keyset == frozenset({"k2"})


def test_another_worker_fetching_is_waited_for_and_its_set_taken(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks
) -> None:
    assert store.try_lock(lock_name(NAME), 10.0) is not None  # the other worker

    def other_worker_stores(sleeps: int) -> None:
        if sleeps == 3:
            store.put(NAME, _doc("k9"), ticks.wall, 300.0)

    outcome, effects = drive(on_sleep=other_worker_stores)
    assert effects == ["sleep"] * 3  # no fetch of its own
    assert isinstance(outcome, Obtained)
    assert (outcome.keyset, outcome.origin) == (frozenset({"k9"}), "store")


@pytest.mark.parametrize(
    ("serving", "sleeps"),
    [
        pytest.param(True, 9, id="serving-waits-briefly"),  # BRIEF 1 s, POLL 0.1 s
        pytest.param(False, 99, id="cold-waits-to-the-deadline"),  # deadline 10 s
    ],
)
def test_a_lock_held_and_nothing_new_is_a_failed_attempt(
    drive: Drive, store: MemoryKeySetStore, serving: bool, sleeps: int
) -> None:
    assert store.try_lock(lock_name(NAME), 60.0) is not None
    outcome, effects = drive(held_at=None if not serving else 1.0, serving=serving)
    assert effects == ["sleep"] * sleeps
    assert isinstance(outcome, Failed)
    assert outcome.fallback is None
    assert "another worker holds the fetch lock" in str(outcome)


def test_a_failed_fetch_keeps_the_lock_and_hands_over_the_stored_set(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks
) -> None:
    """A cold worker while the provider is down: the stored set (past its lifetime) serves."""
    store.put(NAME, _doc("k1"), ticks.wall - 900, 300.0)
    outcome, effects = drive(fetch=ConnectionError("connection refused"))
    assert effects == ["fetch"]
    assert isinstance(outcome, Failed)
    assert outcome.fallback is not None
    assert (outcome.fallback.keyset, outcome.fallback.age) == (frozenset({"k1"}), 900.0)
    assert "connection refused" in str(outcome)
    assert store.try_lock(lock_name(NAME), 1.0) is None  # the fleet's back-off: still held
    ticks.advance(10.0)
    assert store.try_lock(lock_name(NAME), 1.0) is not None  # until it expires


def test_a_store_that_does_not_answer_means_fetching_directly(drive: Drive, ticks: Ticks) -> None:
    class Down:
        enabled = True

        def get(self, issuer: str) -> None:
            raise ConnectionError("redis is down")

        def put(self, *args: Any) -> bool:
            raise ConnectionError("redis is down")

        def try_lock(self, name: str, ttl: float) -> str | None:
            raise ConnectionError("redis is down")

        def unlock(self, name: str, token: str) -> bool:
            raise ConnectionError("redis is down")

    outcome, effects = drive(fetch=_doc("k1"), use=Down())
    assert effects == ["fetch"]
    assert isinstance(outcome, Obtained)
    assert outcome.origin == "provider"


def test_sharing_off_fetches_directly_and_stores_nothing(drive: Drive, ticks: Ticks) -> None:
    class Off(MemoryKeySetStore):
        @property
        def enabled(self) -> bool:
            return False

    off = Off()
    outcome, effects = drive(fetch=_doc("k1"), use=off)
    assert effects == ["fetch"]
    assert isinstance(outcome, Obtained)
    assert off.get(NAME) is None


def test_a_stored_document_that_fails_the_key_checks_is_not_used(
    drive: Drive, store: MemoryKeySetStore, ticks: Ticks, caplog: pytest.LogCaptureFixture
) -> None:
    store.put(NAME, _doc("bad"), ticks.wall - 10, 300.0)
    with caplog.at_level(logging.WARNING, "jwt_guard"):
        outcome, effects = drive(fetch=_doc("k1"))
    assert effects == ["fetch"]
    assert isinstance(outcome, Obtained)
    assert outcome.keyset == frozenset({"k1"})
    assert "shared key set refused" in caplog.text


# -- verifiers sharing a store in one process ----------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> Iterator[LocalIssuer]:
    with LocalIssuer(algorithms=("ES256",), clock=clock) as running:
        yield running
    settle_jwks_threads()


def _verifier(issuer: LocalIssuer, clock: Clock, keysets: Any, **jwks: Any) -> TokenVerifier:
    options = {"timeout": (2.0, 2.0), "total_timeout": 5.0, "jitter": False, **jwks}
    return TokenVerifier(
        issuer=issuer.issuer,
        audience=issuer.audience,
        jwks_url=issuer.jwks_url,
        clock=clock,
        monotonic=clock.monotonic,
        jwks_options={**options, "keyset_store": keysets} if keysets is not None else options,
    )


def test_verifiers_sharing_a_store_make_one_fetch_per_refresh(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keysets = MemoryKeySetStore(monotonic=clock.monotonic)
    fleet = [_verifier(issuer, clock, keysets) for _ in range(4)]
    for verifier in fleet:  # cold start: one fetches, the others take its set
        verifier.verify(issuer.mint())
    assert issuer.jwks_requests == 1
    for _ in range(3):  # three refresh periods (refresh at 80 % of max-age 300)
        clock.advance(241)
        for verifier in fleet:
            verifier.verify(issuer.mint())
            settle_jwks_threads()
    assert issuer.jwks_requests == 4


def test_a_cold_verifier_serves_the_stored_set_while_the_provider_is_down(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keysets = MemoryKeySetStore(monotonic=clock.monotonic)
    _verifier(issuer, clock, keysets).verify(issuer.mint())  # a warm neighbour stored the set
    issuer.set_fault(JWKSFault.DOWN)
    token = issuer.mint()
    alone = _verifier(issuer, clock, None)
    with pytest.raises(KeysUnavailable):
        alone.verify(token)  # without the store: nothing to serve
    cold = _verifier(issuer, clock, keysets)
    assert cold.verify(token).subject == "user-1"
    clock.advance(900)  # the stored set is past its lifetime: served stale, like a neighbour's
    cold = _verifier(issuer, clock, keysets)
    assert cold.verify(issuer.mint()).subject == "user-1"
    assert cold.health()["issuers"][issuer.issuer]["stale"] is True
    clock.advance(3600)  # past max_stale (1 h after its lifetime): no worker serves it
    with pytest.raises(KeysUnavailable):
        _verifier(issuer, clock, keysets).verify(issuer.mint())


def test_a_stored_key_passes_every_check_a_fetched_one_does(
    issuer: LocalIssuer, clock: Clock
) -> None:
    """Whoever writes the store cannot hand a verifier a key its configuration refuses: a
    symmetric key from a remote source (RFC 8725 3.1) stays refused."""
    keysets = MemoryKeySetStore(monotonic=clock.monotonic)
    secret_jwk = {"kty": "oct", "kid": "forged", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg"}
    keysets.put(issuer.jwks_url, {"keys": [secret_jwk]}, clock(), 300.0)
    issuer.set_fault(JWKSFault.DOWN)
    with pytest.raises(KeysUnavailable):
        _verifier(issuer, clock, keysets).verify(issuer.mint())


# -- workers on one Redis ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis"))
    running.start()
    yield running
    running.stop()


class Fleet:
    """``fleet(issuer, clock, secret=SECRET)``: a worker (a verifier on its own Redis connection,
    started up), in a namespace of this test's own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self.built: list[TokenVerifier] = []

    def __call__(
        self, issuer: LocalIssuer, clock: Clock, secret: str | None = SECRET
    ) -> TokenVerifier:
        verifier = TokenVerifier(
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            clock=clock,
            monotonic=clock.monotonic,
            jwks_options={"jitter": False},
            store={"url": self.url, "namespace": self.namespace, "secret": secret},
        )
        assert isinstance(verifier.store, Stores)
        assert verifier.store.kind == "redis"
        self.built.append(verifier)
        verifier.prefetch()  # start-up: the deny-list loads (503 until then), keys arrive
        return verifier


@pytest.fixture
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    built = Fleet(redis_server.url)
    yield built
    settle_jwks_threads()
    for verifier in built.built:
        verifier.close()


def test_workers_on_redis_share_the_sealed_key_set(
    issuer: LocalIssuer, clock: Clock, fleet: Fleet
) -> None:
    for _ in range(3):
        fleet(issuer, clock).verify(issuer.mint())
    assert issuer.jwks_requests == 1
    issuer.set_fault(JWKSFault.DOWN)
    assert fleet(issuer, clock).verify(issuer.mint()).subject == "user-1"  # a cold worker


def test_without_the_fleet_secret_key_sets_are_not_shared(
    issuer: LocalIssuer, clock: Clock, fleet: Fleet
) -> None:
    for _ in range(2):
        fleet(issuer, clock, secret=None).verify(issuer.mint())
    assert issuer.jwks_requests == 2
    issuer.set_fault(JWKSFault.DOWN)
    with pytest.raises(KeysUnavailable):
        fleet(issuer, clock, secret=None).verify(issuer.mint())


def test_a_key_set_written_into_redis_without_the_secret_is_refused(
    issuer: LocalIssuer,
    clock: Clock,
    fleet: Fleet,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever can write Redis cannot inject keys: a value sealed with another secret, or none,
    is refused like hostile input, and the worker fetches from the provider itself."""
    fleet(issuer, clock).verify(issuer.mint())
    (key,) = redis_server.client().keys(f"{fleet.namespace}:keyset:*")
    with LocalIssuer(algorithms=("ES256",)) as attacker:  # any key set: it is sealed wrong
        forged = _envelope.seal(
            b"an attacker's guess at the secret", issuer.jwks_url, attacker.jwks(), clock(), 3600
        )
    redis_server.client().set(key, forged)
    with caplog.at_level(logging.WARNING, "jwt_guard.stores"):
        second = fleet(issuer, clock)
        assert second.verify(issuer.mint()).subject == "user-1"
    assert issuer.jwks_requests == 2  # the provider's keys, fetched again
    assert "the MAC does not verify" in caplog.text


def test_redis_down_key_sharing_falls_back_to_direct_fetching(
    issuer: LocalIssuer, clock: Clock, fleet: Fleet, tmp_path: Path
) -> None:
    dead = RedisServer(tmp_path)  # a server that is never started: connection refused
    verifier = TokenVerifier(
        issuer=issuer.issuer,
        audience=issuer.audience,
        jwks_url=issuer.jwks_url,
        clock=clock,
        monotonic=clock.monotonic,
        # on_stale="accept": the deny-list never loads (Redis is down), and this test is about
        # the key sets; with the default a dead Redis refuses every request (test_fleet.py).
        store={"url": dead.url, "secret": SECRET, "timeout": 0.2, "on_stale": "accept"},
    )
    try:
        started = time.monotonic()
        assert verifier.verify(issuer.mint()).subject == "user-1"
        # About one 0.2 s timeout per store call; 5 s of headroom on a loaded machine.
        assert time.monotonic() - started < 5.0
        status = verifier.health()["store"]["keysets"]
        assert status["failing"] is True
        assert status["enabled"] is True
    finally:
        verifier.close()


def test_stored_values_are_json_documents_never_a_secret(
    issuer: LocalIssuer, clock: Clock, fleet: Fleet, redis_server: RedisServer
) -> None:
    fleet(issuer, clock).verify(issuer.mint())
    (key,) = redis_server.client().keys(f"{fleet.namespace}:keyset:*")
    raw = redis_server.client().get(key)
    assert isinstance(raw, bytes)
    assert raw
    assert SECRET.encode() not in raw
    document = json.loads(raw.split(b".", 3)[3])
    assert document == issuer.jwks()
