"""``SenderConstraints``: the guard's DPoP and mTLS options, how they are configured (keyword
arguments, Django settings, environment), the ``Authorization`` schemes they accept and the
challenges they answer with. Requests themselves are in ``tests/test_dpop_adapters.py`` and
``tests/test_mtls_adapters.py``."""

from __future__ import annotations

from typing import Any

import pytest

from _common import parse_challenge
from jwt_guard import JWTGuard, JWTGuardWSGI, TokenVerifier
from jwt_guard.binding.nonce import DPoPNonces
from jwt_guard.binding.policy import BEARER, DPOP, SENDER_OPTIONS, SenderConstraints
from jwt_guard.errors import (
    ConfigurationError,
    DPoPBindingMismatch,
    InsufficientScope,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    JWTGuardError,
    MissingToken,
    UseDPoPNonce,
)
from jwt_guard.guard.middleware import Guard, authorization_credentials
from jwt_guard.stores.memory import MemoryReplayStore

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
URL = "https://api.example.com"
ALGS = "ES256 EdDSA Ed25519 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 ES256K Ed448"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.fixture(scope="module")
def static_verifier() -> TokenVerifier:
    return TokenVerifier(
        issuer="https://idp.example.com/",
        audience="api",
        jwks={"keys": [{"kty": "oct", "k": "c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M"}]},
    )


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"dpop": "on"}, r"dpop=\.\.\.\): must be 'off', 'allowed'", id="dpop-mode"),
        pytest.param({"dpop": True}, "must be 'off', 'allowed' or 'required'", id="dpop-bool"),
        pytest.param({"mtls": "yes"}, r"mtls=\.\.\.\): must be", id="mtls-mode"),
        pytest.param({"dpop": "required"}, "public_url='https://api.example.com'", id="no-url"),
        pytest.param(
            {"dpop": "allowed", "public_url": "api.example.com"}, "not an absolute", id="url"
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": "https://api.example.com/?x=1"},
            "query or fragment",
            id="url-query",
        ),
        pytest.param({"dpop": "allowed", "public_url": []}, "the list is empty", id="url-empty"),
        pytest.param({"dpop": "allowed", "public_url": 42}, "give the URL", id="url-type"),
        pytest.param({"trusted_proxies": "10.0.0.7"}, "a list of addresses", id="proxies-str"),
        pytest.param({"trusted_proxies": ["proxy.local"]}, "not an IP address", id="proxy-name"),
        pytest.param({"trusted_proxies": ["10.0.0.7/8"]}, "has host bits", id="proxy-hostbits"),
        pytest.param({"mtls_header": "Client-Cert"}, "no effect with mtls='off'", id="hdr-off"),
        pytest.param(
            {"mtls": "allowed", "mtls_header": "Client-Cert"}, "trusted_proxies", id="hdr-proxy"
        ),
        pytest.param(
            {"mtls": "allowed", "mtls_header": "Client Cert", "trusted_proxies": ["10.0.0.7"]},
            "no header name",
            id="hdr-name",
        ),
        pytest.param({"dpop_options": {"iat_window": 30}}, "dpop='off'", id="options-off"),
        pytest.param({"dpop_nonce": True}, "dpop='off'", id="nonce-off"),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_options": {"iat_windw": 30}},
            "no such DPoPVerifier option 'iat_windw'",
            id="options-typo",
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_options": {"algorithms": ["HS256"]}},
            "HMAC",
            id="options-hmac",
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_options": ["algorithms"]},
            "a dict of DPoPVerifier options",
            id="options-type",
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_nonce": "short"},
            "at least 32 bytes",
            id="nonce-short",
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_nonce": 1},
            "True \\(a secret for this process\\)",
            id="nonce-type",
        ),
        pytest.param(
            {
                "dpop": "allowed",
                "public_url": URL,
                "dpop_nonce": True,
                "dpop_options": {"nonces": DPoPNonces()},
            },
            "not both",
            id="nonce-twice",
        ),
        pytest.param(
            {"dpop": "allowed", "public_url": URL, "dpop_options": {"replay_store": {}}},
            "first_use",
            id="store-type",
        ),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SenderConstraints(owner="JWTGuard", **options)


