"""Claim rules at their exact boundaries, and the read-only ``Claims`` mapping."""

from __future__ import annotations

import copy
import json
import pickle
import threading
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import pytest

from jwt_guard import Claims
from jwt_guard._codec import MAX_DEPTH, loads_object
from jwt_guard.core.claims import ClaimRules, extract_scopes, validate_claims
from jwt_guard.errors import (
    ExpiredToken,
    InvalidClaim,
    IssuedInFuture,
    MissingClaim,
    NotYetValid,
    TokenTooOld,
    WrongAudience,
    WrongIssuer,
)

NOW = 1_700_000_000.0
ISS = "https://idp.example.test/"
AUD = "api"


@pytest.fixture
def check() -> Any:
    """``check(leeway=..., **claims)``: validate a claim set at ``NOW`` (None drops a claim)."""

    def run(
        *,
        leeway: float = 0,
        audiences: frozenset[str] | None = frozenset({AUD}),
        require_exp: bool = True,
        max_age: float | None = None,
        required: tuple[str, ...] = (),
        now: float = NOW,
        **claims: Any,
    ) -> None:
        payload = {"iss": ISS, "aud": AUD, "exp": NOW + 300, "iat": NOW}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        rules = ClaimRules(ISS, audiences, leeway, require_exp, max_age, required)
        validate_claims(payload, rules, now)

    return run


# -- time claims at their boundaries -----------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 30])
@pytest.mark.parametrize(
    ("offset", "error"),
    [
        pytest.param(-0.001, None, id="just-before"),
        pytest.param(0, ExpiredToken, id="exactly-at"),
        pytest.param(1, ExpiredToken, id="after"),
    ],
)
def test_exp_boundary(check: Any, leeway: float, offset: float, error: type | None) -> None:
    exp = NOW - leeway - offset  # now == exp + leeway + offset
    if error is None:
        check(exp=exp, leeway=leeway)
    else:
        with pytest.raises(error):
            check(exp=exp, leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 30])
@pytest.mark.parametrize(
    ("offset", "error"),
    [
        pytest.param(0, None, id="exactly-at"),
        pytest.param(0.001, NotYetValid, id="just-before"),
    ],
)
def test_nbf_boundary(check: Any, leeway: float, offset: float, error: type | None) -> None:
    nbf = NOW + leeway + offset  # now == nbf - leeway - offset
    if error is None:
        check(nbf=nbf, leeway=leeway)
    else:
        with pytest.raises(error):
            check(nbf=nbf, leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 30])
@pytest.mark.parametrize(
    ("offset", "error"),
    [
        pytest.param(0, None, id="at-the-leeway"),
        pytest.param(0.001, IssuedInFuture, id="beyond-the-leeway"),
    ],
)
def test_iat_in_the_future(check: Any, leeway: float, offset: float, error: type | None) -> None:
    iat = NOW + leeway + offset
    if error is None:
        check(iat=iat, leeway=leeway)
    else:
        with pytest.raises(error):
            check(iat=iat, leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 60])
@pytest.mark.parametrize(
    ("age", "error"),
    [
        pytest.param(600, None, id="exactly-max-age"),
        pytest.param(600.001, TokenTooOld, id="older"),
        pytest.param(630, TokenTooOld, id="older-within-the-leeway"),
    ],
)
def test_max_age(check: Any, leeway: float, age: float, error: type | None) -> None:
    # max_age means what it says: the leeway (for exp/nbf/iat skew) is not added to it.
    if error is None:
        check(iat=NOW - age, max_age=600, leeway=leeway)
    else:
        with pytest.raises(error):
            check(iat=NOW - age, max_age=600, leeway=leeway)


def test_max_age_needs_iat(check: Any) -> None:
    with pytest.raises(MissingClaim, match="iat"):
        check(iat=None, max_age=600)


