"""A verifier with a store (``TokenVerifier(store=...)``): revocation on the request path, its
failure policy, health, events, configuration.

One process first (the deny-list in memory, nothing configured), then "workers" sharing a real
``redis-server`` (tests/_redis.py): each worker is a verifier with its own connection. Waits are
on the stores' own change notifications with generous timeouts; a real-time bound that is the
point of a test says why it has the headroom it has.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _adapter_apps import FRAMEWORKS, driver
from _asgi_helpers import TestClient, bearer
from _redis import RedisServer
from jwt_guard import (
    ConfigurationError,
    GuardObserver,
    JWTGuard,
    TokenVerifier,
    health_asgi_app,
)
from jwt_guard.errors import RevokedToken, StoreUnavailable
from jwt_guard.stores.fleet import Revocations, Stores
from jwt_guard.stores.memory import MemoryRevocationStore
from jwt_guard.stores.redis import (
    RedisConnection,
    RedisKeySetStore,
    RedisReplayStore,
    RedisRevocationStore,
)
from jwt_guard.testing import LocalIssuer

WAIT = 10.0  # how long a test waits for something that takes milliseconds: never reached
SECRET = "a-fleet-secret-of-at-least-32-bytes!"


def _verifier(issuer: LocalIssuer, **options: Any) -> TokenVerifier:
    return TokenVerifier(
        issuer=issuer.issuer, audience=issuer.audience, jwks_url=issuer.jwks_url, **options
    )


# -- one process: nothing to configure -----------------------------------------------------------


def test_one_process_needs_no_store_and_pays_for_none(jwt_issuer: LocalIssuer) -> None:
    verifier = _verifier(jwt_issuer)
    token = jwt_issuer.mint()
    verifier.verify(token)
    assert "store" not in verifier.health()  # nothing built until a revocation is asked for
    assert verifier._revoked is None  # the request path has no lookup to make
    assert "store=" not in repr(verifier)


def test_a_revoked_token_is_refused_cached_or_not(jwt_issuer: LocalIssuer) -> None:
    verifier = _verifier(jwt_issuer)
    token, other = jwt_issuer.mint(), jwt_issuer.mint()
    claims = verifier.verify(token)
    assert verifier.cached(token) is not None  # in the verified-token cache
    verifier.revocations.revoke(claims["jti"], until=claims["exp"])
    for check in (verifier.verify, verifier.cached):
        with pytest.raises(RevokedToken) as refused:
            check(token)
        assert (refused.value.status, refused.value.code) == (401, "revoked")
    assert verifier.verify(other).subject == "user-1"  # another token of the same subject
    assert verifier.revocations.unrevoke(claims["jti"]) is True
    assert verifier.cached(token) is not None
    assert verifier.revocations.unrevoke(claims["jti"]) is False


async def test_averify_refuses_a_revoked_token(jwt_issuer: LocalIssuer) -> None:
    verifier = _verifier(jwt_issuer)
    token = jwt_issuer.mint()
    claims = await verifier.averify(token)
    verifier.revocations.revoke(claims["jti"], until=claims["exp"])
    with pytest.raises(RevokedToken):
        await verifier.averify(token)


def test_signing_a_subject_out_refuses_its_older_tokens_only(jwt_issuer: LocalIssuer) -> None:
    verifier = _verifier(jwt_issuer)
    now = time.time()
    before = jwt_issuer.mint(subject="alice", issued_at=now - 60)
    without_iat = jwt_issuer.mint({"iat": None}, subject="alice")  # the claim left out
    bob = jwt_issuer.mint(subject="bob", issued_at=now - 60)
    for token in (before, without_iat, bob):
        verifier.verify(token)
    verifier.revocations.revoke_subject("alice", issued_before=now - 30)
    for token in (before, without_iat):  # no iat: nothing shows it came after the sign-out
        with pytest.raises(RevokedToken):
            verifier.cached(token)
    assert verifier.verify(bob).subject == "bob"
    after = jwt_issuer.mint(subject="alice", issued_at=now)  # signed in again
    assert verifier.verify(after).subject == "alice"
    (entry,) = verifier.revocations.list()
    assert (entry.kind, entry.value, entry.issued_before) == ("sub", "alice", now - 30)
    assert verifier.revocations.unrevoke_subject("alice") is True
    assert verifier.verify(before).subject == "alice"


def test_an_entry_lapses_at_its_until(jwt_issuer: LocalIssuer) -> None:
    now = [time.time()]
    verifier = _verifier(jwt_issuer, clock=lambda: now[0])
    token = jwt_issuer.mint(expires_in=3600)
    claims = verifier.verify(token)
    verifier.revocations.revoke(claims["jti"], until=now[0] + 60)
    with pytest.raises(RevokedToken):
        verifier.verify(token)
    now[0] += 61
    assert verifier.verify(token).subject == "user-1"
    assert verifier.revocations.list() == ()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_adapter_answers_a_revoked_token_with_401_revoked(
    jwt_issuer: LocalIssuer, framework: str
) -> None:
    verifier = _verifier(jwt_issuer)
    token = jwt_issuer.mint()
    app = driver(framework, verifier)
    assert app.get("/me", f"Bearer {token}").status == 200  # now in the token cache
    claims = verifier.verify(token)
    verifier.revocations.revoke(claims["jti"], until=claims["exp"])
    reply = app.get("/me", f"Bearer {token}")
    assert reply.status == 401
    challenge = {k.lower(): v for k, v in reply.headers.items()}["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert 'error_description="The access token has been revoked"' in challenge


def test_a_deny_list_of_ones_own_is_checked_like_the_stores(jwt_issuer: LocalIssuer) -> None:
    shared = MemoryRevocationStore()
    first, second = (_verifier(jwt_issuer, revocation=shared) for _ in range(2))
    token = jwt_issuer.mint()
    claims = first.verify(token)
    second.verify(token)
    Revocations(shared).revoke(claims["jti"], until=claims["exp"])
    for verifier in (first, second):
        with pytest.raises(RevokedToken):
            verifier.cached(token)
    assert first.store.revocation is shared


def test_store_and_revocation_together_are_refused(jwt_issuer: LocalIssuer) -> None:
    with pytest.raises(ConfigurationError, match="give revocation= or store=, not both"):
        _verifier(jwt_issuer, store=Stores.memory(), revocation=MemoryRevocationStore())


# -- configuration ---------------------------------------------------------------------------------


def test_store_urls_and_dicts_build_the_stores() -> None:
    memory = Stores.from_url("memory://")
    assert memory.kind == "memory"
    assert memory.keysets is None
    redis = Stores.from_url("redis://user:pw@127.0.0.1:1/0", secret=SECRET, on_stale="accept")
    assert redis.kind == "redis"
    assert isinstance(redis.revocation, RedisRevocationStore)
    assert isinstance(redis.replay, RedisReplayStore)
    assert isinstance(redis.keysets, RedisKeySetStore)
    assert redis.keysets.enabled
    assert redis.revocation.on_stale == "accept"
    assert "pw" not in repr(redis)
    assert "***" in repr(redis)
    no_secret = Stores.coerce("TokenVerifier", {"url": "unix:///tmp/redis.sock"})
    assert no_secret is not None
    assert no_secret.keysets is not None
    assert not no_secret.keysets.enabled
    for built in (redis, no_secret):
        built.close()


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        pytest.param(
            {"JWT_GUARD_FLEET_SECRET": SECRET},
            "needs 'url' \\(JWT_GUARD_STORE_URL\\)",
            id="secret-without-url",
        ),
        pytest.param(
            {"JWT_GUARD_STORE_URL": "redis://h/0", "JWT_GUARD_FLEET_SECRET": "short"},
            "at least 32 bytes",
            id="short-secret",
        ),
        pytest.param(
            {"JWT_GUARD_STORE_URL": "redis://h/0", "JWT_GUARD_STORE_ON_STALE": "maybe"},
            "must be 'refuse' or 'accept'",
            id="on-stale",
        ),
        pytest.param(
            {"JWT_GUARD_STORE_URL": "redis://h/0", "JWT_GUARD_STORE_MAX_STALENESS": "soon"},
            "JWT_GUARD_STORE_MAX_STALENESS='soon'",
            id="staleness",
        ),
        pytest.param({"JWT_GUARD_STORE_URL": "http://h/"}, "redis://", id="scheme"),
        pytest.param({"JWT_GUARD_STOER_URL": "redis://h/0"}, "JWT_GUARD_STORE_URL", id="typo"),
    ],
)
def test_bad_store_variables_are_configuration_errors(environ: dict[str, str], match: str) -> None:
    base = {"JWT_GUARD_ISSUER": "https://idp.example.test/", "JWT_GUARD_AUDIENCE": "api"}
    with pytest.raises(ConfigurationError, match=match) as caught:
        TokenVerifier.from_env(environ={**base, **environ})
    secret = environ.get("JWT_GUARD_FLEET_SECRET")
    assert secret is None or secret not in str(caught.value)  # never echoed


def test_the_environment_builds_a_redis_store() -> None:
    verifier = TokenVerifier.from_env(
        environ={
            "JWT_GUARD_ISSUER": "https://idp.example.test/",
            "JWT_GUARD_AUDIENCE": "api",
            "JWT_GUARD_STORE_URL": "redis://127.0.0.1:1/0",
            "JWT_GUARD_FLEET_SECRET": SECRET,
            "JWT_GUARD_STORE_NAMESPACE": "myapp",
            "JWT_GUARD_STORE_TIMEOUT": "0.25",
            "JWT_GUARD_STORE_MAX_STALENESS": "12",
            "JWT_GUARD_STORE_ON_STALE": "accept",
        }
    )
    try:
        store = verifier.store
        assert store.kind == "redis"
        assert isinstance(store.revocation, RedisRevocationStore)
        assert (store.revocation.max_staleness, store.revocation.on_stale) == (12.0, "accept")
        assert store.keysets is not None
        assert store.keysets.enabled
        (source,) = verifier.key_sources().values()
        assert getattr(source, "keyset_store", None) is store.keysets  # the JWKS client shares
        assert SECRET not in repr(verifier)
        assert SECRET not in str(verifier.health())
    finally:
        verifier.close()


# -- a fleet on one Redis --------------------------------------------------------------------------


class Monotonic:
    """A monotonic clock the test moves by hand (a replica's staleness runs on it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Workers:
    """Verifiers that share one Redis, each on its own connection, in this test's namespace."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self.stores: list[Stores] = []

    def stores_for(
        self, *, monotonic: Monotonic | None = None, timeout: float = 1.0, **revocation: Any
    ) -> Stores:
        connection = RedisConnection(self.url, namespace=self.namespace, timeout=timeout)
        revocation.setdefault("check_interval", 0.05)
        if monotonic is not None:
            revocation["monotonic"] = monotonic
        stores = Stores(
            revocation=RedisRevocationStore(connection, **revocation),
            replay=RedisReplayStore(connection),
            keysets=RedisKeySetStore(connection, secret=SECRET),
        )
        self.stores.append(stores)
        return stores

    def worker(
        self, issuer: LocalIssuer, observer: GuardObserver | None = None, **store: Any
    ) -> TokenVerifier:
        verifier = _verifier(issuer, store=self.stores_for(**store), observer=observer)
        verifier.prefetch()  # start-up: the deny-list loads, the keys arrive
        return verifier

    def close(self) -> None:
        for stores in self.stores:
            stores.close()


@pytest.fixture
def workers(server: RedisServer) -> Iterator[Workers]:
    built = Workers(server.url)
    yield built
    built.close()


def _refuses(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)  # from the token cache when it holds the token
    except RevokedToken:
        return True
    return False


def test_a_revocation_on_one_worker_is_refused_by_every_worker(
    jwt_issuer: LocalIssuer, workers: Workers
) -> None:
    fleet = [workers.worker(jwt_issuer) for _ in range(3)]
    token = jwt_issuer.mint()
    claims = [verifier.verify(token) for verifier in fleet].pop()  # every worker caches it
    started = time.monotonic()
    fleet[0].revocations.revoke(claims["jti"], until=claims["exp"])
    assert _refuses(fleet[0], token)  # the writer's own replica at once
    for verifier in fleet[1:]:
        revocation = verifier.store.revocation
        assert isinstance(revocation, RedisRevocationStore)
        assert revocation.wait_for(lambda v=verifier: _refuses(v, token), WAIT)
    # Pub/sub takes milliseconds; the bound is 1 s. Loose enough for a loaded machine
    # only because a miss would mean the change came by the 1 s version check, not pub/sub.
    assert time.monotonic() - started < 1.0
    (entry,) = fleet[2].revocations.list()
    assert entry.value == claims["jti"]


def test_a_stale_replica_refuses_with_503_and_retry_after_then_recovers(
    jwt_issuer: LocalIssuer, own_server: RedisServer
) -> None:
    workers = Workers(own_server.url)
    monotonic = Monotonic()
    try:
        strict = workers.worker(jwt_issuer, monotonic=monotonic, max_staleness=10, timeout=0.2)
        lenient = workers.worker(
            jwt_issuer, monotonic=monotonic, max_staleness=10, timeout=0.2, on_stale="accept"
        )
        token = jwt_issuer.mint()
        apps = {
            name: JWTGuard(_app(), verifier=v)
            for name, v in (("strict", strict), ("lenient", lenient))
        }
        clients = {name: TestClient(app) for name, app in apps.items()}
        for client in clients.values():
            assert client.get("/", headers=bearer(token)).status_code == 200
        own_server.kill()
        revocation = strict.store.revocation
        assert isinstance(revocation, RedisRevocationStore)
        assert revocation.wait_for(lambda: revocation.status()["failures"] > 0, WAIT)
        assert clients["strict"].get("/", headers=bearer(token)).status_code == 200  # in bound
        monotonic.now += 10.5  # past max_staleness, and no sync can succeed: Redis is dead
        refused = clients["strict"].get("/", headers=bearer(token))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "www-authenticate" not in refused.headers
        assert refused.json()["error"] == "temporarily_unavailable"
        assert clients["lenient"].get("/", headers=bearer(token)).status_code == 200
        health = strict.health()
        assert health["ok"] is False
        assert health["store"]["revocation"]["stale"] is True
        assert lenient.health()["ok"] is True  # accepting: still ready
        own_server.restart()  # empty, on the same port: the replica reloads
        assert revocation.wait_for(lambda: revocation.status()["connected"], WAIT)
        assert clients["strict"].get("/", headers=bearer(token)).status_code == 200
        assert strict.health()["ok"] is True
    finally:
        workers.close()


def test_no_request_waits_on_a_paused_redis(
    jwt_issuer: LocalIssuer, workers: Workers, server: RedisServer
) -> None:
    """SIGSTOP: connections stay open, nothing answers. The request path never talks to Redis
    (the deny-list is a local replica), so requests answer as fast as ever."""
    verifier = workers.worker(jwt_issuer, timeout=2.0)
    tokens = [jwt_issuer.mint() for _ in range(20)]
    for token in tokens:
        verifier.verify(token)
    with server.paused():
        started = time.monotonic()
        for token in tokens:
            assert verifier.cached(token) is not None
            assert verifier.verify(token).subject == "user-1"
        # 40 requests; one Redis call would take the 2 s timeout. 1.5 s leaves a loaded
        # machine plenty, and is still less than a single call to a paused Redis.
        assert time.monotonic() - started < 1.5


def test_the_readiness_probe_reports_the_store_without_waiting_on_it(
    jwt_issuer: LocalIssuer, own_server: RedisServer
) -> None:
    workers = Workers(own_server.url)
    monotonic = Monotonic()
    try:
        verifier = workers.worker(jwt_issuer, monotonic=monotonic, max_staleness=10, timeout=0.2)
        client = TestClient(health_asgi_app(verifier))
        ready = client.get("/")
        assert ready.status_code == 200
        assert ready.json() == {
            "ok": True,
            "issuers": {jwt_issuer.issuer: {"ready": True}},
            "store": {"ready": True},
        }
        own_server.kill()
        monotonic.now += 11
        started = time.monotonic()
        answer = client.get("/")
        assert time.monotonic() - started < 2.0  # no 5 s wait for the store (prefetch)
        assert answer.status_code == 503
        assert answer.json()["store"] == {"ready": False}
        assert own_server.url not in answer.text  # an open path says nothing about the store
    finally:
        workers.close()


class Recorder(GuardObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def store_latency(self, store: str, operation: str, seconds: float) -> None:
        self.events.append(("latency", (store, operation)))

    def store_error(self, store: str, operation: str, error: str) -> None:
        self.events.append(("error", (store, operation)))

    def replica_lag(self, store: str, seconds: float) -> None:
        self.events.append(("lag", (store,)))

    def replica_resync(self, store: str, reason: str) -> None:
        self.events.append(("resync", (store, reason)))


def test_store_events_reach_the_observer(
    jwt_issuer: LocalIssuer, workers: Workers, tmp_path: Path
) -> None:
    recorder = Recorder()
    writer = workers.worker(jwt_issuer)
    follower = workers.worker(jwt_issuer, observer=recorder)
    assert ("resync", ("revocation", "connected")) in recorder.events
    claims = writer.verify(token := jwt_issuer.mint())
    writer.revocations.revoke(claims["jti"], until=claims["exp"])
    revocation = follower.store.revocation
    assert isinstance(revocation, RedisRevocationStore)
    assert revocation.wait_for(lambda: ("lag", ("revocation",)) in recorder.events, WAIT)
    assert _refuses(follower, token)
    assert follower.store.replay.first_use("proof-1", 60)
    follower.revocations.unrevoke(claims["jti"])
    assert {("latency", ("replay", "first_use")), ("latency", ("revocation", "unrevoke"))} <= set(
        recorder.events
    )
    assert ("latency", ("keysets", "get")) in recorder.events  # the start-up fetch looked first
    dead = Stores.redis(RedisServer(tmp_path).url, timeout=0.2)  # never started
    dead.observe(recorder)
    with pytest.raises(StoreUnavailable):
        dead.replay.first_use("proof-2", 60)
    dead.close()
    assert ("error", ("replay", "first_use")) in recorder.events


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)])