def test_the_middlewares_take_the_options_and_suggest_the_right_spelling(
    static_verifier: TokenVerifier,
) -> None:
    guard = JWTGuard(_app, verifier=static_verifier, dpop="allowed", public_url=URL).guard
    assert (guard.sender.dpop, guard.sender.public_urls) == ("allowed", (URL,))
    assert guard.schemes == frozenset({BEARER, DPOP})
    with pytest.raises(ConfigurationError, match="did you mean 'dpop'"):
        JWTGuard(_app, verifier=static_verifier, dpopp="allowed")
    with pytest.raises(ConfigurationError, match="did you mean 'public_url'"):
        JWTGuardWSGI(_app, verifier=static_verifier, public_uri=URL)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"JWTGuardWSGI\(dpop=\.\.\.\)"):
        JWTGuardWSGI(_app, verifier=static_verifier, dpop="required")  # type: ignore[arg-type]
    assert set(SENDER_OPTIONS) <= set(__import__("inspect").signature(SenderConstraints).parameters)


def test_django_settings_take_them_and_report_bad_ones_as_improperly_configured(
    static_verifier: TokenVerifier,
) -> None:
    from _wsgi_helpers import ensure_django

    ensure_django()
    from django.core.exceptions import ImproperlyConfigured

    from jwt_guard.django import guard_from_settings

    guard = guard_from_settings(
        {"verifier": static_verifier, "mtls": "required", "trusted_proxies": ["10.0.0.0/8"]}
    )
    assert guard.sender.mtls == "required"
    with pytest.raises(ImproperlyConfigured, match=r"settings\.JWT_GUARD\['dpop'\]"):
        guard_from_settings({"verifier": static_verifier, "dpop": "sometimes"})


def test_from_env(static_verifier: TokenVerifier) -> None:
    environ = {
        "JWT_GUARD_DPOP": "Required",
        "JWT_GUARD_PUBLIC_URL": "https://api.example.com, https://api.example.org/v1",
        "JWT_GUARD_DPOP_ALGORITHMS": "ES256,EdDSA",
        "JWT_GUARD_DPOP_IAT_WINDOW": "30",
        "JWT_GUARD_DPOP_NONCE_SECRET": "n" * 32,
        "JWT_GUARD_MTLS": "allowed",
        "JWT_GUARD_TRUSTED_PROXIES": "10.0.0.7, 10.1.0.0/16",
        "JWT_GUARD_MTLS_HEADER": "X-Forwarded-Client-Cert",
    }
    store = MemoryReplayStore()
    guard = JWTGuard.from_env(
        _app,
        environ=environ,
        verifier=static_verifier,
        dpop_options={"replay_store": store},  # merged with the variables' options
    ).guard
    sender = guard.sender
    assert (sender.dpop, sender.mtls, sender.mtls_header) == (
        "required",
        "allowed",
        "x-forwarded-client-cert",
    )
    assert sender.public_urls == ("https://api.example.com", "https://api.example.org/v1")
    assert sender.verifier is not None
    assert sender.verifier.algorithms == ("ES256", "EdDSA")
    assert sender.verifier.iat_window == 30
    assert sender.verifier.replay_store is store
    assert sender.verifier.nonces is not None
    assert "10.1.0.0/16" in repr(sender)
    assert "n" * 32 not in repr(sender)  # never the nonce secret


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"JWT_GUARD_DPOP": "maybe"}, "JWT_GUARD_DPOP='maybe'", id="mode"),
        pytest.param({"JWT_GUARD_MTLS": "on"}, "JWT_GUARD_MTLS='on'", id="mtls"),
        pytest.param(
            {"JWT_GUARD_DPOP_NONCE": "true", "JWT_GUARD_DPOP_NONCE_SECRET": "n" * 32},
            "both set dpop_nonce",
            id="nonce-twice",
        ),
        pytest.param({"JWT_GUARD_DPOP_IAT_WINDOW": "soon"}, "IAT_WINDOW", id="window"),
        pytest.param({"JWT_GUARD_DPOPP": "allowed"}, "did you mean JWT_GUARD_DPOP", id="typo"),
    ],
)
def test_bad_environment_values(environ: dict[str, str], message: str) -> None:
    from jwt_guard.core._env import middleware_options_from_env

    with pytest.raises(ConfigurationError, match=message):
        middleware_options_from_env(environ=environ)


# -- the Authorization header ---------------------------------------------------------------------

BOTH = frozenset({BEARER, DPOP})
DPOP_ONLY = frozenset({DPOP})