def test_exp_is_required_by_default(check: Any) -> None:
    with pytest.raises(MissingClaim, match="exp"):
        check(exp=None)
    check(exp=None, require_exp=False)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('"1700000000"', id="numeric-string"),
        pytest.param('"soon"', id="string"),
        pytest.param("true", id="true"),
        pytest.param("false", id="false"),
        pytest.param("null", id="null"),
        pytest.param("1e400", id="1e400"),
        pytest.param("-1e400", id="minus-1e400"),
        pytest.param("1" + "0" * 400, id="integer-beyond-float"),
        pytest.param("[1700000000]", id="list"),
        pytest.param('{"t": 1}', id="object"),
    ],
)
def test_time_claims_must_be_finite_json_numbers(claim: str, raw: str) -> None:
    payload = loads_object(f'{{"iss": "{ISS}", "aud": "{AUD}", "{claim}": {raw}}}'.encode())
    rules = ClaimRules(ISS, frozenset({AUD}), require_exp=False)
    with pytest.raises(InvalidClaim):
        validate_claims(payload, rules, NOW)


def test_integer_and_float_times_are_both_accepted(check: Any) -> None:
    check(exp=int(NOW) + 1, iat=int(NOW), nbf=NOW - 0.5)


# -- issuer and audience -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(ISS.rstrip("/"), id="missing-trailing-slash"),
        pytest.param(ISS.upper(), id="other-case"),
        pytest.param(ISS + " ", id="trailing-space"),
        pytest.param([ISS], id="list"),
        pytest.param(None, id="missing"),
    ],
)
def test_iss_must_match_exactly(check: Any, iss: Any) -> None:
    with pytest.raises(WrongIssuer):
        check(iss=iss)


@pytest.mark.parametrize(
    ("aud", "error"),
    [
        pytest.param(AUD, None, id="string"),
        pytest.param(["other", AUD], None, id="list-containing"),
        pytest.param([AUD], None, id="one-element-list"),
        pytest.param("other", WrongAudience, id="wrong-string"),
        pytest.param(["other", "more"], WrongAudience, id="list-without"),
        pytest.param([], WrongAudience, id="empty-list"),
        pytest.param(None, WrongAudience, id="missing"),
        pytest.param(AUD.upper(), WrongAudience, id="other-case"),
        pytest.param(7, InvalidClaim, id="number"),
        pytest.param({"aud": AUD}, InvalidClaim, id="object"),
        pytest.param([AUD, 7], InvalidClaim, id="list-with-number"),
    ],
)
def test_aud(check: Any, aud: Any, error: type | None) -> None:
    if error is None:
        check(aud=aud)
    else:
        with pytest.raises(error):
            check(aud=aud)


@pytest.mark.parametrize(
    ("claims", "error", "shown"),
    [
        pytest.param(
            {"iss": ISS.rstrip("/")},
            WrongIssuer,
            ["'https://idp.example.test'", f"expected '{ISS}'", "only in a trailing slash"],
            id="iss-trailing-slash",
        ),
        pytest.param(
            {"iss": ISS.upper()}, WrongIssuer, ["only in letter case"], id="iss-letter-case"
        ),
        pytest.param({"iss": None}, WrongIssuer, ["'iss' is missing"], id="iss-missing"),
        pytest.param({"iss": 7}, WrongIssuer, ["a number, not a string"], id="iss-number"),
        pytest.param(
            {"aud": "api/"},
            WrongAudience,
            ["'api/'", "['api']", "only in a trailing slash"],
            id="aud-trailing-slash",
        ),
        pytest.param(
            {"aud": ["a", "b", "c", "d", "e"]},
            WrongAudience,
            ["['a', 'b', 'c', ... 5 in all]", "['api']"],
            id="aud-long-list",
        ),
        pytest.param({"aud": None}, WrongAudience, ["missing (expected ['api'])"], id="aud-none"),
    ],
)
def test_iss_and_aud_errors_show_the_token_value_next_to_the_expected_one(
    check: Any, claims: dict[str, Any], error: type, shown: list[str]
) -> None:
    with pytest.raises(error) as excinfo:
        check(**claims)
    for text in shown:
        assert text in str(excinfo.value)


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_token_values_in_errors_are_escaped_and_cut(check: Any, claim: str) -> None:
    hostile = "https://evil.example/\x1b[31m\r\nrejected code=none \u2028" + "x" * 5000
    with pytest.raises((WrongIssuer, WrongAudience)) as excinfo:
        check(**{claim: hostile})
    text = str(excinfo.value)
    assert not any(ch in text for ch in "\x1b\r\n\u2028")
    assert "\\x1b[31m\\x0d\\x0arejected" in text
    assert len(text) < 400


