"""Trusted issuers (``jwt_guard.core._issuers``): each ``Issuer`` gets its own keys, audiences
and algorithms, and ``iss`` picks it; every bad value of a verifier option or an ``Issuer`` field
is a ``ConfigurationError`` that names it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from _core_helpers import AUDIENCE, ISSUER, Clock, Key, claims_at, make_key, token
from jwt_guard import ConfigurationError, Issuer, TokenVerifier
from jwt_guard.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)

MakeVerifier = Callable[..., TokenVerifier]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def es_key() -> Key:
    return make_key("ES256", "es-1")


@pytest.fixture
def make_verifier(clock: Clock, es_key: Key) -> MakeVerifier:
    def make(**kwargs: Any) -> TokenVerifier:
        if "issuers" not in kwargs:
            kwargs.setdefault("issuer", ISSUER)
            kwargs.setdefault("audience", AUDIENCE)
            kwargs.setdefault("jwks", es_key.jwks())
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("monotonic", clock.monotonic)
        return TokenVerifier(**kwargs)

    return make


# -- several issuers ---------------------------------------------------------------------------


@pytest.fixture
def two_issuers(clock: Clock) -> tuple[TokenVerifier, Key, Key]:
    a, b = make_key("ES256", "a-1", name="a"), make_key("EdDSA", "b-1", name="b")
    verifier = TokenVerifier(
        issuers=[
            Issuer("https://a.example/", "aud-a", jwks=a.jwks()),
            Issuer("https://b.example/", ["aud-b"], jwks=b.jwks(), algorithms=["EdDSA"]),
        ],
        clock=clock,
    )
    return verifier, a, b


def test_iss_picks_the_issuer(two_issuers: Any, clock: Clock) -> None:
    verifier, a, b = two_issuers
    now = clock()
    ca = verifier.verify(token(a, claims_at(now, iss="https://a.example/", aud="aud-a")))
    cb = verifier.verify(token(b, claims_at(now, iss="https://b.example/", aud="aud-b")))
    assert (ca.issuer, cb.issuer) == ("https://a.example/", "https://b.example/")
    assert verifier.issuers == ("https://a.example/", "https://b.example/")


@pytest.mark.parametrize(
    ("signer", "claims", "error"),
    [
        pytest.param(
            "a",
            {"iss": "https://b.example/", "aud": "aud-b"},
            AlgorithmNotAllowed,
            id="a-key-claims-b-whose-algs-exclude-es256",
        ),
        pytest.param(
            "b",
            {"iss": "https://a.example/", "aud": "aud-a"},
            UnknownKey,
            id="b-key-claims-a-which-lacks-its-kid",
        ),
        pytest.param(
            "a",
            {"iss": "https://a.example/", "aud": "aud-b"},
            WrongAudience,
            id="audience-of-the-other-issuer",
        ),
        pytest.param(
            "a", {"iss": "https://c.example/", "aud": "aud-a"}, WrongIssuer, id="unknown-issuer"
        ),
        pytest.param("a", {"iss": None, "aud": "aud-a"}, WrongIssuer, id="no-issuer"),
    ],
)
def test_issuers_do_not_share_keys_or_audiences(
    two_issuers: Any, clock: Clock, signer: str, claims: dict[str, Any], error: type
) -> None:
    verifier, a, b = two_issuers
    key = a if signer == "a" else b
    with pytest.raises(error):
        verifier.verify(token(key, claims_at(clock(), **claims)))


def test_a_key_of_one_issuer_does_not_verify_for_another(clock: Clock) -> None:
    a, b = make_key("ES256", "same-kid", name="a"), make_key("ES256", "same-kid", name="b")
    verifier = TokenVerifier(
        issuers=[
            Issuer("https://a.example/", AUDIENCE, jwks=a.jwks()),
            Issuer("https://b.example/", AUDIENCE, jwks=b.jwks()),
        ],
        clock=clock,
    )
    with pytest.raises(BadSignature):
        verifier.verify(token(a, claims_at(clock(), iss="https://b.example/")))


# -- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"issuer": None}, id="no-issuer"),
        pytest.param({"issuers": []}, id="empty-issuers"),
        pytest.param(
            {"issuer": ISSUER, "issuers": [Issuer(ISSUER, AUDIENCE, jwks={"keys": []})]},
            id="issuer-and-issuers",
        ),
        pytest.param({"algorithms": ["none"]}, id="alg-none"),
        pytest.param({"algorithms": ["HS256", "nOnE"]}, id="alg-none-among-others"),
        pytest.param({"algorithms": []}, id="no-algorithms"),
        pytest.param({"algorithms": ["XS256"]}, id="unknown-algorithm"),
        pytest.param({"audience": []}, id="empty-audience-list"),
        pytest.param({"jwks": {"keys": [{"kty": "RSA"}]}}, id="broken-static-key"),
        pytest.param({"jwks": {"keys": "x"}}, id="static-jwks-not-a-set"),
        pytest.param({"jwks_url": "https://idp.example.test/jwks"}, id="jwks-and-jwks-url"),
        pytest.param({"leeway": -1}, id="negative-leeway"),
        pytest.param({"max_token_size": 10}, id="tiny-max-token-size"),
    ],
)
def test_configuration_errors_at_construction(
    make_verifier: MakeVerifier, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        make_verifier(**kwargs)


class _NotAnObserver:
    def verified(self, issuer: str, cached: bool) -> None:
        pass


class _NotAKeySource:
    """Has most of a key source, but a synchronous akeys_for and no status()."""

    name = "almost"

    def keys_for(self, kid: str | None) -> None: ...

    def akeys_for(self, kid: str | None) -> None: ...

    def current(self, now: float | None = None) -> None: ...

    def prefetch(self) -> None: ...

    async def aprefetch(self) -> None: ...


_BAD_VERIFIER_OPTIONS = [
    ("issuer", [123, b"https://idp/", "", ["https://idp/"]]),
    ("audience", [123, "", [], ["ok", 5], {"aud": "x"}, b"api"]),
    ("jwks_url", [123, "", ["https://idp/jwks"]]),
    ("jwks", ["{}", ["keys"], 5]),
    ("key_source", [5, "/etc/jwks.json", {"keys": []}, _NotAKeySource()]),
    ("algorithms", [123, [], ["RS256", 5], [["RS256"]], ["none"], {"RS256": 1}]),
    ("leeway", ["60", None, -1, float("nan"), float("inf"), True, timedelta(seconds=-1)]),
    ("issuers", ["https://idp/", 5, [5], [{"issuer": "x"}], {"issuer": "x"}]),
    ("require_exp", ["yes", 1, None]),
    ("max_age", ["60", 0, -5, float("nan"), timedelta(0), True]),
    ("required_claims", [5, [5], [""], {"sub": 1}]),
    ("typ", [5, "", ["at+jwt"]]),
    ("scope_claims", [5, [5], [""], None]),
    ("claims_check", [5, "check", True]),
    ("is_revoked", [5, "revoked"]),
    ("max_token_size", ["8192", 10, 8192.0, True, None]),
    ("token_cache_size", ["10", -1, 1.5, None]),
    ("token_cache_ttl", ["300", 0, -1, None, float("inf")]),
    ("token_cache_bytes", ["1", -1, 1.5, None]),
    ("clock", [None, 5, "time"]),
    ("jwks_options", [5, "timeout=3", ["timeout"], {"timeuot": 3}, {"url": "https://x/"}]),
    ("observer", [5, "metrics", _NotAnObserver()]),
    (
        "store",
        [
            5,
            "ftp://store.example",
            "redis:/missing-slash",
            {"timeout": 1.0},
            {"url": "redis://127.0.0.1:1/0", "max_stalenes": 5},
            {"url": "redis://127.0.0.1:1/0", "on_stale": "maybe"},
            {"url": "redis://127.0.0.1:1/0", "secret": "too short"},
            {"url": "memory://", "secret": "s" * 32},
            ["redis://127.0.0.1:1/0"],
        ],
    ),
    ("revocation", [5, "redis://127.0.0.1:1/0", object(), {"jti": 1}]),
]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param(option, value, id=f"{option}-{i}")
        for option, values in _BAD_VERIFIER_OPTIONS
        for i, value in enumerate(values)
    ],
)
def test_every_bad_option_value_is_a_configuration_error(
    es_key: Key, option: str, value: Any
) -> None:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks": es_key.jwks()}
    if option == "issuers":
        options = {}
    if option in ("issuer", "audience", "jwks", "jwks_url"):
        options.pop("jwks")
        if option != "jwks_url":
            options["jwks_url"] = "https://idp.example.test/jwks"
    options[option] = value
    with pytest.raises(ConfigurationError, match=rf"\b{option}="):
        TokenVerifier(**options)


def test_every_verifier_option_has_bad_values_in_the_table() -> None:
    documented = set(inspect.signature(TokenVerifier.__init__).parameters) - {"self"}
    assert documented <= {option for option, _ in _BAD_VERIFIER_OPTIONS} | {"monotonic"}


_BAD_ISSUER_FIELDS = [
    ("issuer", [None, 5, "", b"https://idp/"]),
    ("audience", [5, "", [], ["ok", None], b"api"]),
    ("jwks_url", [5, "", ["https://idp/jwks"]]),
    ("jwks", ["{}", 5, ["keys"]]),
    ("key_source", [5, "/etc/jwks.json", {"keys": []}, _NotAKeySource()]),
    ("algorithms", [5, [], [5], ["XS256"], ["none"]]),
    ("scope_claims", [5, [5], [""]]),
    ("allow_remote_oct", ["yes", 1, None]),
]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(field, value, id=f"{field}-{i}")
        for field, values in _BAD_ISSUER_FIELDS
        for i, value in enumerate(values)
    ],
)
def test_every_bad_issuer_field_is_a_configuration_error(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE}
    fields[field] = value
    with pytest.raises(ConfigurationError, match=rf"^Issuer\({field}=\.\.\.\): "):
        Issuer(**fields)


def test_every_issuer_field_has_bad_values_in_the_table() -> None:
    assert {f.name for f in dataclasses.fields(Issuer)} == {f for f, _ in _BAD_ISSUER_FIELDS}


def test_an_issuer_with_both_key_sources_is_refused_at_once(es_key: Key) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        Issuer(ISSUER, AUDIENCE, jwks=es_key.jwks(), jwks_url="https://idp.example.test/jwks")


def test_audience_next_to_issuers_is_refused_not_ignored(es_key: Key) -> None:
    with pytest.raises(ConfigurationError, match="its own audience"):
        TokenVerifier(issuers=[Issuer(ISSUER, AUDIENCE, jwks=es_key.jwks())], audience="other")


def test_jwks_option_typos_are_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'timeout'"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_options={"timeuot": 3})
    with pytest.raises(ConfigurationError, match="set by the verifier; use jwks_url="):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_options={"url": "https://x.test/"})


def test_duplicate_issuer_is_a_configuration_error(es_key: Key) -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        TokenVerifier(
            issuers=[
                Issuer(ISSUER, AUDIENCE, jwks=es_key.jwks()),
                Issuer(ISSUER, "other", jwks=es_key.jwks()),
            ]
        )