@pytest.mark.parametrize(
    ("values", "schemes", "outcome"),
    [
        pytest.param([f"DPoP {TOKEN}"], BOTH, (DPOP, TOKEN), id="dpop"),
        pytest.param([f"dPoP {TOKEN}"], BOTH, (DPOP, TOKEN), id="dpop-case"),
        pytest.param([f"Bearer {TOKEN}"], BOTH, (BEARER, TOKEN), id="bearer-too"),
        pytest.param([f"Bearer {TOKEN}"], DPOP_ONLY, MissingToken, id="bearer-not-accepted"),
        pytest.param([f"DPoP {TOKEN}"], frozenset({BEARER}), MissingToken, id="dpop-off"),
        pytest.param(["DPoP"], BOTH, InvalidRequest, id="no-credential"),
        pytest.param([f"DPoP {TOKEN} x"], BOTH, InvalidRequest, id="two-credentials"),
        pytest.param([f"Basic x, DPoP {TOKEN}"], BOTH, InvalidRequest, id="dpop-after-other"),
        pytest.param([f"DPoP {TOKEN}", f"Bearer {TOKEN}"], BOTH, InvalidRequest, id="two-lines"),
        pytest.param(["Basic dXNlcjpwYXNz"], BOTH, MissingToken, id="other-scheme"),
    ],
)
def test_authorization_credentials(
    values: list[str], schemes: frozenset[str], outcome: Any
) -> None:
    if isinstance(outcome, tuple):
        assert authorization_credentials(values, schemes) == outcome
    else:
        with pytest.raises(outcome):
            authorization_credentials(values, schemes)


# -- challenges -----------------------------------------------------------------------------------


def _guard(static_verifier: TokenVerifier, dpop: str) -> Guard:
    options: dict[str, Any] = {} if dpop == "off" else {"dpop": dpop, "public_url": URL}
    return Guard(verifier=static_verifier, **options)


def _www(guard: Guard, exc: JWTGuardError, authorization: list[str]) -> str:
    return dict(guard.error_response(exc, authorization).headers)["www-authenticate"]


@pytest.mark.parametrize(
    ("dpop", "exc", "authorization", "expected"),
    [
        pytest.param(
            "off",
            InvalidToken(),
            [f"Bearer {TOKEN}"],
            'Bearer realm="api", error="invalid_token", '
            'error_description="The access token is invalid"',
            id="off",
        ),
        pytest.param(
            "allowed",
            MissingToken(),
            [],
            f'Bearer realm="api", DPoP realm="api", algs="{ALGS}"',
            id="allowed-missing",
        ),
        pytest.param(
            "allowed",
            InvalidToken(),
            [f"Bearer {TOKEN}"],
            'Bearer realm="api", error="invalid_token", error_description="The access token is '
            f'invalid", DPoP realm="api", algs="{ALGS}"',
            id="allowed-bearer-error",
        ),
        pytest.param(
            "allowed",
            InvalidToken(),
            [f"DPoP {TOKEN}"],
            'DPoP realm="api", error="invalid_token", error_description="The access token is '
            f'invalid", algs="{ALGS}", Bearer realm="api"',
            id="allowed-dpop-error",
        ),
        pytest.param(
            "allowed",
            InvalidDPoPProof(),
            [f"Bearer {TOKEN}"],
            'DPoP realm="api", error="invalid_dpop_proof", error_description="The DPoP proof is '
            f'invalid", algs="{ALGS}", Bearer realm="api"',
            id="proof-errors-always-in-dpop",
        ),
        pytest.param(
            "required",
            DPoPBindingMismatch(),
            [f"DPoP {TOKEN}"],
            'DPoP realm="api", error="invalid_token", error_description="Invalid DPoP key '
            f'binding", algs="{ALGS}"',
            id="required",
        ),
        pytest.param(
            "required",
            InsufficientScope(scopes=("admin", "read")),
            [f"DPoP {TOKEN}"],
            'DPoP realm="api", error="insufficient_scope", error_description="The access token '
            f'lacks a required scope", scope="admin read", algs="{ALGS}"',
            id="required-scope",
        ),
    ],
)
def test_challenges(
    static_verifier: TokenVerifier,
    dpop: str,
    exc: JWTGuardError,
    authorization: list[str],
    expected: str,
) -> None:
    assert _www(_guard(static_verifier, dpop), exc, authorization) == expected


def test_use_dpop_nonce_sends_the_fresh_nonce(static_verifier: TokenVerifier) -> None:
    guard = _guard(static_verifier, "allowed")
    answer = guard.error_response(UseDPoPNonce(nonce="fresh\r\nX: y"), [f"DPoP {TOKEN}"])
    headers = dict(answer.headers)
    assert headers["DPoP-Nonce"] == "fresh??X: y"  # never a split header
    scheme, params = parse_challenge(headers["www-authenticate"])
    assert (scheme, params["error"]) == ("DPoP", "use_dpop_nonce")


def test_the_proof_algorithms_of_the_challenge_follow_the_options(
    static_verifier: TokenVerifier,
) -> None:
    guard = Guard(
        verifier=static_verifier,
        dpop="required",
        public_url=URL,
        dpop_options={"algorithms": ["ES256", "EdDSA"]},
    )
    assert _www(guard, MissingToken(), []) == 'DPoP realm="api", algs="ES256 EdDSA"'
