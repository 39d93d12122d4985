"""JWKSOptions: every remote-JWKS option typed, defaulted and checked in one place; typos and
options that cannot apply are ConfigurationErrors, never a TypeError or silence."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from typing import Any

import pytest
import requests

from _core_helpers import AUDIENCE, ISSUER, make_key
from jwt_guard import ConfigurationError, Issuer, JWKSOptions, TokenVerifier
from jwt_guard.events import GuardObserver
from jwt_guard.keys.jwk import KeySet
from jwt_guard.sources import JWKSClient, StaticKeys

URL = "https://idp.example.test/jwks"

_BAD_VALUES = [
    ("allow_http", ["yes", 1, None]),
    ("allow_link_local", ["no", 0]),
    ("session", ["session", object(), {}]),
    ("timeout", [3, (1.0,), (1.0, 2.0, 3.0), (0, 1), (1, "2"), (1, -1), "3,5"]),
    ("total_timeout", [0, -1, "10", None, float("inf"), timedelta(0)]),
    ("max_bytes", [0, 1.5, "512", None, True]),
    ("default_ttl", [-1, "300", None, float("nan")]),
    ("min_ttl", [0, -1, "30"]),
    ("max_ttl", [-1, 10.0, "86400"]),  # 10 < default_ttl
    ("refresh_ahead", [0, 1.5, -0.1, "0.8", True, None]),
    ("cooldown", [-1, "30", None]),
    ("max_stale", [-1, "3600", timedelta(seconds=-1)]),
    ("backoff", [(1.0,), (60.0, 1.0), (0, 60), "1,60", 5]),
    ("jitter", ["yes", 1, None, 0.5]),
    ("keyset_store", ["redis://localhost", object(), {}]),
    ("clock", [5, "time"]),
    ("monotonic", [5, "monotonic"]),
    ("observer", [5, "metrics", object()]),
]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(field, value, id=f"{field}-{i}")
        for field, values in _BAD_VALUES
        for i, value in enumerate(values)
    ],
)
def test_every_bad_value_is_a_configuration_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):  # the ttl order names both bounds
        JWKSOptions(**{field: value})
    with pytest.raises(ConfigurationError, match=r"^TokenVerifier\(jwks_options=\.\.\.\): "):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=URL, jwks_options={field: value})
    with pytest.raises(ConfigurationError, match=field):
        JWKSClient(URL, **{field: value})


def test_every_field_has_bad_values_in_the_table() -> None:
    assert [f.name for f in dataclasses.fields(JWKSOptions)] == [f for f, _ in _BAD_VALUES]


def test_durations_are_stored_as_seconds_and_the_object_is_frozen() -> None:
    options = JWKSOptions(
        timeout=(timedelta(seconds=2), 3),
        cooldown=timedelta(minutes=1),
        max_stale=timedelta(hours=6),
        backoff=(timedelta(seconds=2), timedelta(minutes=2)),
        refresh_ahead=1,
    )
    assert options.timeout == (2.0, 3.0)
    assert (options.cooldown, options.max_stale, options.refresh_ahead) == (60.0, 21600.0, 1.0)
    assert options.backoff == (2.0, 120.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.cooldown = 5  # type: ignore[misc]
    assert JWKSOptions(cooldown=timedelta(minutes=1)) == JWKSOptions(cooldown=60)


def test_the_defaults_are_the_clients() -> None:
    """A JWKSClient built without options carries JWKSOptions' defaults, the clocks filled in."""
    client = JWKSClient(URL)
    defaults = JWKSOptions()
    for field in dataclasses.fields(JWKSOptions):
        if field.name in ("session", "clock", "monotonic"):
            continue
        assert getattr(client, field.name) == getattr(defaults, field.name), field.name
    assert (client.clock, client.monotonic) == (time.time, time.monotonic)
    assert isinstance(client.session, requests.Session)
    assert client.options == defaults


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param({"cooldwn": 5}, "unknown JWKS option 'cooldwn'; did you mean 'cooldown'?"),
        pytest.param({"timeuot": 3}, "did you mean 'timeout'?"),
        pytest.param({"max_stael": 3}, "did you mean 'max_stale'?"),
        pytest.param({"zzz": 3}, "unknown JWKS option 'zzz'; known: ["),
        pytest.param({"url": URL}, "'url' is set by the verifier; use jwks_url= instead"),
        pytest.param({"discovery_issuer": URL}, "set by the verifier; use issuer= instead"),
        pytest.param({"algorithms": ["RS256"]}, "set by the verifier; use algorithms= instead"),
        pytest.param({"allow_oct": True}, "use Issuer(allow_remote_oct=...)= instead"),
    ],
)
def test_a_misspelt_or_misplaced_name_says_what_to_write(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"^TokenVerifier\(jwks_options=\.\.\.\): ") as e:
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_options=given)
    assert message in str(e.value)


