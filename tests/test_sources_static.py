"""StaticKeys: a JWK Set given in code, checked once, never fetched."""

from __future__ import annotations

import asyncio

import pytest

from _core_helpers import AUDIENCE, ISSUER, Clock, Key, claims_at, make_key, token
from jwt_guard import ConfigurationError, Issuer, TokenVerifier
from jwt_guard.keys.jwk import KeySet
from jwt_guard.sources import StaticKeys


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key("ES256", "static-1")


@pytest.fixture(scope="module")
def secret() -> Key:
    return make_key("HS256", "hs-1")


def test_every_question_gets_the_one_set(key: Key) -> None:
    keyset = KeySet.from_jwks(key.jwks())
    source = StaticKeys(keyset)
    assert source.keys_for("static-1") is keyset
    assert source.keys_for("unknown") is keyset  # the verifier refuses the kid, not the source
    assert asyncio.run(source.akeys_for(None)) is keyset
    assert source.current() is keyset
    assert source.current(123.0) is keyset
    source.prefetch()
    asyncio.run(source.aprefetch())
    assert source.status() == {
        "source": "static",
        "keys": 1,
        "kids": ["static-1"],
        "stale": False,
        "usable": True,
        "last_error": None,
    }


@pytest.mark.parametrize("value", [None, {"keys": []}, "jwks.json", [1]])
def test_only_a_key_set_is_accepted(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"StaticKeys\(keyset=\.\.\.\): must be a KeySet"):
        StaticKeys(value)  # type: ignore[arg-type]


def test_repr_and_status_never_show_a_secret(secret: Key) -> None:
    source = StaticKeys(KeySet.from_jwks(secret.jwks()))
    k = secret.public_jwk()["k"]
    assert repr(source) == "StaticKeys(<1 keys>)"
    assert k not in repr(source)
    assert k not in str(source.status())


def test_jwks_builds_a_static_source_checked_strictly(key: Key) -> None:
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=key.jwks())
    (source,) = verifier.key_sources().values()
    assert type(source) is StaticKeys
    assert source.keyset.kids == {"static-1"}
    weak = make_key("RS256", "weak", name="weak-1024", bits=1024)
    with pytest.raises(ConfigurationError, match="under 2048"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=weak.jwks())


def test_a_static_source_given_as_key_source_verifies(key: Key) -> None:
    clock = Clock()
    source = StaticKeys(KeySet.from_jwks(key.jwks()))
    verifier = TokenVerifier(
        issuers=[Issuer(ISSUER, AUDIENCE, key_source=source)],
        clock=clock,
        monotonic=clock.monotonic,
    )
    assert verifier.key_sources()[ISSUER] is source
    assert verifier.verify(token(key, claims_at(clock()))).subject == "user-1"


def test_prefetch_of_a_static_verifier_does_nothing(key: Key) -> None:
    """prefetch reaches every source; a static one answers without any I/O."""
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=key.jwks())
    verifier.prefetch()
    asyncio.run(verifier.aprefetch())
    assert verifier.health() == {
        "ok": True,
        "issuers": {ISSUER: StaticKeys(KeySet.from_jwks(key.jwks())).status()},
    }