def test_any_configured_audience_is_enough(check: Any) -> None:
    check(aud="second", audiences=frozenset({AUD, "second"}))


def test_no_audience_configured_skips_the_check(check: Any) -> None:
    check(aud=None, audiences=None)
    check(aud=7, audiences=None)


@pytest.mark.parametrize(
    "claim", [pytest.param({"sub": 7}, id="sub-number"), pytest.param({"jti": []}, id="jti-list")]
)
def test_sub_and_jti_must_be_strings(check: Any, claim: dict[str, Any]) -> None:
    with pytest.raises(InvalidClaim):
        check(**claim)


def test_required_claims(check: Any) -> None:
    check(required=("sub",), sub="user-1")
    with pytest.raises(MissingClaim, match="'tenant'"):
        check(required=("sub", "tenant"), sub="user-1")


# -- Claims ------------------------------------------------------------------------------------


@pytest.fixture
def claims() -> Claims:
    return Claims(
        {
            "iss": ISS,
            "sub": "user-1",
            "aud": [AUD, "other"],
            "exp": NOW + 300,
            "iat": NOW,
            "jti": "id-1",
            "scope": "read write",
            "profile": {"email": "a@example.test", "tags": ["x"]},
        }
    )


def test_claims_is_a_read_only_mapping(claims: Claims) -> None:
    assert claims["sub"] == "user-1"
    assert claims.get("missing") is None
    assert "iss" in claims
    assert len(claims) == 8
    with pytest.raises(TypeError):
        claims["sub"] = "admin"  # type: ignore[index]
    with pytest.raises(TypeError):
        del claims["sub"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        claims.update({"sub": "admin"})  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        claims.extra = 1  # type: ignore[attr-defined]


def test_nested_values_are_read_only(claims: Claims) -> None:
    with pytest.raises(TypeError):
        claims["profile"]["email"] = "evil@example.test"
    assert claims["profile"]["tags"] == ("x",)
    with pytest.raises(AttributeError):
        claims["profile"]["tags"].append("y")
    assert claims["aud"] == (AUD, "other")


def test_claims_do_not_follow_changes_to_the_source_dict() -> None:
    source: dict[str, Any] = {"sub": "a", "nested": {"k": [1]}}
    claims = Claims(source)
    source["sub"] = "b"
    source["nested"]["k"].append(2)
    assert claims["sub"] == "a"
    assert claims["nested"]["k"] == (1,)


def test_claims_properties(claims: Claims) -> None:
    assert claims.subject == "user-1"
    assert claims.issuer == ISS
    assert claims.audience == (AUD, "other")
    assert claims.expires_at == datetime.fromtimestamp(NOW + 300, tz=timezone.utc)
    assert claims.expires_at.tzinfo is not None
    assert claims.issued_at == datetime.fromtimestamp(NOW, tz=timezone.utc)
    assert claims.token_id == "id-1"
    assert claims.scopes == {"read", "write"}
    assert claims.has_scopes("read")
    assert claims.has_scopes("read", "write")
    assert not claims.has_scopes("read", "admin")
    assert "user-1" in repr(claims)


@pytest.mark.parametrize(
    ("data", "prop", "expected"),
    [
        pytest.param({"aud": "api"}, "audience", ("api",), id="aud-string"),
        pytest.param({"aud": ["a", 1, "b"]}, "audience", ("a", "b"), id="aud-mixed-list"),
        pytest.param({}, "audience", (), id="aud-missing"),
        pytest.param({"sub": 7}, "subject", None, id="sub-number"),
        pytest.param({"iss": None}, "issuer", None, id="iss-null"),
        pytest.param({"exp": "1700000000"}, "expires_at", None, id="exp-string"),
        pytest.param({"exp": True}, "expires_at", None, id="exp-bool"),
        pytest.param({"exp": 1e300}, "expires_at", None, id="exp-beyond-datetime"),
        pytest.param({"jti": 5}, "token_id", None, id="jti-number"),
    ],
)
def test_claims_properties_are_typed(data: dict[str, Any], prop: str, expected: Any) -> None:
    assert getattr(Claims(data), prop) == expected


@pytest.mark.parametrize(
    ("data", "paths", "expected"),
    [
        pytest.param({"scope": "read  write "}, None, {"read", "write"}, id="scope-string"),
        pytest.param({"scp": ["read", "write"]}, None, {"read", "write"}, id="scp-list"),
        pytest.param({"scp": "read write"}, None, {"read", "write"}, id="scp-string"),
        pytest.param({"scope": "a", "scp": ["b"]}, None, {"a", "b"}, id="scope-and-scp"),
        pytest.param({"scp": ["a", 1, None, "", "b"]}, None, {"a", "b"}, id="scp-junk"),
        pytest.param({"scope": 7}, None, set(), id="scope-number"),
        pytest.param({}, None, set(), id="none"),
        pytest.param(
            {"permissions": ["read:users", "write:users"], "scope": "ignored"},
            ("permissions",),
            {"read:users", "write:users"},
            id="auth0-permissions",
        ),
        pytest.param(
            {"realm_access": {"roles": ["admin", "user"]}, "resource_access": {}},
            ("realm_access.roles",),
            {"admin", "user"},
            id="keycloak-realm-roles",
        ),
        pytest.param(
            {"realm_access": ["admin"]}, ("realm_access.roles",), set(), id="dotted-path-not-object"
        ),
        pytest.param({"roles": ["Reader"]}, ("roles",), {"Reader"}, id="azure-roles"),
        pytest.param({"groups": ["eng", "ops"]}, ("groups",), {"eng", "ops"}, id="groups"),
        pytest.param(
            {"scp": "a", "roles": ["b"]}, ("scp", "roles"), {"a", "b"}, id="several-paths"
        ),
    ],
)
def test_scopes(data: dict[str, Any], paths: tuple[str, ...] | None, expected: set[str]) -> None:
    if paths is None:
        assert Claims(data).scopes == expected
    else:
        assert extract_scopes(data, paths) == expected
        assert Claims(data, extract_scopes(data, paths)).scopes == expected


# -- read-only all the way down, equal to plain JSON values -----------------------------------


def test_nested_values_compare_equal_to_their_json_values(claims: Claims) -> None:
    assert claims["aud"] == [AUD, "other"]
    assert [AUD, "other"] == claims["aud"]  # noqa: SIM300 - the reflected comparison
    assert claims["aud"] == (AUD, "other")  # still a tuple
    assert claims["aud"] != [AUD]
    assert (claims["aud"] != [AUD, "other"]) is False
    assert claims["profile"] == {"email": "a@example.test", "tags": ["x"]}
    assert {"email": "a@example.test", "tags": ["x"]} == claims["profile"]  # noqa: SIM300
    assert claims["profile"] != {"email": "a@example.test", "tags": ["y"]}
    assert claims == json.loads(json.dumps(claims.to_dict()))
    assert hash(claims["aud"]) == hash((AUD, "other"))


def test_to_dict_is_a_fresh_plain_deep_copy(claims: Claims) -> None:
    plain = claims.to_dict()
    assert type(plain) is dict
    assert type(plain["aud"]) is list
    assert type(plain["profile"]) is dict
    assert type(plain["profile"]["tags"]) is list
    plain["profile"]["tags"].append("y")
    plain["aud"].clear()
    assert claims["profile"]["tags"] == ["x"]
    assert claims["aud"] == [AUD, "other"]
    assert claims.to_dict() is not claims.to_dict()
    assert json.loads(json.dumps(claims.to_dict())) == claims.to_dict()


def test_to_dict_serialises_with_starlette_and_flask(claims: Claims) -> None:
    import flask
    from starlette.responses import JSONResponse

    expected = json.loads(json.dumps(claims.to_dict()))
    assert json.loads(JSONResponse(claims.to_dict()).body) == expected
    app = flask.Flask(__name__)
    with app.app_context():
        assert flask.jsonify(claims.to_dict()).get_json() == expected
        with pytest.raises(TypeError):  # what the issue saw: a shallow copy keeps read-only views
            flask.json.dumps(dict(claims))


def test_nothing_reachable_from_claims_can_be_changed(claims: Claims) -> None:
    profile = claims["profile"]
    for target, name in (
        (claims, "_data"),
        (claims, "_scopes"),
        (claims, "_memo"),
        (profile, "_data"),
    ):
        with pytest.raises(AttributeError):
            setattr(target, name, {})
        with pytest.raises(AttributeError):
            delattr(target, name)
    with pytest.raises(TypeError):
        profile["email"] = "evil@example.test"
    with pytest.raises(AttributeError):
        profile.update({"email": "evil@example.test"})  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        profile["tags"][0] = "admin"
    keys = profile.keys()
    with pytest.raises(TypeError):
        keys.mapping["email"] = "evil@example.test"  # type: ignore[index]
    assert claims["profile"]["email"] == "a@example.test"


def test_copies_and_pickles_stay_equal_and_read_only(claims: Claims) -> None:
    assert copy.copy(claims) is claims
    assert copy.deepcopy(claims) is claims
    clone = pickle.loads(pickle.dumps(claims))
    assert clone == claims
    assert clone.scopes == claims.scopes
    assert clone.to_dict() == claims.to_dict()
    with pytest.raises(TypeError):
        clone["profile"]["email"] = "x"


def test_claims_from_other_mappings_and_sequences_are_frozen_too() -> None:
    source = {"tuple": ({"a": [1]},), "mapping": MappingProxyType({"b": {"c": 1}})}
    claims = Claims(source)
    with pytest.raises(TypeError):
        claims["tuple"][0]["a"] = 2
    with pytest.raises(TypeError):
        claims["mapping"]["b"]["c"] = 2
    assert claims.to_dict() == {"tuple": [{"a": [1]}], "mapping": {"b": {"c": 1}}}


def test_claims_built_by_hand_are_bounded_in_depth_too() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(MAX_DEPTH + 5):
        node["k"] = {}
        node = node["k"]
    node["leaf"] = 1
    with pytest.raises(ValueError, match="nested deeper"):
        Claims(deep)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="nested deeper"):
        Claims(loop)


