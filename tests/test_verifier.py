"""TokenVerifier with static key sets: algorithms, header rules, claims, hooks, cache.

Several issuers and the checks of every option live in test_issuers.py; remote JWKS behaviour
(fetching, rotation, faults) in test_jwks.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _core_helpers import (
    ALG_CASES,
    ALG_IDS,
    AUDIENCE,
    ISSUER,
    Clock,
    Key,
    b64e,
    claims_at,
    flip_signature_bit,
    make_key,
    tamper_payload,
    token,
)
from jwt_guard import Claims, ConfigurationError, InvalidToken, Issuer, JWTGuardError, TokenVerifier
from jwt_guard.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    ExpiredToken,
    InvalidClaim,
    IssuedInFuture,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    RevokedToken,
    TokenTooLarge,
    TokenTooOld,
    UnknownKey,
    UnsupportedHeader,
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


@pytest.fixture
def mint(clock: Clock, es_key: Key) -> Callable[..., str]:
    """``mint(key=es_key, header=None, **claims)``: a token issued now (None drops a claim)."""

    def make(key: Key | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return token(key or es_key, claims_at(clock(), **claims), header=header)

    return make


@pytest.fixture(params=["verify", "averify"])
def run(request: pytest.FixtureRequest) -> Callable[[TokenVerifier, Any], Claims]:
    """Call ``verify`` or ``averify`` (in a fresh event loop) on a verifier."""
    if request.param == "verify":
        return lambda verifier, tok: verifier.verify(tok)
    return lambda verifier, tok: asyncio.run(verifier.averify(tok))


# -- every algorithm ---------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_every_algorithm_good_accepted_tampered_refused(
    alg: str, crv: str | None, clock: Clock, run: Any
) -> None:
    key = make_key(alg, f"{alg}-1", crv=crv)
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=key.jwks(), algorithms=[alg], clock=clock
    )
    good = token(key, claims_at(clock(), scope="read"))
    claims = run(verifier, good)
    assert claims.subject == "user-1"
    assert claims.scopes == {"read"}
    with pytest.raises(BadSignature):
        run(verifier, tamper_payload(good, sub="admin"))
    with pytest.raises(BadSignature):
        run(verifier, flip_signature_bit(good, 3))
    with pytest.raises(BadSignature):
        run(verifier, token(make_key(alg, f"{alg}-1", crv=crv, name="x"), claims_at(clock())))


def test_hs256_with_the_rsa_public_key_as_secret_is_refused(clock: Clock) -> None:
    rsa_key = make_key("RS256", "rsa-1")
    verifier = TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=rsa_key.jwks(),
        algorithms=["RS256", "HS256"],
        clock=clock,
    )
    forged_key = Key("HS256", "rsa-1", rsa_key.public_pem())
    for kid in ("rsa-1", None):
        with pytest.raises((AlgorithmNotAllowed, UnknownKey)):
            verifier.verify(token(forged_key.with_kid(kid), claims_at(clock())))


# -- header rules through the verifier ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "ok"),
    [
        pytest.param("at+jwt", True, id="at+jwt"),
        pytest.param("application/at+jwt", True, id="application/at+jwt"),
        pytest.param("AT+JWT", True, id="upper-case"),
        pytest.param("JWT", False, id="JWT"),
        pytest.param("application/jwt", False, id="application/jwt"),
        pytest.param("at+jwt; charset=utf-8", False, id="with-parameter"),
        pytest.param(None, False, id="missing"),
        pytest.param(["at+jwt"], False, id="list"),
    ],
)
def test_required_typ(make_verifier: MakeVerifier, mint: Any, typ: Any, ok: bool) -> None:
    verifier = make_verifier(typ="at+jwt")
    tok = mint(header={"typ": typ})
    if ok:
        verifier.verify(tok)
    else:
        with pytest.raises(UnsupportedHeader):
            verifier.verify(tok)


def test_typ_configured_with_the_application_prefix(make_verifier: MakeVerifier, mint: Any) -> None:
    verifier = make_verifier(typ="application/at+jwt")
    verifier.verify(mint(header={"typ": "at+jwt"}))
    with pytest.raises(UnsupportedHeader):
        verifier.verify(mint(header={"typ": "JWT"}))


def test_typ_is_free_when_not_configured(make_verifier: MakeVerifier, mint: Any) -> None:
    for typ in ("JWT", "at+jwt", None, "anything"):
        make_verifier().verify(mint(header={"typ": typ}))


@pytest.mark.parametrize(
    ("header", "error"),
    [
        pytest.param({"alg": "none"}, AlgorithmNotAllowed, id="alg-none"),
        pytest.param({"alg": "NoNe"}, AlgorithmNotAllowed, id="alg-none-mixed-case"),
        pytest.param({"alg": None}, AlgorithmNotAllowed, id="alg-missing"),
        pytest.param({"alg": "HS256"}, AlgorithmNotAllowed, id="alg-not-allowed"),
        pytest.param({"crit": ["x"], "x": 1}, UnsupportedHeader, id="crit"),
        pytest.param({"crit": []}, UnsupportedHeader, id="crit-empty"),
        pytest.param({"b64": False}, UnsupportedHeader, id="b64-false"),
        pytest.param({"kid": "nope"}, UnknownKey, id="unknown-kid"),
    ],
)
def test_header_rules(
    make_verifier: MakeVerifier, mint: Any, header: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        make_verifier(algorithms=["ES256"]).verify(mint(header=header))


def test_an_embedded_attacker_jwk_is_ignored(make_verifier: MakeVerifier, mint: Any) -> None:
    attacker = make_key("ES256", "es-1", name="attacker")
    tok = mint(key=attacker, header={"jwk": attacker.public_jwk(), "jku": "https://evil/"})
    with pytest.raises(BadSignature):
        make_verifier().verify(tok)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"iss":"a","iss":"b"}', id="duplicate-iss"),
        pytest.param(b'{"exp":NaN}', id="nan"),
        pytest.param(b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", id="deep-nesting"),
        pytest.param(b'{"a":' + b"[" * 500 + b"]" * 500 + b"}", id="500-levels"),
        pytest.param(b'{"a":' + b'{"b":' * 40 + b"1" + b"}" * 40 + b"}", id="41-levels"),
        pytest.param(b'{"a":' + b"1" * 4400 + b"}", id="integer-too-long-to-parse"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_payload_that_is_not_a_plain_json_object_is_malformed(
    make_verifier: MakeVerifier, es_key: Key, payload: bytes
) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        make_verifier().verify(token(es_key, payload))
    assert type(excinfo.value) is MalformedToken


def test_size_limit_is_configurable(make_verifier: MakeVerifier, mint: Any) -> None:
    tok = mint(pad="x" * 200)
    make_verifier().verify(tok)
    with pytest.raises(TokenTooLarge):
        make_verifier(max_token_size=len(tok) - 1).verify(tok)


# -- claims through the verifier, with the injected clock --------------------------------------

CACHE = [pytest.param(4096, id="cache-on"), pytest.param(0, id="cache-off")]


@pytest.mark.parametrize("cache_size", CACHE)
@pytest.mark.parametrize("leeway", [0, 60])
def test_exp_boundary_with_the_injected_clock(
    make_verifier: MakeVerifier, mint: Any, clock: Clock, leeway: int, cache_size: int
) -> None:
    verifier = make_verifier(leeway=leeway, token_cache_size=cache_size)
    tok = mint()  # exp = now + 300
    verifier.verify(tok)
    clock.advance(300 + leeway - 0.001)
    verifier.verify(tok)
    clock.advance(0.001)  # now == exp + leeway
    with pytest.raises(ExpiredToken):
        verifier.verify(tok)


@pytest.mark.parametrize("leeway", [0, 60])
def test_nbf_boundary_with_the_injected_clock(
    make_verifier: MakeVerifier, mint: Any, clock: Clock, leeway: int
) -> None:
    verifier = make_verifier(leeway=leeway)
    tok = mint(nbf=clock() + 100)
    clock.advance(100 - leeway - 0.001)
    with pytest.raises(NotYetValid):
        verifier.verify(tok)
    clock.advance(0.001)
    verifier.verify(tok)


@pytest.mark.parametrize("leeway", [0, 60])
def test_iat_in_the_future(
    make_verifier: MakeVerifier, mint: Any, clock: Clock, leeway: int
) -> None:
    verifier = make_verifier(leeway=leeway)
    verifier.verify(mint(iat=clock() + leeway))
    with pytest.raises(IssuedInFuture):
        verifier.verify(mint(iat=clock() + leeway + 1))


@pytest.mark.parametrize("leeway", [0, 60])
@pytest.mark.parametrize("cache_size", CACHE)
def test_max_age(
    make_verifier: MakeVerifier, mint: Any, clock: Clock, cache_size: int, leeway: int
) -> None:
    # The issue's case: max_age=10 accepted tokens 30 s and 69 s old (max_age + leeway). The
    # limit is max_age itself, leeway or not, fresh or from the cache.
    verifier = make_verifier(max_age=120, leeway=leeway, token_cache_size=cache_size)
    tok = mint()
    verifier.verify(tok)
    clock.advance(120)
    verifier.verify(tok)
    clock.advance(0.5)
    with pytest.raises(TokenTooOld):
        verifier.verify(tok)
    with pytest.raises(MissingClaim):
        verifier.verify(mint(iat=None))


@pytest.mark.parametrize(
    ("claim", "raw"),
    [
        pytest.param("exp", '"1700000300"', id="exp-string"),
        pytest.param("exp", "true", id="exp-bool"),
        pytest.param("exp", "null", id="exp-null"),
        pytest.param("exp", "1e400", id="exp-1e400"),
        pytest.param("exp", "1" + "0" * 400, id="exp-huge-integer"),
        pytest.param("nbf", '"0"', id="nbf-string"),
        pytest.param("nbf", "false", id="nbf-bool"),
        pytest.param("iat", "null", id="iat-null"),
        pytest.param("iat", "-1e400", id="iat-minus-1e400"),
    ],
)
def test_time_claims_of_the_wrong_type(
    make_verifier: MakeVerifier, es_key: Key, clock: Clock, claim: str, raw: str
) -> None:
    base = claims_at(clock())
    base.pop(claim, None)
    body = json.dumps(base)[:-1] + f', "{claim}": {raw}}}'
    with pytest.raises(InvalidClaim):
        make_verifier().verify(token(es_key, body.encode()))


def test_missing_exp(make_verifier: MakeVerifier, mint: Any) -> None:
    tok = mint(exp=None)
    with pytest.raises(MissingClaim):
        make_verifier().verify(tok)
    assert make_verifier(require_exp=False).verify(tok).expires_at is None


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        pytest.param({"iss": ISSUER.rstrip("/")}, WrongIssuer, id="iss-without-slash"),
        pytest.param({"iss": None}, WrongIssuer, id="iss-missing"),
        pytest.param({"iss": {"url": ISSUER}}, WrongIssuer, id="iss-object"),
        pytest.param({"aud": "other"}, WrongAudience, id="aud-other"),
        pytest.param({"aud": ["other", AUDIENCE]}, None, id="aud-list"),
        pytest.param({"aud": None}, WrongAudience, id="aud-missing"),
        pytest.param({"aud": 1}, InvalidClaim, id="aud-number"),
        pytest.param({"sub": 1}, InvalidClaim, id="sub-number"),
    ],
)
def test_iss_and_aud(
    make_verifier: MakeVerifier, mint: Any, claims: dict[str, Any], error: type | None
) -> None:
    tok = mint(**claims)
    if error is None:
        make_verifier().verify(tok)
    else:
        with pytest.raises(error):
            make_verifier().verify(tok)


_MISMATCHES = [
    pytest.param({"iss": ISSUER.rstrip("/") + "\x1b[2J"}, "wrong_issuer", id="iss"),
    pytest.param({"aud": AUDIENCE + "-probe\r\nX-Evil: 1"}, "wrong_audience", id="aud"),
]


@pytest.mark.parametrize(("claims", "code"), _MISMATCHES)
def test_mismatched_iss_and_aud_are_in_the_detail_and_the_log_line_escaped(
    make_verifier: MakeVerifier,
    mint: Any,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, str],
    code: str,
) -> None:
    (value,) = claims.values()
    with pytest.raises(JWTGuardError) as excinfo, caplog.at_level(logging.INFO):
        make_verifier().verify(mint(**claims))
    assert excinfo.value.code == code
    detail = str(excinfo.value)
    expected = ISSUER if code == "wrong_issuer" else AUDIENCE
    escaped = value.replace("\x1b", "\\x1b").replace("\r", "\\x0d").replace("\n", "\\x0a")
    assert escaped in detail
    assert repr(expected) in detail or f"'{expected}'" in detail
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert not any(ch in line for ch in "\x1b\r\n")
    assert value.split("\x1b")[0].split("\r")[0] in line


@pytest.mark.parametrize(("claims", "code"), _MISMATCHES)
def test_mismatched_iss_and_aud_never_reach_the_http_answer(
    make_verifier: MakeVerifier, mint: Any, claims: dict[str, str], code: str
) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from werkzeug.test import Client

    from jwt_guard import JWTGuard, JWTGuardWSGI

    (value,) = claims.values()
    secret_part = value[len(ISSUER) - 1 :] if code == "wrong_issuer" else value
    tok = mint(**claims)
    headers = {"Authorization": f"Bearer {tok}"}

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    answers = []
    with TestClient(JWTGuard(Starlette(), verifier=make_verifier())) as client:
        response = client.get("/", headers=headers)
        answers.append((response.status_code, response.headers.items(), response.content))
    response = Client(JWTGuardWSGI(wsgi_app, verifier=make_verifier())).get("/", headers=headers)
    answers.append((response.status_code, response.headers.items(), response.data))
    for status, header_items, body in answers:
        assert status == 401
        shown = body.decode("latin-1") + "".join(f"{k}: {v}" for k, v in header_items)
        assert '"error_description"' in shown
        for fragment in ("x1b", "2J", "-probe", "X-Evil", secret_part):
            assert fragment not in shown, (fragment, shown)
        assert ISSUER not in shown


def test_audience_none_turns_the_check_off(make_verifier: MakeVerifier, mint: Any) -> None:
    make_verifier(audience=None).verify(mint(aud=None))


def test_several_audiences(make_verifier: MakeVerifier, mint: Any) -> None:
    verifier = make_verifier(audience=["a", "b"])
    verifier.verify(mint(aud="b"))
    with pytest.raises(WrongAudience):
        verifier.verify(mint(aud="c"))


def test_required_claims(make_verifier: MakeVerifier, mint: Any) -> None:
    verifier = make_verifier(required_claims=("tenant", "jti"))
    verifier.verify(mint(tenant="t1", jti="j1"))
    with pytest.raises(MissingClaim, match="tenant"):
        verifier.verify(mint(jti="j1"))


def test_scope_claims_option(make_verifier: MakeVerifier, mint: Any) -> None:
    claims = make_verifier(scope_claims=("realm_access.roles",)).verify(
        mint(scope="ignored", realm_access={"roles": ["admin"]})
    )
    assert claims.scopes == {"admin"}
    assert make_verifier().verify(mint(scp=["a", "b"])).scopes == {"a", "b"}


def test_verified_claims_are_read_only(make_verifier: MakeVerifier, mint: Any) -> None:
    claims = make_verifier().verify(mint(profile={"role": "user"}))
    with pytest.raises(TypeError):
        claims["profile"]["role"] = "admin"
    with pytest.raises(TypeError):
        claims["sub"] = "admin"  # type: ignore[index]


# -- hooks -------------------------------------------------------------------------------------


def _refuse(claims: Claims) -> bool:
    return claims.get("tenant") == "blocked"


async def _arefuse(claims: Claims) -> bool:
    await asyncio.sleep(0)
    return claims.get("tenant") == "blocked"


def _check_raises(claims: Claims) -> None:
    if claims.get("tenant") == "blocked":
        raise InvalidClaim("tenant is blocked")


async def _acheck_raises(claims: Claims) -> None:
    _check_raises(claims)


def _accept(claims: Claims) -> bool:
    return claims.get("tenant") != "blocked"


async def _aaccept(claims: Claims) -> bool:
    return _accept(claims)


@pytest.mark.parametrize(
    ("option", "hook", "error"),
    [
        pytest.param("is_revoked", _refuse, RevokedToken, id="is_revoked-sync"),
        pytest.param("is_revoked", _arefuse, RevokedToken, id="is_revoked-async"),
        pytest.param("claims_check", _accept, InvalidClaim, id="claims_check-returns-false"),
        pytest.param("claims_check", _aaccept, InvalidClaim, id="claims_check-async-false"),
        pytest.param("claims_check", _check_raises, InvalidClaim, id="claims_check-raises"),
        pytest.param("claims_check", _acheck_raises, InvalidClaim, id="claims_check-async-raises"),
    ],
)
async def test_hooks_with_averify(
    make_verifier: MakeVerifier, mint: Any, option: str, hook: Any, error: type
) -> None:
    verifier = make_verifier(**{option: hook})
    assert (await verifier.averify(mint(tenant="ok"))).subject == "user-1"
    with pytest.raises(error):
        await verifier.averify(mint(tenant="blocked"))
    if not inspect.iscoroutinefunction(hook):
        verifier.verify(mint(tenant="ok"))
        with pytest.raises(error):
            verifier.verify(mint(tenant="blocked"))


@pytest.mark.parametrize("option", ["is_revoked", "claims_check"])
def test_an_async_hook_needs_averify(make_verifier: MakeVerifier, mint: Any, option: str) -> None:
    # Documented: the one ConfigurationError after construction. It comes on every call,
    # before the token is looked at, so no input decides whether it is raised.
    verifier = make_verifier(**{option: _arefuse})
    assert verifier.async_hooks
    for value in (mint(), "junk", None):
        with pytest.raises(ConfigurationError, match=r"call averify\(\)"):
            verifier.verify(value)


class _AsyncCallable:
    def __init__(self, hook: Callable[[Claims], Any]) -> None:
        self.hook = hook

    async def __call__(self, claims: Claims) -> bool:
        return bool(await self.hook(claims))


@pytest.mark.parametrize(
    ("option", "hook"),
    [
        pytest.param(
            "claims_check", _AsyncCallable(_aaccept), id="claims_check-async-callable-object"
        ),
        pytest.param("claims_check", lambda c: _aaccept(c), id="claims_check-lambda-coroutine"),
        pytest.param("is_revoked", _AsyncCallable(_arefuse), id="is_revoked-async-callable-object"),
        pytest.param("is_revoked", lambda c: _arefuse(c), id="is_revoked-lambda-coroutine"),
    ],
)
async def test_an_awaitable_from_a_sync_looking_hook_never_passes_verify(
    make_verifier: MakeVerifier,
    mint: Any,
    option: str,
    hook: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # iscoroutinefunction() misses these; verify() cannot await them, so it must refuse (an
    # un-awaited coroutine is not False: a claims_check that refuses everything let all in).
    verifier = make_verifier(**{option: hook})
    assert not verifier.async_hooks
    for tenant in ("blocked", "ok", "ok"):
        with pytest.raises(InvalidToken) as excinfo:
            verifier.verify(mint(tenant=tenant))
        assert type(excinfo.value) is InvalidToken
        assert "verify() cannot await" in str(excinfo.value)
    # A programming error: said once at ERROR, without a traceback; each refusal at INFO.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "averify()" in errors[0].getMessage()
    assert errors[0].exc_info is None
    assert (await verifier.averify(mint(tenant="ok"))).subject == "user-1"
    with pytest.raises(InvalidClaim if option == "claims_check" else RevokedToken):
        await verifier.averify(mint(tenant="blocked"))


@pytest.mark.parametrize("cache_size", CACHE)
def test_hooks_run_again_for_a_cached_token(
    make_verifier: MakeVerifier, mint: Any, cache_size: int
) -> None:
    revoked: set[str] = set()
    verifier = make_verifier(
        is_revoked=lambda c: c.token_id in revoked, token_cache_size=cache_size
    )
    tok = mint(jti="j-1")
    verifier.verify(tok)
    revoked.add("j-1")
    with pytest.raises(RevokedToken):
        verifier.verify(tok)


def test_a_hook_that_crashes_becomes_invalid_token(
    make_verifier: MakeVerifier, mint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(claims: Claims) -> bool:
        raise KeyError("boom")

    with pytest.raises(InvalidToken) as excinfo:
        make_verifier(claims_check=crash).verify(mint())
    assert isinstance(excinfo.value.__cause__, KeyError)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "seconds"),
    [
        pytest.param("leeway", timedelta(minutes=2), 120.0, id="leeway"),
        pytest.param("max_age", timedelta(minutes=2), 120.0, id="max_age"),
        pytest.param("token_cache_ttl", timedelta(seconds=30), 30.0, id="token_cache_ttl"),
    ],
)
def test_durations_take_a_timedelta(
    make_verifier: MakeVerifier, mint: Any, clock: Clock, option: str, value: Any, seconds: float
) -> None:
    by_timedelta = make_verifier(**{option: value})
    by_number = make_verifier(**{option: seconds})
    assert repr(by_timedelta) == repr(by_number)
    tok = mint()
    assert by_timedelta.verify(tok) == by_number.verify(tok)
    if option == "max_age":
        clock.advance(seconds + 1)
        with pytest.raises(TokenTooOld):
            by_timedelta.verify(tok)


def test_repr_shows_the_configuration_never_a_key() -> None:
    secret = "a-very-secret-hmac-key-that-must-never-be-printed!!"
    jwks = {"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64e(secret.encode())}]}
    verifier = TokenVerifier(
        issuers=[
            Issuer("https://a.example/", ["api-a", "api-b"], jwks=jwks),
            Issuer("https://b.example/", None, jwks_url="https://b.example/jwks?key=abc"),
            Issuer("https://c.example/", "api-c", algorithms=["RS256", "ES256"]),
        ],
        algorithms=["HS256", "RS256", "ES256"],
        token_cache_size=0,
    )
    text = repr(verifier)
    for expected in (
        "TokenVerifier(",
        "'https://a.example/': audience=['api-a', 'api-b'], keys=static(1)",
        "'https://b.example/': audience=None, keys=jwks_url",
        "'https://c.example/': audience=['api-c'], keys=discovery",
        "algorithms=3 allowed",
        "cache=off",
    ):
        assert expected in text
    issuer_text = repr(Issuer("https://a.example/", "api", jwks=jwks))
    assert "jwks=<1 keys>" in issuer_text
    url_text = repr(Issuer("https://b.example/", None, jwks_url="https://b.example/jwks?key=abc"))
    assert "jwks_url='https://b.example/jwks?...'" in url_text
    for shown in (text, issuer_text, url_text):
        assert secret not in shown
        assert b64e(secret.encode()) not in shown
        assert "key=abc" not in shown


def test_configuration_error_is_not_a_request_error() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert not issubclass(ConfigurationError, JWTGuardError)


# -- token cache -------------------------------------------------------------------------------


def test_a_repeated_token_is_answered_from_the_cache(
    make_verifier: MakeVerifier, mint: Any
) -> None:
    verifier = make_verifier()
    tok = mint()
    first = verifier.verify(tok)
    assert verifier.verify(tok) is first
    assert asyncio.run(verifier.averify(tok)) is first


def test_cache_size_zero_turns_the_cache_off(make_verifier: MakeVerifier, mint: Any) -> None:
    verifier = make_verifier(token_cache_size=0)
    tok = mint()
    first = verifier.verify(tok)
    second = verifier.verify(tok)
    assert second is not first
    assert second == first


def test_bytes_tokens_are_verified_but_not_cached(make_verifier: MakeVerifier, mint: Any) -> None:
    verifier = make_verifier()
    tok = mint().encode()
    assert verifier.verify(tok) is not verifier.verify(tok)


def test_an_expired_cached_token_is_refused(
    make_verifier: MakeVerifier, mint: Any, clock: Clock
) -> None:
    verifier = make_verifier(leeway=0, token_cache_ttl=10_000)
    tok = mint()
    verifier.verify(tok)
    clock.advance(299)
    verifier.verify(tok)
    clock.advance(1)
    with pytest.raises(ExpiredToken):
        verifier.verify(tok)


def test_a_tampered_copy_of_a_cached_token_is_not_served(
    make_verifier: MakeVerifier, mint: Any
) -> None:
    verifier = make_verifier()
    tok = mint()
    verifier.verify(tok)
    with pytest.raises(BadSignature):
        verifier.verify(tamper_payload(tok, sub="admin"))
    with pytest.raises(BadSignature):
        verifier.verify(flip_signature_bit(tok))


# -- nothing but JWTGuardError escapes ---------------------------------------------------------


def _odd_inputs(es_key: Key) -> list[Any]:
    deep = b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"
    # Validly signed, right issuer and audience: only the nesting is wrong (issue 10, item 6).
    deep500 = json.dumps(claims_at(1_700_000_000)).encode()[:-1] + b', "d": ' + b"[" * 500
    deep500 += b"]" * 500 + b"}"
    return [
        None,
        0,
        12345,
        -1,
        3.5,
        float("nan"),
        True,
        [],
        ["a", "b", "c"],
        {"token": "x"},
        object(),
        b"",
        b"\xff\xfe\xfd",
        "caf\u00e9.b.c".encode(),
        bytearray(b"a.b.c"),
        "",
        " ",
        "a.b.c",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        ".",
        "..",
        "...",
        "....",
        "." * 5000,
        "." * 10_000_000,
        "x" * 10_000_000,
        "\x00.\x00.\x00",
        "Bearer " + token(es_key, claims_at(1_700_000_000)),
        token(es_key, claims_at(1_700_000_000)) + "\x00",
        token(es_key, deep),
        token(es_key, b"{}", header=deep),
        token(es_key, deep500),
        token(es_key, b"{}", header=deep500),
        token(es_key, claims_at(1_700_000_000, x=[{}] * 1700)),
        token(es_key, b'{"exp": 1' + b"0" * 400 + b"}"),
        token(es_key, b'{"iss": "' + ISSUER.encode() + b'", "exp": 1' + b"0" * 400 + b"}"),
        token(es_key, claims_at(1_700_000_000, iat=10**400, nbf=-(10**400))),
        token(es_key, claims_at(1_700_000_000, exp=10**30, aud=[[AUDIENCE]])),
        token(es_key, claims_at(1_700_000_000, aud={"a": 1}, sub=["x"])),
        token(es_key, {"iss": ["x"]}),
        token(es_key, {"iss": {"x": 1}}),
        token(es_key, claims_at(1_700_000_000), header={"kid": ["x"]}),
        token(es_key, claims_at(1_700_000_000), header={"kid": "x" * 2000}),
        token(es_key, claims_at(1_700_000_000), header={"alg": {"x": 1}}),
        token(es_key, claims_at(1_700_000_000), header={"typ": 7}),
        b64e(b"{}") + "." + b64e(b"{}") + "." + b64e(b"\x00" * 64),
        b64e(b'{"alg":"ES256"}') + ".." + b64e(b"\x00" * 64),
    ]


def _no_unexpected(caplog: pytest.LogCaptureFixture) -> None:
    # No input makes jwt_guard log at ERROR (a traceback per request is a log flood).
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, loud


def test_odd_inputs_raise_only_jwtguard_errors(
    make_verifier: MakeVerifier, es_key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier(typ=None, max_age=3600, token_cache_size=16)
    for value in _odd_inputs(es_key):
        for attempt in range(2):  # the second time through the token cache path
            try:
                verifier.verify(value)
            except JWTGuardError:
                pass
            except Exception as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{type(exc).__name__} escaped for {value!r:.80} ({attempt=})")
    _no_unexpected(caplog)


async def test_odd_inputs_raise_only_jwtguard_errors_async(
    make_verifier: MakeVerifier, es_key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier(typ=None, max_age=3600)
    for value in _odd_inputs(es_key):
        try:
            await verifier.averify(value)
        except JWTGuardError:
            pass
        except Exception as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{type(exc).__name__} escaped for {value!r:.80}")
    _no_unexpected(caplog)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
_claim_names = st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "jti", "scope", "scp"])


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    overrides=st.dictionaries(_claim_names, _json, max_size=4),
    header=st.dictionaries(
        st.sampled_from(["kid", "typ", "crit", "b64", "cty", "x"]), _json, max_size=2
    ),
)
def test_signed_tokens_with_arbitrary_claims_raise_only_jwtguard_errors(
    make_verifier: MakeVerifier,
    es_key: Key,
    clock: Clock,
    overrides: dict[str, Any],
    header: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(max_age=3600, token_cache_size=0)
    claims = claims_at(clock())
    claims.update(overrides)
    tok = token(es_key, claims, header={**header, "kid": header.get("kid", es_key.kid)})
    error: JWTGuardError | None = None
    try:
        verifier.verify(tok)
    except JWTGuardError as exc:  # anything else escapes and fails the test
        error = exc
    # A bare InvalidToken is the catch-all for an unexpected exception inside jwt_guard.
    assert type(error) is not InvalidToken, f"unexpected error path: {error.__cause__!r}"
    if error is None:  # whatever the claims, they turn into JSON
        assert json.loads(json.dumps(verifier.verify(tok).to_dict())) == claims
    _no_unexpected(caplog)


@pytest.mark.parametrize("depth", [2, 16, 31, 32, 33, 64, 500])
@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("where", ["claim", "scope-claim", "header"])
def test_nesting_at_any_depth_is_accepted_or_malformed_never_an_error_log(
    make_verifier: MakeVerifier,
    es_key: Key,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    depth: int,
    kind: str,
    where: str,
) -> None:
    value: Any = "leaf"
    for _ in range(depth - 1):  # the token's own object is level 1
        value = [value] if kind == "arrays" else {"k": value}
    claims = claims_at(clock())
    header: dict[str, Any] = {"kid": es_key.kid}
    if where == "header":
        header["x"] = value
    else:
        claims["realm_access" if where == "scope-claim" else "data"] = value
    verifier = make_verifier(scope_claims=("scope", "realm_access.k.k"))
    tok = token(es_key, claims, header=header)
    if depth <= 32:
        result = verifier.verify(tok)
        assert verifier.verify(tok) is result  # and from the cache
        assert json.loads(json.dumps(result.to_dict())) == claims
    else:
        with pytest.raises(MalformedToken, match="nested deeper than 32"):
            verifier.verify(tok)
    _no_unexpected(caplog)


def test_a_wall_clock_step_back_does_not_stretch_the_token_cache_lifetime(
    make_verifier: MakeVerifier, mint: Any, clock: Clock
) -> None:
    """Issue 10, item 29: the cache lifetime runs on the monotonic clock (``exp`` on the wall
    clock), so a step back of the wall clock keeps no entry longer."""
    verifier = make_verifier(token_cache_ttl=100)
    tok = mint(iat=None, exp=int(clock()) + 7200)
    first = verifier.verify(tok)
    assert verifier.verify(tok) is first
    clock.step_wall(-3600)
    clock.advance(99)
    assert verifier.verify(tok) is first
    clock.advance(1)
    assert verifier.verify(tok) is not first  # verified afresh
