"""DPoP (RFC 9449) through every adapter: Starlette, FastAPI, Werkzeug, Flask and Django.

A DPoP-bound token from the local issuer is accepted with proofs from our helper and from an
independent implementation (PyJWT, with the RFC 7638 thumbprint computed here by hand); every
request needs a fresh proof (the token cache never holds one); the attacks of issue 12 at the
adapter level are refused with the RFC 9449 answer: ``htu`` through ``Host``,
``X-Forwarded-Host`` and absolute-form request targets, two ``DPoP`` headers, a replay on the
same worker and on another one sharing the store, a bound token sent as ``Bearer``; and the
challenges name the schemes the guard accepts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _binding_apps import FRAMEWORKS, PUBLIC, Driver, Facts, driver
from _common import parse_challenge, verifier_for
from jwt_guard import GuardObserver, TokenVerifier
from jwt_guard.errors import StoreUnavailable
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing.dpop import DPoPClient, DPoPKey

ME = PUBLIC + "/me"
ALGS = "ES256 EdDSA Ed25519 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 ES256K Ed448"


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(issuer: LocalIssuer) -> DPoPClient:
    return DPoPClient(issuer=issuer, public_url=PUBLIC)


def app(framework: str, verifier: TokenVerifier, **options: Any) -> Driver:
    options.setdefault("dpop", "allowed")
    options.setdefault("public_url", PUBLIC)
    return driver(framework, verifier, **options)


def challenges(reply: Any) -> str:
    return str({k.lower(): v for k, v in reply.headers.items()}["www-authenticate"])


def header(reply: Any, name: str) -> str | None:
    return {k.lower(): v for k, v in reply.headers.items()}.get(name.lower())


# -- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["allowed", "required"])
def test_a_bound_token_with_a_fresh_proof_is_accepted(
    framework: str, verifier: TokenVerifier, client: DPoPClient, mode: str
) -> None:
    guarded = app(framework, verifier, dpop=mode)
    token = client.mint()
    for _ in range(3):  # each request its own proof; the token itself comes from the cache
        reply = guarded.send("/me", client.headers("GET", "/me", token))
        assert reply.status == 200, reply.body
        assert reply.json() == {"sub": "user-1"}


def _manual_jkt(jwk: dict[str, Any]) -> str:
    """RFC 7638 by hand: the required members, sorted, no whitespace, SHA-256, base64url."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _pyjwt_proof(private_key: Any, alg: str, method: str, url: str, token: str) -> str:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = pyjwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = pyjwt.algorithms.OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    digest = hashlib.sha256(token.encode("ascii")).digest()
    payload = {
        "jti": base64.urlsafe_b64encode(hashlib.sha256(url.encode() + token.encode()).digest())
        .decode()
        .rstrip("="),
        "htm": method,
        "htu": url,
        "iat": int(__import__("time").time()),
        "ath": base64.urlsafe_b64encode(digest).decode().rstrip("="),
    }
    return pyjwt.encode(
        payload, private_key, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": jwk}
    )