def test_a_misspelt_client_keyword_is_a_configuration_error_not_a_type_error() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'cooldown'"):
        JWKSClient(URL, cooldwn=5)
    with pytest.raises(ConfigurationError, match=r"JWKSClient\(options=\.\.\.\)"):
        JWKSClient(URL, options={"cooldown": 5})  # type: ignore[arg-type]


def test_client_keywords_override_the_options_object() -> None:
    base = JWKSOptions(cooldown=5, max_stale=7)
    client = JWKSClient(URL, options=base, cooldown=9)
    assert (client.cooldown, client.max_stale) == (9.0, 7.0)
    assert base.cooldown == 5.0  # unchanged


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(JWKSOptions(max_stale=7), id="object"),
        pytest.param({"max_stale": 7}, id="dict"),
    ],
)
def test_the_verifier_takes_an_object_or_a_dict_and_fills_in_its_clocks(given: Any) -> None:
    observer = GuardObserver()

    def clock() -> float:
        return 1_700_000_000.0

    def monotonic() -> float:
        return 5.0

    verifier = TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=URL,
        jwks_options=given,
        clock=clock,
        monotonic=monotonic,
        observer=observer,
    )
    (client,) = verifier.key_sources().values()
    assert isinstance(client, JWKSClient)
    assert (client.max_stale, client.clock, client.monotonic) == (7.0, clock, monotonic)
    assert client.observer is observer
    own = JWKSOptions(monotonic=time.monotonic)  # an explicit clock of its own wins
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=URL, jwks_options=own, monotonic=monotonic
    )
    assert verifier.key_sources()[ISSUER].monotonic is time.monotonic  # type: ignore[attr-defined]


# -- options that cannot apply ----------------------------------------------------------------


@pytest.fixture(scope="module")
def jwks() -> dict[str, Any]:
    return make_key("ES256", "opt-1").jwks()


@pytest.mark.parametrize(
    "given", [pytest.param({"cooldown": 5}, id="dict"), pytest.param(JWKSOptions(), id="object")]
)
def test_options_with_no_remote_jwks_are_refused_not_ignored(
    jwks: dict[str, Any], given: Any
) -> None:
    expected = r"jwks_options apply to a remote JWKS only"
    with pytest.raises(ConfigurationError, match=expected):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, jwks_options=given)
    source = StaticKeys(KeySet.from_jwks(jwks))
    with pytest.raises(ConfigurationError, match=expected):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, key_source=source, jwks_options=given)
    with pytest.raises(ConfigurationError, match=expected):
        TokenVerifier(
            issuers=[
                Issuer(ISSUER, AUDIENCE, jwks=jwks),
                Issuer("https://other.test/", AUDIENCE, key_source=source),
            ],
            jwks_options=given,
        )


def test_options_apply_when_one_issuer_of_several_is_remote(jwks: dict[str, Any]) -> None:
    verifier = TokenVerifier(
        issuers=[
            Issuer(ISSUER, AUDIENCE, jwks=jwks),
            Issuer("https://remote.test/", AUDIENCE, jwks_url=URL),
        ],
        jwks_options={"cooldown": 5},
    )
    assert verifier.key_sources()["https://remote.test/"].cooldown == 5.0  # type: ignore[attr-defined]


def test_an_empty_dict_is_no_options(jwks: dict[str, Any]) -> None:
    TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, jwks_options={})


# -- from the environment ---------------------------------------------------------------------


ENV = {"JWT_GUARD_ISSUER": ISSUER, "JWT_GUARD_AUDIENCE": "api", "JWT_GUARD_JWKS_URL": URL}


def test_environment_options_merge_with_a_dict_keywords_winning() -> None:
    environ = {**ENV, "JWT_GUARD_JWKS_COOLDOWN": "5", "JWT_GUARD_JWKS_MAX_STALE": "7"}
    verifier = TokenVerifier.from_env(environ=environ, jwks_options={"cooldown": 9})
    client: Any = verifier.key_sources()[ISSUER]
    assert (client.cooldown, client.max_stale) == (9.0, 7.0)


def test_an_options_object_next_to_environment_options_is_refused() -> None:
    environ = {**ENV, "JWT_GUARD_JWKS_COOLDOWN": "5"}
    with pytest.raises(ConfigurationError, match="JWT_GUARD_JWKS_"):
        TokenVerifier.from_env(environ=environ, jwks_options=JWKSOptions(max_stale=7))
    verifier = TokenVerifier.from_env(environ=ENV, jwks_options=JWKSOptions(max_stale=7))
    assert verifier.key_sources()[ISSUER].max_stale == 7.0  # type: ignore[attr-defined]


def test_a_bad_environment_option_names_the_option() -> None:
    environ = {**ENV, "JWT_GUARD_JWKS_MIN_TTL": "0"}
    with pytest.raises(ConfigurationError, match=r"jwks_options=.*min_ttl"):
        TokenVerifier.from_env(environ=environ)
