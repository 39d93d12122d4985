"""The in-process stores (the default), the local replica and the sealed key-set format.

Every expiry here runs on an injected clock: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import threading
from typing import Any

import pytest

from jwt_guard.errors import ConfigurationError, JWTGuardError, StoreFull, StoreUnavailable
from jwt_guard.stores import _envelope
from jwt_guard.stores._replica import Replica
from jwt_guard.stores.base import ReplayStore, Revocation
from jwt_guard.stores.memory import MemoryKeySetStore, MemoryReplayStore, MemoryRevocationStore

NOW = 1_800_000_000.0
SECRET = b"s" * 32
JWKS: dict[str, Any] = {"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- errors -----------------------------------------------------------------------------------


def test_store_unavailable_is_a_503_with_retry_after_in_the_one_tree() -> None:
    exc = StoreUnavailable("replay store redis://x: TimeoutError", retry_after=7)
    assert isinstance(exc, JWTGuardError)
    assert (exc.status, exc.error) == (503, "temporarily_unavailable")
    assert exc.code == "store_unavailable"
    assert exc.retry_after == 7
    assert "redis://x" not in exc.description  # the detail stays out of the response
    assert StoreUnavailable().retry_after == 5
    full = StoreFull("full")
    assert isinstance(full, StoreUnavailable)
    assert (full.status, full.code) == (503, "store_full")


# -- replay -----------------------------------------------------------------------------------


def test_replay_first_use_is_true_once_per_ttl() -> None:
    clock = Clock(100.0)
    store = MemoryReplayStore(clock=clock)
    assert store.first_use("jti-1", 60) is True
    assert store.first_use("jti-1", 60) is False
    assert store.first_use("jti-2", 60) is True
    clock.advance(59.9)
    assert store.first_use("jti-1", 60) is False
    clock.advance(0.1)  # the ttl is over: the key is new again
    assert store.first_use("jti-1", 60) is True
    assert store.first_use("jti-1", datetime.timedelta(seconds=5)) is False


async def test_replay_async_shares_the_same_memory() -> None:
    store = MemoryReplayStore()
    assert await store.afirst_use("k", 10) is True
    assert store.first_use("k", 10) is False
    assert await store.afirst_use("k", 10) is False


def test_replay_is_bounded_and_full_means_fail_closed() -> None:
    clock = Clock(0.0)
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for key in "abc":
        assert store.first_use(key, 10)
    with pytest.raises(StoreFull) as caught:
        store.first_use("d", 10)  # forgetting a live key would allow a replay: refuse
    assert caught.value.status == 503
    assert store.first_use("a", 10) is False  # the live keys are all still known
    clock.advance(10)
    assert store.first_use("d", 10) is True  # expired keys make room
    assert len(store) == 1


def test_replay_keys_of_any_length_cost_the_same() -> None:
    store = MemoryReplayStore()
    store.first_use("x" * 100_000, 10)
    assert {len(name) for name in store._deadlines} == {64}  # a SHA-256, not the key


def test_replay_concurrent_first_use_has_one_winner() -> None:
    store = MemoryReplayStore()
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def use() -> None:
        barrier.wait()
        answers.append(store.first_use("same", 10))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * 7 + [True]


@pytest.mark.parametrize(
    ("key", "ttl"),
    [
        pytest.param("k", 0, id="zero-ttl"),
        pytest.param("k", -1, id="negative-ttl"),
        pytest.param("k", "60", id="text-ttl"),
        pytest.param("k", float("inf"), id="infinite-ttl"),
        pytest.param(b"k", 60, id="bytes-key"),
    ],
)
def test_replay_bad_arguments_are_configuration_errors(key: Any, ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"MemoryReplayStore\.first_use"):
        MemoryReplayStore().first_use(key, ttl)


@pytest.mark.parametrize("cls", [MemoryReplayStore])
def test_replay_store_has_exactly_the_protocol_signatures(cls: type[Any]) -> None:
    for name in ("first_use", "afirst_use"):
        expected = inspect.signature(getattr(ReplayStore, name))
        assert inspect.signature(getattr(cls, name)) == expected
    assert inspect.iscoroutinefunction(cls.afirst_use)


# -- revocation -------------------------------------------------------------------------------


def test_revoked_jti_is_refused_until_it_lapses() -> None:
    clock = Clock(NOW)
    store = MemoryRevocationStore(clock=clock)
    store.revoke("t-1", until=NOW + 60)
    assert store.is_revoked("t-1", "alice", NOW - 5)
    assert not store.is_revoked("t-2", "alice", NOW - 5)
    assert not store.is_revoked(None, None, None)
    clock.advance(60)  # the token's exp: it is refused as expired from now on anyway
    assert not store.is_revoked("t-1", "alice", NOW - 5)
    assert store.list() == ()
    assert store.status()["entries"] == {"jti": 0, "sub": 0}  # list() purged it


def test_subject_revocation_refuses_tokens_issued_before() -> None:
    clock = Clock(NOW)
    store = MemoryRevocationStore(clock=clock)
    store.revoke_subject("alice", issued_before=NOW, until=NOW + 3600)
    assert store.is_revoked("any", "alice", NOW - 1)
    assert store.is_revoked("any", "alice", None)  # no iat: nothing shows it came later
    assert not store.is_revoked("any", "alice", NOW)  # issued at the sign-out: accepted
    assert not store.is_revoked("any", "bob", NOW - 1)
    # A later sign-out replaces the entry.
    store.revoke_subject("alice", issued_before=NOW + 10, until=NOW + 3600)
    assert store.is_revoked("any", "alice", NOW + 5)
    assert store.unrevoke_subject("alice") is True
    assert store.unrevoke_subject("alice") is False
    assert not store.is_revoked("any", "alice", NOW - 1)


def test_unrevoke_and_list() -> None:
    store = MemoryRevocationStore(clock=Clock(NOW))
    store.revoke("b", NOW + 10)
    store.revoke("a", datetime.datetime.fromtimestamp(NOW + 20, tz=datetime.timezone.utc))
    store.revoke_subject("carol", NOW, NOW + 30)
    assert store.list() == (
        Revocation("jti", "a", NOW + 20),
        Revocation("jti", "b", NOW + 10),
        Revocation("sub", "carol", NOW + 30, NOW),
    )
    assert store.unrevoke("a") is True
    assert store.unrevoke("a") is False
    assert not store.is_revoked("a", None, None)
    assert [entry.value for entry in store.list()] == ["b", "carol"]


def test_an_until_already_past_stores_nothing() -> None:
    store = MemoryRevocationStore(clock=Clock(NOW))
    store.revoke("old", NOW - 1)
    store.revoke_subject("old", NOW - 100, NOW)
    assert store.list() == ()


def test_the_revocation_list_is_bounded_and_lapsed_entries_make_room() -> None:
    clock = Clock(NOW)
    store = MemoryRevocationStore(max_entries=2, clock=clock)
    store.revoke("a", NOW + 10)
    store.revoke("b", NOW + 20)
    store.revoke("a", NOW + 15)  # an existing entry is replaced, not added
    with pytest.raises(StoreFull):
        store.revoke("c", NOW + 30)  # dropping a live one would let a revoked token in
    assert store.is_revoked("a", None, None)
    assert store.is_revoked("b", None, None)
    store.revoke_subject("s", NOW, NOW + 5)  # each kind has its own bound
    clock.advance(15)
    store.revoke("c", NOW + 30)  # "a" lapsed and made room
    assert [entry.value for entry in store.list()] == ["b", "c"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda s: s.revoke("", NOW + 1), "1 to 1024 bytes", id="empty-jti"),
        pytest.param(lambda s: s.revoke("x" * 1025, NOW + 1), "1 to 1024", id="long-jti"),
        pytest.param(lambda s: s.revoke(7, NOW + 1), "must be a string", id="int-jti"),
        pytest.param(lambda s: s.revoke("j", "tomorrow"), "epoch seconds", id="text-until"),
        pytest.param(lambda s: s.revoke("j", float("nan")), "not a usable time", id="nan"),
        pytest.param(lambda s: s.revoke("j", True), "epoch seconds", id="bool-until"),
        pytest.param(
            lambda s: s.revoke("j", datetime.datetime(2030, 1, 1)),
            "naive datetime",
            id="naive-datetime",
        ),
        pytest.param(lambda s: s.revoke("j", NOW + 31 * 86400), "max_ttl", id="beyond-max-ttl"),
        pytest.param(
            lambda s: s.revoke_subject("s", "now", NOW + 1), "issued_before", id="text-before"
        ),
        pytest.param(lambda s: s.unrevoke(None), "must be a string", id="none-unrevoke"),
    ],
)
def test_bad_revocation_arguments_are_configuration_errors(call: Any, match: str) -> None:
    store = MemoryRevocationStore(clock=Clock(NOW))
    with pytest.raises(ConfigurationError, match=match):
        call(store)


def test_an_unhashable_claim_matches_nothing() -> None:
    store = MemoryRevocationStore(clock=Clock(NOW))
    store.revoke("a", NOW + 10)
    assert store.is_revoked(["a"], {"x": 1}, None) is False  # type: ignore[arg-type]


def test_memory_revocation_is_never_stale() -> None:
    store = MemoryRevocationStore()
    assert store.staleness() == 0.0
    assert store.status() == {"store": "memory", "entries": {"jti": 0, "sub": 0}, "staleness": 0.0}
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"max_entries": 0}, "max_entries", id="zero-entries"),
        pytest.param({"max_ttl": 0}, "max_ttl", id="zero-ttl"),
        pytest.param({"max_ttl": "1d"}, "max_ttl", id="text-ttl"),
    ],
)
def test_bad_revocation_store_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        MemoryRevocationStore(**kwargs)


# -- the replica (what the Redis store keeps in each process) ----------------------------------


def _replica(monotonic: Clock, *, refuse: bool = True) -> Replica:
    return Replica(
        "test",
        max_entries=10,
        max_staleness=5.0,
        refuse_when_stale=refuse,
        clock=Clock(NOW),
        monotonic=monotonic,
    )


def test_a_replica_is_stale_until_its_first_sync_and_after_max_staleness() -> None:
    monotonic = Clock(1000.0)
    replica = _replica(monotonic)
    assert replica.staleness() == float("inf")
    with pytest.raises(StoreUnavailable, match="max_staleness=5s"):
        replica.is_revoked("a", None, None)
    replica.replace("e1", 3, {"a": NOW + 60}, {})
    assert replica.staleness() == 0.0
    assert replica.is_revoked("a", None, None)
    monotonic.advance(5)
    assert replica.is_revoked("a", None, None)  # at the bound: still served
    monotonic.advance(0.1)
    with pytest.raises(StoreUnavailable) as caught:
        replica.is_revoked("b", None, None)
    assert caught.value.status == 503
    replica.mark_synced()
    assert not replica.is_revoked("b", None, None)


def test_a_replica_that_accepts_when_stale_answers_from_what_it_holds() -> None:
    monotonic = Clock(1000.0)
    replica = _replica(monotonic, refuse=False)
    replica.replace("e1", 1, {"a": NOW + 60}, {"s": (NOW, NOW + 60)})
    monotonic.advance(3600)
    assert replica.staleness() == 3600
    assert replica.is_revoked("a", None, None)
    assert replica.is_revoked(None, "s", NOW - 1)
    assert not replica.is_revoked("b", None, None)


def test_replica_changes_apply_in_order_and_a_gap_asks_for_a_reload() -> None:
    replica = _replica(Clock(0.0))
    replica.replace("e1", 5, {}, {})
    add = Revocation("jti", "x", NOW + 60)
    assert replica.apply("e1", 5, "add", add) == "old"
    assert replica.apply("e1", 7, "add", add) == "gap"  # 6 is missing
    assert replica.apply("e2", 6, "add", add) == "gap"  # the store started over
    assert not replica.is_revoked("x", None, None)
    assert replica.apply("e1", 6, "add", add) == "applied"
    assert replica.is_revoked("x", None, None)
    assert replica.apply("e1", 7, "del", Revocation("jti", "x", 0)) == "applied"
    assert not replica.is_revoked("x", None, None)
    assert (replica.epoch, replica.version) == ("e1", 7)


def test_the_first_change_to_an_empty_store_is_taken_without_a_reload() -> None:
    replica = _replica(Clock(0.0))
    replica.replace("", 0, {}, {})  # the store had no version at all
    assert replica.apply("fresh", 1, "add", Revocation("jti", "x", NOW + 1)) == "applied"
    assert replica.epoch == "fresh"


def test_a_reload_with_more_entries_than_allowed_is_refused() -> None:
    replica = _replica(Clock(0.0))
    with pytest.raises(StoreFull, match="max_entries=10"):
        replica.replace("e", 1, {str(i): NOW + 60 for i in range(11)}, {})
    assert replica.epoch is None  # nothing half-taken


# -- key sets ---------------------------------------------------------------------------------


def test_memory_keyset_round_trip_is_a_copy() -> None:
    store = MemoryKeySetStore()
    document = {"keys": [{"kty": "oct", "k": "AA"}]}
    assert store.enabled
    assert store.get("https://idp") is None
    assert store.put("https://idp", document, NOW, 300)
    document["keys"].clear()  # the caller's dict changes later: the stored copy does not
    found = store.get("https://idp")
    assert found is not None
    assert found.document == {"keys": [{"kty": "oct", "k": "AA"}]}
    assert (found.issuer, found.fetched_at, found.lifetime) == ("https://idp", NOW, 300)
    assert not store.put("https://idp", {"keys": [object()]}, NOW, 300)  # not JSON


def test_memory_keysets_expire_and_are_bounded() -> None:
    monotonic = Clock(0.0)
    store = MemoryKeySetStore(max_issuers=2, max_age=100, monotonic=monotonic)
    for issuer in ("a", "b", "c"):
        store.put(issuer, JWKS, NOW, 300)
    assert store.get("a") is None  # the oldest made room
    assert store.get("b") is not None
    monotonic.advance(100.5)
    assert store.get("b") is None
    assert store.get("c") is None


def test_memory_locks_are_exclusive_expire_and_compare_before_delete() -> None:
    monotonic = Clock(0.0)
    store = MemoryKeySetStore(max_locks=2, monotonic=monotonic)
    token = store.try_lock("refresh:a", 5)
    assert token is not None
    assert store.try_lock("refresh:a", 5) is None
    assert store.unlock("refresh:a", "not-the-token") is False
    assert store.try_lock("refresh:a", 5) is None  # still held
    assert store.unlock("refresh:a", token) is True
    again = store.try_lock("refresh:a", 5)
    assert again is not None
    assert again != token
    assert store.try_lock("refresh:b", 5) is not None
    assert store.try_lock("refresh:c", 5) is None  # full
    monotonic.advance(5)
    assert store.unlock("refresh:a", again) is False  # expired: someone else may hold it now
    assert store.try_lock("refresh:c", 5) is not None  # expired locks made room
    with pytest.raises(ConfigurationError, match="ttl"):
        store.try_lock("x", 0)


# -- the sealed format ------------------------------------------------------------------------


def _open(raw: bytes, issuer: str = "https://idp", now: float = NOW, **kw: Any) -> Any:
    return _envelope.open_sealed(
        raw,
        kw.pop("secrets", [SECRET]),
        issuer,
        now=now,
        max_age=kw.pop("max_age", 3600),
        max_bytes=kw.pop("max_bytes", 1 << 20),
    )


def test_a_sealed_key_set_opens_with_its_secret_and_issuer() -> None:
    raw = _envelope.seal(SECRET, "https://idp", JWKS, NOW - 10, 300)
    found = _open(raw)
    assert (found.document, found.fetched_at, found.lifetime) == (JWKS, NOW - 10, 300)
    assert raw.startswith(b"v1.")
    # Rotation: a list of secrets opens what any of them sealed.
    assert _open(raw, secrets=[b"n" * 32, SECRET]).document == JWKS


def _swap(raw: bytes, index: int, part: bytes) -> bytes:
    parts = raw.split(b".", 3)
    parts[index] = part
    return b".".join(parts)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda raw: b"garbage\n\x1b[31m", "not a sealed key set", id="garbage"),
        pytest.param(lambda raw: raw.replace(b"k1", b"k2"), "MAC", id="keys-changed"),
        pytest.param(lambda raw: _swap(raw, 1, b"A" * 43), "MAC", id="mac-replaced"),
        pytest.param(lambda raw: _swap(raw, 1, b"!!"), "base64url", id="mac-not-base64"),
        pytest.param(lambda raw: raw + b" ", "MAC", id="trailing-byte"),
        pytest.param(lambda raw: _swap(raw, 0, b"v2"), "not a sealed", id="other-version"),
        pytest.param(
            lambda raw: _envelope.seal(b"o" * 32, "https://idp", JWKS, NOW, 300),
            "MAC",
            id="other-secret",
        ),
        pytest.param(
            lambda raw: _envelope.seal(SECRET, "https://evil", JWKS, NOW, 300),
            "another issuer",
            id="other-issuer",
        ),
        pytest.param(
            lambda raw: _envelope.seal(SECRET, "https://idp", JWKS, NOW - 3601, 300),
            "older than max_age",
            id="too-old",
        ),
        pytest.param(
            lambda raw: _envelope.seal(SECRET, "https://idp", JWKS, NOW + 301, 300),
            "in the future",
            id="from-the-future",
        ),
        pytest.param(
            lambda raw: _envelope.seal(SECRET, "https://idp", {"kty": "x"}, NOW, 300),
            "no 'keys' list",
            id="not-a-jwks",
        ),
        pytest.param(lambda raw: "text", "a str where bytes", id="text"),
    ],
)
def test_a_tampered_or_foreign_sealed_value_is_refused(make: Any, match: str) -> None:
    raw = _envelope.seal(SECRET, "https://idp", JWKS, NOW, 300)
    with pytest.raises(ValueError, match=match):
        _open(make(raw))


def test_a_sealed_value_over_max_bytes_is_refused_before_any_work() -> None:
    raw = _envelope.seal(SECRET, "https://idp", JWKS, NOW, 300)
    with pytest.raises(ValueError, match="max_bytes"):
        _open(raw, max_bytes=len(raw) - 1)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(b"short", id="short-bytes"),
        pytest.param("short", id="short-text"),
        pytest.param([b"x" * 32, b"short"], id="one-short-in-list"),
        pytest.param([], id="empty-list"),
        pytest.param(12345, id="int"),
    ],
)
def test_weak_secrets_are_configuration_errors(secret: Any) -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        _envelope.check_secrets("RedisKeySetStore", secret)


def test_secrets_accept_text_and_none_turns_sharing_off() -> None:
    assert _envelope.check_secrets("o", "t" * 32) == (b"t" * 32,)
    assert _envelope.check_secrets("o", None) == ()


def test_seal_refuses_what_is_not_plain_json() -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        _envelope.seal(SECRET, "i", {"keys": [float("nan")]}, NOW, 1)


def test_the_async_replay_check_runs_on_any_loop() -> None:
    store = MemoryReplayStore()
    assert asyncio.run(store.afirst_use("loop", 5)) is True
    assert asyncio.run(store.afirst_use("loop", 5)) is False