@pytest.mark.parametrize(
    ("alg", "make_key"),
    [
        pytest.param("ES256", lambda: ec.generate_private_key(ec.SECP256R1()), id="ES256"),
        pytest.param("EdDSA", ed25519.Ed25519PrivateKey.generate, id="EdDSA"),
    ],
)
def test_proofs_made_by_pyjwt_are_accepted(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer, alg: str, make_key: Any
) -> None:
    guarded = app(framework, verifier)
    private_key = make_key()
    probe = pyjwt.get_unverified_header(_pyjwt_proof(private_key, alg, "GET", ME, "probe"))
    token = issuer.mint(claims={"cnf": {"jkt": _manual_jkt(probe["jwk"])}})
    proof = _pyjwt_proof(private_key, alg, "GET", ME, token)
    reply = guarded.send("/me", {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert reply.status == 200, reply.body
    # and PyJWT's proof for another URL is refused
    other = _pyjwt_proof(private_key, alg, "GET", PUBLIC + "/admin", token)
    reply = guarded.send("/me", {"Authorization": f"DPoP {token}", "DPoP": other})
    assert reply.status == 401
    assert parse_challenge(challenges(reply))[1]["error"] == "invalid_dpop_proof"


def test_a_plain_bearer_token_still_works_when_dpop_is_allowed(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    reply = app(framework, verifier).send("/me", {"Authorization": f"Bearer {issuer.mint()}"})
    assert reply.status == 200


def test_the_scheme_name_is_case_insensitive(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    token = client.mint()
    headers = {"Authorization": f"dpop {token}", "DPoP": client.proof("GET", "/me", token)}
    assert app(framework, verifier).send("/me", headers).status == 200


def test_a_route_scope_check_answers_in_the_dpop_challenge(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    token = client.mint(scopes=["read"])
    reply = app(framework, verifier).send("/admin", client.headers("GET", "/admin", token))
    assert reply.status == 403
    scheme, params = parse_challenge(challenges(reply))
    assert scheme == "DPoP"
    assert (params["error"], params["scope"], params["algs"]) == (
        "insufficient_scope",
        "admin",
        ALGS,
    )
    token = client.mint(scopes=["admin"])
    assert (
        app(framework, verifier).send("/admin", client.headers("GET", "/admin", token)).status
        == 200
    )


# -- refused ------------------------------------------------------------------------------------


def _refusal(reply: Any) -> tuple[int, str, dict[str, str]]:
    scheme, params = parse_challenge(challenges(reply))
    return reply.status, scheme, params


def test_a_proof_is_never_cached_replay_is_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = app(framework, verifier)
    token = client.mint()
    headers = client.headers("GET", "/me", token)
    assert guarded.send("/me", headers).status == 200
    status, scheme, params = _refusal(guarded.send("/me", headers))
    assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_dpop_proof")
    assert params["error_description"] == "The DPoP proof was already used"
    assert params["algs"] == ALGS
    assert guarded.send("/me", client.headers("GET", "/me", token)).status == 200


def test_a_replay_to_another_worker_sharing_the_store_is_refused(
    framework: str, issuer: LocalIssuer, client: DPoPClient
) -> None:
    """Two workers (their own verifier, cache and guard) and one replay store: a proof one of
    them accepted is a replay to the other (RFC 9449 11.1)."""
    store = MemoryReplayStore()
    with verifier_for(issuer) as first, verifier_for(issuer) as second:
        worker_a = app(framework, first, dpop_options={"replay_store": store})
        worker_b = app(framework, second, dpop_options={"replay_store": store})
        token = client.mint()
        headers = client.headers("GET", "/me", token)
        assert worker_a.send("/me", headers).status == 200
        reply = worker_b.send("/me", headers)
        assert reply.status == 401
        assert parse_challenge(challenges(reply))[1]["error"] == "invalid_dpop_proof"
        assert worker_b.send("/me", client.headers("GET", "/me", token)).status == 200


def test_workers_on_one_configured_store_share_its_replay_store(
    framework: str, issuer: LocalIssuer, client: DPoPClient
) -> None:
    """A fleet configures one store (``store=``); the guard gives its replay store to the
    proof checks by itself, so a proof one worker accepted is a replay to the other."""
    from jwt_guard.stores.fleet import Stores

    shared = Stores.memory()
    with verifier_for(issuer, store=shared) as first, verifier_for(issuer, store=shared) as second:
        worker_a, worker_b = app(framework, first), app(framework, second)
        token = client.mint()
        headers = client.headers("GET", "/me", token)
        assert worker_a.send("/me", headers).status == 200
        assert worker_b.send("/me", headers).status == 401
        assert worker_b.send("/me", client.headers("GET", "/me", token)).status == 200


def test_a_bound_token_sent_as_bearer_is_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    reply = app(framework, verifier).send("/me", {"Authorization": f"Bearer {client.mint()}"})
    assert reply.status == 401
    value = challenges(reply)
    assert value.startswith('Bearer realm="api", error="invalid_token"')
    assert 'error_description="Invalid DPoP key binding"' in value
    assert value.endswith(f'DPoP realm="api", algs="{ALGS}"')  # both schemes are offered


def test_a_bound_token_sent_with_its_proof_but_as_bearer_is_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    token = client.mint()
    headers = {"Authorization": f"Bearer {token}", "DPoP": client.proof("GET", "/me", token)}
    assert app(framework, verifier).send("/me", headers).status == 401


def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer, client: DPoPClient
) -> None:
    token = issuer.mint()
    reply = app(framework, verifier).send("/me", client.headers("GET", "/me", token))
    status, scheme, params = _refusal(reply)
    assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_token")


def test_required_accepts_no_bearer_token_at_all(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    guarded = app(framework, verifier, dpop="required")
    for token in (issuer.mint(), issuer.mint()):  # the second is in the token cache already
        reply = guarded.send("/me", {"Authorization": f"Bearer {token}"})
        assert reply.status == 401
        assert challenges(reply) == f'DPoP realm="api", algs="{ALGS}"'
    reply = guarded.send("/me")
    assert (reply.status, challenges(reply)) == (401, f'DPoP realm="api", algs="{ALGS}"')


def test_with_dpop_off_the_scheme_is_unknown_and_bound_tokens_are_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = driver(framework, verifier)  # the default: dpop="off"
    token = client.mint()
    reply = guarded.send("/me", client.headers("GET", "/me", token))
    assert (reply.status, challenges(reply)) == (401, 'Bearer realm="api"')  # another scheme
    reply = guarded.send("/me", {"Authorization": f"Bearer {token}"})
    status, scheme, params = _refusal(reply)
    assert (status, scheme, params["error"]) == (401, "Bearer", "invalid_token")
    assert "algs=" not in challenges(reply)  # no DPoP challenge: the scheme is not offered


def test_no_token_gets_both_challenges_when_both_schemes_are_accepted(
    framework: str, verifier: TokenVerifier
) -> None:
    reply = app(framework, verifier).send("/me")
    assert reply.status == 401
    assert challenges(reply) == f'Bearer realm="api", DPoP realm="api", algs="{ALGS}"'


def test_two_dpop_headers_are_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    token = client.mint()
    proof = client.proof("GET", "/me", token)
    for second in (proof, client.proof("GET", "/me", token)):
        headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof), ("DPoP", second)]
        status, scheme, params = _refusal(app(framework, verifier).send("/me", headers))
        assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_dpop_proof")


def test_a_missing_proof_is_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    reply = app(framework, verifier).send("/me", {"Authorization": f"DPoP {client.mint()}"})
    status, scheme, params = _refusal(reply)
    assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_dpop_proof")


@pytest.mark.parametrize(
    ("method", "url", "why"),
    [
        pytest.param("POST", ME, "another method", id="htm-post"),
        pytest.param("get", ME, "methods are case-sensitive", id="htm-case"),
        pytest.param("GET", PUBLIC + "/admin", "another path", id="htu-path"),
        pytest.param("GET", "https://evil.example/me", "another host", id="htu-host"),
        pytest.param("GET", "http://api.example.com/me", "another scheme", id="htu-scheme"),
        pytest.param("GET", "https://api.example.com:8443/me", "another port", id="htu-port"),
        pytest.param("GET", "https://api.example.com./me", "a trailing-dot host", id="htu-dot"),
    ],
)
def test_a_proof_for_another_request_is_refused(
    framework: str, verifier: TokenVerifier, client: DPoPClient, method: str, url: str, why: str
) -> None:
    token = client.mint()
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": client.key.proof(method, url, access_token=token),
    }
    status, scheme, params = _refusal(app(framework, verifier).send("/me", headers))
    assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_dpop_proof"), why


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("HTTPS://API.EXAMPLE.COM/me", id="case"),
        pytest.param("https://api.example.com:443/me", id="default-port"),
        pytest.param("https://api.example.com/%6De", id="encoded-unreserved"),
        pytest.param("https://api.example.com/me?page=2#top", id="query-fragment"),
    ],
)
def test_a_proof_for_the_same_url_written_otherwise_is_accepted(
    framework: str, verifier: TokenVerifier, client: DPoPClient, url: str
) -> None:
    token = client.mint()
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": client.key.proof("GET", url, access_token=token),
    }
    assert app(framework, verifier).send("/me", headers).status == 200


