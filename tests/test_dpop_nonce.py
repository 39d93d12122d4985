"""Server-provided DPoP nonces (RFC 9449 section 9): stateless, rotating, accepted for the
current and the previous window; ``use_dpop_nonce`` with a fresh one when missing or stale.
Clocks are injected; nothing sleeps."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from _common import parse_challenge
from jwt_guard.binding.dpop import DPoPVerifier
from jwt_guard.binding.nonce import NONCE_HEADER, DPoPNonces
from jwt_guard.errors import ConfigurationError, DPoPProofReplayed, UseDPoPNonce
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing.dpop import DPoPKey

URL = "https://api.example.com/items"
SECRET = b"s" * 32
LIFETIME = 120.0
START = 1_700_000_040.0  # exactly the start of a 120 s window
# RFC 9449 8.1: nonce = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E
_NQCHAR = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+\Z")


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _setup(clock: Clock, **options: Any) -> tuple[DPoPNonces, DPoPVerifier, DPoPKey]:
    nonces = DPoPNonces(SECRET, lifetime=LIFETIME, clock=clock, **options)
    verifier = DPoPVerifier(nonces=nonces, clock=clock, replay_store=MemoryReplayStore(clock=clock))
    return nonces, verifier, DPoPKey.generate("ES256", clock=clock)


def _verify(verifier: DPoPVerifier, proof: str) -> Any:
    return verifier.verify(proof, method="GET", url=URL)


def test_a_proof_without_nonce_gets_use_dpop_nonce_with_a_fresh_one() -> None:
    clock = Clock()
    nonces, verifier, key = _setup(clock)
    assert START % LIFETIME == 0
    with pytest.raises(UseDPoPNonce) as info:
        _verify(verifier, key.proof("GET", URL))
    exc = info.value
    assert (exc.status, exc.error, exc.code) == (401, "use_dpop_nonce", "use_dpop_nonce")
    assert exc.nonce == nonces.current()
    assert _NQCHAR.match(exc.nonce)
    assert NONCE_HEADER == "DPoP-Nonce"
    scheme, params = parse_challenge(verifier.challenge(exc))
    assert scheme == "DPoP"
    assert params["error"] == "use_dpop_nonce"
    assert params["error_description"] == "Resource server requires nonce in DPoP proof"
    # the client retries with it
    checked = _verify(verifier, key.proof("GET", URL, nonce=exc.nonce))
    assert checked.nonce == exc.nonce


def test_a_nonce_lives_for_its_window_and_the_next() -> None:
    clock = Clock()
    nonces, verifier, key = _setup(clock)
    first = nonces.current()
    clock.now = START + LIFETIME - 0.001  # same window: same nonce
    assert nonces.current() == first
    clock.now = START + LIFETIME  # next window: a new nonce, the old one still accepted
    second = nonces.current()
    assert second != first
    assert _verify(verifier, key.proof("GET", URL, nonce=first)).nonce == first
    assert _verify(verifier, key.proof("GET", URL, nonce=second)).nonce == second
    clock.now = START + 2 * LIFETIME - 0.001
    assert _verify(verifier, key.proof("GET", URL, nonce=first))
    clock.now = START + 2 * LIFETIME  # two windows on: expired, answered with a fresh one
    with pytest.raises(UseDPoPNonce, match="not current") as info:
        _verify(verifier, key.proof("GET", URL, nonce=first))
    assert info.value.nonce == nonces.current()
    assert info.value.nonce not in (first, second)
    assert _verify(verifier, key.proof("GET", URL, nonce=second))


def test_a_nonce_from_the_future_is_not_accepted() -> None:
    clock = Clock(START + 10 * LIFETIME)
    future = DPoPNonces(SECRET, lifetime=LIFETIME, clock=clock).current()
    clock.now = START
    nonces = DPoPNonces(SECRET, lifetime=LIFETIME, clock=clock)
    assert not nonces.check(future)


def test_nonce_replay_is_caught_by_the_jti_not_the_nonce() -> None:
    """A nonce may be used by many proofs within its life (it is per server window, not per
    request); the same proof sent twice is still a replay."""
    clock = Clock()
    nonces, verifier, key = _setup(clock)
    nonce = nonces.current()
    proof = key.proof("GET", URL, nonce=nonce)
    assert _verify(verifier, proof)
    assert _verify(verifier, key.proof("GET", URL, nonce=nonce))
    with pytest.raises(DPoPProofReplayed):
        _verify(verifier, proof)


def _altered(nonce: str) -> str:
    return nonce[:-1] + ("B" if nonce[-1] == "A" else "A")


@pytest.mark.parametrize(
    "nonce",
    [
        pytest.param(lambda n: DPoPNonces(b"o" * 32, lifetime=LIFETIME).current(), id="other"),
        pytest.param(lambda n: _altered(n.current()), id="altered"),
        pytest.param(lambda n: n.current() + "A", id="longer"),
        pytest.param(lambda n: n.current().upper(), id="case"),
        pytest.param(lambda n: "", id="empty"),
        pytest.param(lambda n: "n\u00f6nce", id="non-ascii"),
        pytest.param(lambda n: 12345, id="number"),
        pytest.param(lambda n: [n.current()], id="list"),
    ],
)
def test_forged_or_malformed_nonces_are_answered_with_a_fresh_one(nonce: Any) -> None:
    clock = Clock()
    nonces, verifier, key = _setup(clock)
    value = nonce(nonces)
    with pytest.raises(UseDPoPNonce) as info:
        _verify(verifier, key.proof("GET", URL, claims={"nonce": value}))
    assert info.value.nonce == nonces.current()
    assert not nonces.check(value)


def test_every_worker_with_the_secret_accepts_every_workers_nonces() -> None:
    clock = Clock()
    worker_a = DPoPNonces(SECRET, lifetime=LIFETIME, clock=clock)
    worker_b = DPoPNonces(SECRET.decode(), lifetime=LIFETIME, clock=clock)  # str secrets too
    assert worker_a.current() == worker_b.current()
    assert worker_b.check(worker_a.current())
    # random per-process secrets (the default) do not agree: configure one for a fleet
    assert not DPoPNonces(clock=clock).check(DPoPNonces(clock=clock).current())


def test_the_nonce_does_not_reveal_the_secret_or_the_window() -> None:
    clock = Clock()
    nonces = DPoPNonces(SECRET, lifetime=LIFETIME, clock=clock)
    assert "s" * 8 not in repr(nonces)
    assert str(int(START // LIFETIME)) not in nonces.current()
    assert len(nonces.current()) == 22  # 128 bits


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": b"short"}, "at least 32 bytes"),
        ({"secret": 12345}, "bytes or str"),
        ({"secret": SECRET, "lifetime": 0.5}, "lifetime"),
        ({"secret": SECRET, "lifetime": "60"}, "lifetime"),
        ({"secret": SECRET, "clock": "now"}, "clock"),
    ],
)
def test_bad_nonce_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DPoPNonces(**options)


def test_lifetime_accepts_a_timedelta() -> None:
    assert DPoPNonces(SECRET, lifetime=datetime.timedelta(minutes=5)).lifetime == 300