def test_empty_objects_and_arrays_are_shared_not_copied() -> None:
    # A token of 1,750 `{}` cost 197 KB per cache entry: one shared read-only object each now.
    claims = Claims({"x": [{}, {}, [], []]})
    first, second, third, fourth = claims["x"]
    assert first is second
    assert third is fourth
    assert first == {}
    assert third == []


# -- the per-token memo: first value stays ----------------------------------------------------


def test_memo_keeps_the_first_value_for_a_key() -> None:
    claims = Claims({"sub": "a"})
    key, other = object(), object()
    calls: list[Claims] = []

    def make(c: Claims) -> tuple[str, ...]:
        calls.append(c)
        return ("first",)

    assert claims.memo(key, make) == ("first",)
    assert claims.memo(key, lambda c: ("second",)) is claims.memo(key, make)
    assert calls == [claims]
    assert claims.memo(other, lambda c: ("other",)) == ("other",)
    assert Claims({"sub": "a"}).memo(key, lambda c: ("fresh",)) == ("fresh",)


def test_memo_racing_threads_all_get_the_value_stored_first() -> None:
    claims = Claims({"sub": "a"})
    key = object()
    slow_started, fast_done = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def slow(c: Claims) -> str:
        slow_started.set()
        assert fast_done.wait(10)
        return "slow"

    def run_slow() -> None:
        results["slow"] = claims.memo(key, slow)

    thread = threading.Thread(target=run_slow)
    thread.start()
    assert slow_started.wait(10)
    results["fast"] = claims.memo(key, lambda c: "fast")
    fast_done.set()
    thread.join(10)
    assert results == {"fast": "fast", "slow": "fast"}
    assert claims.memo(key, lambda c: "later") == "fast"