def test_ath_for_another_token_and_a_token_bound_to_another_key(
    framework: str, verifier: TokenVerifier, client: DPoPClient, issuer: LocalIssuer
) -> None:
    guarded = app(framework, verifier)
    token, other_token = client.mint(), client.mint()
    proof = client.proof("GET", "/me", other_token)  # ath of another token
    status, _, params = _refusal(
        guarded.send("/me", {"Authorization": f"DPoP {token}", "DPoP": proof})
    )
    assert (status, params["error"]) == (401, "invalid_dpop_proof")
    stolen = issuer.mint(dpop_key=DPoPKey.generate("ES256"))  # bound to the victim's key
    reply = guarded.send("/me", client.headers("GET", "/me", stolen))  # the thief's own proof
    status, scheme, params = _refusal(reply)
    assert (status, scheme, params["error"]) == (401, "DPoP", "invalid_token")
    assert params["error_description"] == "Invalid DPoP key binding"


def test_a_proof_used_as_the_token_and_a_token_used_as_the_proof(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = app(framework, verifier)
    token = client.mint()
    proof = client.proof("GET", "/me", token)
    assert guarded.send("/me", {"Authorization": f"DPoP {proof}", "DPoP": proof}).status == 401
    assert guarded.send("/me", {"Authorization": f"DPoP {token}", "DPoP": token}).status == 401


# -- the public URL: configuration or a trusted proxy, never Host --------------------------------


def test_htu_never_comes_from_the_host_header(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = app(framework, verifier)
    token = client.mint()
    evil = {
        "Authorization": f"DPoP {token}",
        "Host": "evil.example",
        "DPoP": client.key.proof("GET", "https://evil.example/me", access_token=token),
    }
    assert guarded.send("/me", evil).status == 401
    honest = {**client.headers("GET", "/me", token), "Host": "evil.example"}
    assert guarded.send("/me", honest).status == 200


def test_forwarded_host_from_a_client_is_ignored(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = app(framework, verifier, trusted_proxies=["10.0.0.7"])
    token = client.mint()
    forged = {
        "Authorization": f"DPoP {token}",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "DPoP": client.key.proof("GET", "https://evil.example/me", access_token=token),
    }
    for peer in ("198.51.100.7", "10.0.0.7"):  # public_url wins even for a trusted proxy
        assert guarded.send("/me", forged, facts=Facts(client=peer)).status == 401


def test_without_public_url_a_trusted_proxy_says_the_url(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    guarded = app(framework, verifier, public_url=None, trusted_proxies=["10.0.0.0/8"])
    token = client.mint()

    def request(proof_url: str, forwarded: dict[str, str], peer: str) -> int:
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": client.key.proof("GET", proof_url, access_token=token),
            **forwarded,
        }
        return guarded.send("/me", headers, facts=Facts(client=peer)).status

    x_forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}
    assert request(ME, x_forwarded, "10.0.0.7") == 200
    rfc7239 = {"Forwarded": 'for=203.0.113.9;proto=https;host="api.example.com"'}
    assert request(ME, rfc7239, "10.0.0.7") == 200
    # the element the proxy appended counts, not one the client sent before it
    spoofed = {"Forwarded": "proto=https;host=evil.example, proto=https;host=api.example.com"}
    assert request("https://evil.example/me", spoofed, "10.0.0.7") == 401
    assert request(ME, spoofed, "10.0.0.7") == 200
    # straight from a client: its forwarded headers are not believed, there is no URL at all
    assert request(ME, x_forwarded, "198.51.100.7") == 401
    assert request(ME, {}, "10.0.0.7") == 401  # a proxy that says nothing


def test_an_absolute_form_request_target_never_moves_the_htu(
    framework: str, verifier: TokenVerifier, client: DPoPClient
) -> None:
    """``GET https://evil.example/me HTTP/1.1``: the target is not a path; the host of the URL
    is the configured one, whatever the request line says (400, before any proof check)."""
    guarded = app(framework, verifier)
    token = client.mint()
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": client.key.proof("GET", "https://evil.example/me", access_token=token),
    }
    reply = guarded.send("/me", headers, facts=Facts(raw_path=b"https://evil.example/me"))
    status, scheme, params = _refusal(reply)
    assert (status, scheme, params["error"]) == (400, "DPoP", "invalid_request")


# -- nonces, the cache, logs, the observer, failures ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_server_nonces(framework: str, issuer: LocalIssuer) -> None:
    clock = Clock()
    with verifier_for(issuer) as verifier:
        guarded = app(
            framework,
            verifier,
            dpop_nonce="s" * 32,
            dpop_options={"clock": clock},
        )
        client = DPoPClient(DPoPKey.generate("ES256", clock=clock), issuer=issuer)
        token = client.mint()
        reply = guarded.send("/me", client.headers("GET", "/me", token))
        status, scheme, params = _refusal(reply)
        assert (status, scheme, params["error"]) == (401, "DPoP", "use_dpop_nonce")
        assert params["error_description"] == "Resource server requires nonce in DPoP proof"
        nonce = header(reply, "DPoP-Nonce")
        assert nonce
        assert client.remember(reply.headers)
        assert guarded.send("/me", client.headers("GET", "/me", token)).status == 200
        clock.now += 120  # the next window: the nonce still counts
        assert guarded.send("/me", client.headers("GET", "/me", token)).status == 200
        clock.now += 120  # two windows on: stale, a fresh one comes back
        reply = guarded.send("/me", client.headers("GET", "/me", token))
        assert _refusal(reply)[2]["error"] == "use_dpop_nonce"
        assert header(reply, "DPoP-Nonce") not in (None, nonce)
        forged = client.headers("GET", "/me", token, nonce="forged-nonce-value")
        assert _refusal(guarded.send("/me", forged))[2]["error"] == "use_dpop_nonce"


class Events(GuardObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def verified(self, issuer: str, cached: bool) -> None:
        self.seen.append(("verified", cached))

    def rejected(self, code: str, issuer: str | None) -> None:
        self.seen.append(("rejected", code))


def test_a_cached_token_still_needs_a_proof_and_refusals_are_logged_like_tokens(
    framework: str, issuer: LocalIssuer, client: DPoPClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jwt_guard")
    events = Events()
    with verifier_for(issuer, observer=events) as verifier:
        guarded = app(framework, verifier)
        token = client.mint()
        headers = client.headers("GET", "/me", token)
        assert guarded.send("/me", headers).status == 200
        assert guarded.send("/me", headers).status == 401  # cached token, replayed proof
        assert guarded.send("/me", client.headers("GET", "/me", token)).status == 200
    assert events.seen == [
        ("verified", False),
        ("verified", True),
        ("rejected", "dpop_replayed"),
        ("verified", True),
    ]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert len(lines) == 1
    assert "code=dpop_replayed status=401" in lines[0]
    assert f"iss={issuer.issuer}" in lines[0]
    assert "token=sha256:" in lines[0]
    proof = headers["DPoP"]
    for piece in (token, proof, *proof.split(".")):
        assert piece not in caplog.text  # neither the token nor any part of the proof


class FailingStore:
    def first_use(self, key: str, ttl: float) -> bool:
        raise ConnectionError("replay store down")

    async def afirst_use(self, key: str, ttl: float) -> bool:
        raise ConnectionError("replay store down")


class UnavailableStore(FailingStore):
    def first_use(self, key: str, ttl: float) -> bool:
        raise StoreUnavailable("redis timed out", retry_after=3)

    async def afirst_use(self, key: str, ttl: float) -> bool:
        raise StoreUnavailable("redis timed out", retry_after=3)


@pytest.mark.parametrize("store", [FailingStore(), UnavailableStore()], ids=["raises", "503"])
def test_a_replay_store_that_cannot_answer_refuses_with_503(
    framework: str, verifier: TokenVerifier, client: DPoPClient, store: Any
) -> None:
    guarded = app(framework, verifier, dpop_options={"replay_store": store})
    token = client.mint()
    reply = guarded.send("/me", client.headers("GET", "/me", token))
    assert reply.status == 503
    assert int(header(reply, "Retry-After") or 0) >= 1
    assert header(reply, "WWW-Authenticate") is None
    assert b"redis" not in reply.body
    assert b"down" not in reply.body


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("a.b.c", id="junk-jws"),
        pytest.param("e30.e30.", id="empty-objects"),
        pytest.param("x" * 9000, id="huge"),
        pytest.param("\u00e9\u00e9.\u00e9.\u00e9", id="latin-1"),
        pytest.param("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30.", id="alg-none"),
    ],
)
def test_a_garbage_proof_is_a_401_never_a_500(
    framework: str, verifier: TokenVerifier, client: DPoPClient, value: str
) -> None:
    token = client.mint()
    reply = app(framework, verifier).send("/me", {"Authorization": f"DPoP {token}", "DPoP": value})
    assert reply.status == 401
    assert parse_challenge(challenges(reply))[1]["error"] == "invalid_dpop_proof"


def test_the_claims_show_the_confirmation(verifier: TokenVerifier, client: DPoPClient) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from _asgi_helpers import TestClient
    from jwt_guard import JWTGuard

    async def me(request: Any) -> JSONResponse:
        cnf = request.user.claims.confirmation
        return JSONResponse({"jkt": cnf["jkt"], "cnf": cnf.to_dict()})

    guarded = JWTGuard(
        Starlette(routes=[Route("/me", me)]), verifier=verifier, dpop="required", public_url=PUBLIC
    )
    token = client.mint()
    reply = TestClient(guarded).get("/me", headers=client.headers("GET", "/me", token))
    assert reply.json() == {"jkt": client.jkt, "cnf": {"jkt": client.jkt}}
    assert verifier.verify(client.mint(scopes=["x"])).confirmation == {"jkt": client.jkt}
    assert verifier.verify(client.issuer.mint()).confirmation is None  # type: ignore[union-attr]


# -- arbitrary bytes: never a 500, never an acceptance ----------------------------------------


@pytest.fixture(scope="module")
def fuzz_apps(verifier: TokenVerifier, issuer: LocalIssuer) -> tuple[Any, Any, DPoPClient, str]:
    from _adapter_apps import starlette_app, werkzeug_app

    client = DPoPClient(issuer=issuer)
    options = {"dpop": "allowed", "public_url": PUBLIC, "mtls": "allowed"}
    options["trusted_proxies"] = ["127.0.0.1"]
    options["mtls_header"] = "Client-Cert"
    return (
        starlette_app(verifier, **options),
        werkzeug_app(verifier, **options),
        client,
        client.mint(),
    )


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    proofs=st.lists(st.binary(max_size=300), max_size=3),
    cert=st.one_of(st.none(), st.binary(max_size=200)),
    scheme=st.sampled_from([b"DPoP", b"dpop", b"Bearer"]),
)
def test_arbitrary_proof_and_certificate_headers_never_pass_or_crash(
    fuzz_apps: tuple[Any, Any, DPoPClient, str],
    proofs: list[bytes],
    cert: bytes | None,
    scheme: bytes,
) -> None:
    import asyncio

    from werkzeug.test import Client

    from _asgi_helpers import call_raw

    asgi, wsgi, _client, token = fuzz_apps
    headers = [(b"authorization", scheme + b" " + token.encode())]
    headers += [(b"dpop", proof) for proof in proofs]
    if cert is not None:
        headers.append((b"client-cert", cert))
    result = asyncio.run(call_raw(asgi, path="/me", headers=headers))
    assert result.status in (400, 401), (result.status, result.body)
    # Straight into the environ, joined as a WSGI server joins repeated headers: werkzeug's
    # test client refuses to build CR/LF into a header, the guard must not care either way.
    environ: dict[str, str] = {"REMOTE_ADDR": "127.0.0.1"}
    for name, value in headers:
        key = "HTTP_" + name.decode().upper().replace("-", "_")
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    with Client(wsgi).get("/me", environ_overrides=environ) as reply:
        assert reply.status_code in (400, 401), reply.get_data()


def test_several_public_urls(framework: str, verifier: TokenVerifier, client: DPoPClient) -> None:
    guarded = app(
        framework, verifier, public_url=["https://api.example.com", "https://example.org/api"]
    )
    token = client.mint()
    for url, status in (
        ("https://api.example.com/me", 200),
        ("https://example.org/api/me", 200),  # a prefix the proxy strips is part of the URL
        ("https://example.org/me", 401),
        ("https://evil.example/me", 401),
    ):
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": client.key.proof("GET", url, access_token=token),
        }
        assert guarded.send("/me", headers).status == status, url
