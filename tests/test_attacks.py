"""The attack corpus (``tests/_hostile.py``) through the core and through both middlewares.

Every case is a hostile ``Authorization`` header (or several) sent to a verifier that trusts a
real ``LocalIssuer`` over HTTP. Each one must be refused with its exact error: the status
(400/401/403), the RFC 6750 ``WWW-Authenticate`` challenge with the fixed description, a fixed
JSON body, ``no-store``; no exception may escape, the app must not run (except the route-level
403), and nothing the attacker sent may come back in a header, the body or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import Client
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from _asgi_helpers import TestClient
from _core_helpers import Clock, settle_jwks_threads
from _edwards import CURVES, small_order_encodings
from _hostile import (
    CORPUS,
    P256_ORDER,
    Answer,
    AsgiDriver,
    Hostile,
    Kit,
    PlantedKeysIssuer,
    acore_outcome,
    asgi_app,
    assert_no_echo,
    assert_refusal,
    b64,
    call_wsgi,
    core_outcome,
    hmac_token,
    js,
    make_kit,
    make_verifier,
    pss_signature,
    rsa_pem,
    signing_input,
    small_order_forgery,
    wsgi_app,
)
from _wsgi_helpers import ensure_django
from jwt_guard import ConfigurationError, Issuer, JWTGuard, TokenVerifier
from jwt_guard.core.claims import Claims
from jwt_guard.decorators import require_scopes
from jwt_guard.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    JWTGuardError,
    MissingClaim,
    UnknownKey,
    WrongIssuer,
)
from jwt_guard.guard.middleware import render_error
from jwt_guard.sources.jwks import JWKSClient
from jwt_guard.testing import LocalIssuer
from jwt_guard.wsgi import JWTGuardWSGI


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    with make_kit() as started:
        yield started
    settle_jwks_threads()


@pytest.fixture(scope="module")
def verifier(kit: Kit) -> Iterator[TokenVerifier]:
    with make_verifier(kit) as made:
        yield made


@pytest.fixture(scope="module")
def asgi(verifier: TokenVerifier) -> Iterator[AsgiDriver]:
    driver = AsgiDriver(asgi_app(verifier))
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def wsgi(verifier: TokenVerifier) -> JWTGuardWSGI:
    return wsgi_app(verifier)


def _log_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    """Log lines may describe the attack but never carry raw control bytes from it."""
    for record in caplog.records:
        message = record.getMessage()
        assert not any(ch in message for ch in "\r\n\x00\x0b\x1b\x7f"), message


# -- the corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", CORPUS)
def test_core(
    hostile: Hostile, kit: Kit, verifier: TokenVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    """``bearer_token`` + ``verify``/``averify`` (+ the route's scope check) raise exactly the
    expected ``JWTGuardError``, whose rendered answer echoes nothing."""
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    lines = hostile.lines(kit)
    sync = core_outcome(verifier, lines, hostile.path)
    async_ = asyncio.run(acore_outcome(verifier, lines, hostile.path))
    for outcome in (sync, async_):
        assert type(outcome) is hostile.refusal, getattr(outcome, "detail", outcome)
        assert (outcome.status, outcome.error) == (hostile.status, hostile.error)
        rendered = render_error(outcome)
        answer = Answer(rendered.status, rendered.headers, rendered.body, False)
        assert_no_echo(answer, lines)
    _log_is_clean(caplog)


@pytest.mark.parametrize("hostile", CORPUS)
def test_asgi(
    hostile: Hostile, kit: Kit, asgi: AsgiDriver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    lines = hostile.lines(kit)
    assert_refusal(asgi(lines, hostile.path), hostile.refusal, lines)
    _log_is_clean(caplog)


@pytest.mark.parametrize("hostile", CORPUS)
def test_wsgi(
    hostile: Hostile, kit: Kit, wsgi: JWTGuardWSGI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    lines = hostile.lines(kit)
    assert_refusal(call_wsgi(wsgi, lines, hostile.path), hostile.refusal, lines)
    _log_is_clean(caplog)


def test_the_corpus_covers_every_status_and_is_named_uniquely() -> None:
    ids = [param.id for param in CORPUS]
    assert len(ids) == len(set(ids))
    assert {param.values[0].status for param in CORPUS} == {400, 401, 403}
    assert len(CORPUS) >= 200


# -- controls: the same harness lets good requests through -------------------------------------


@pytest.mark.parametrize(
    ("header", "path", "claims"),
    [
        pytest.param(b"Bearer ", "/me", {}, id="plain"),
        pytest.param(b"bearer ", "/me", {}, id="lower-case-scheme"),
        pytest.param(b"BEARER    ", "/me", {}, id="upper-case-extra-spaces"),
        pytest.param(b"Bearer ", "/admin", {"scope": "read admin"}, id="admin-scope"),
        pytest.param(b"Bearer ", "/admin", {"scp": ["admin"]}, id="admin-scp-list"),
    ],
)
def test_controls_a_good_token_passes_everywhere(
    header: bytes,
    path: str,
    claims: dict[str, Any],
    kit: Kit,
    verifier: TokenVerifier,
    asgi: AsgiDriver,
    wsgi: JWTGuardWSGI,
) -> None:
    token = kit.valid(sub="alice", **claims)
    lines = [header + token.encode()]
    assert isinstance(core_outcome(verifier, lines, path), Claims)
    for answer in (asgi(lines, path), call_wsgi(wsgi, lines, path)):
        assert answer.status == 200, answer.body
        assert answer.reached_app


# -- what the corpus alone does not show ---------------------------------------------------------


def test_keys_named_by_a_token_are_never_fetched(kit: Kit) -> None:
    """jku/x5u/jwk/x5c and a foreign ``iss`` point at the attacker's live server: no request."""
    embedded = [p for p in CORPUS if p.id.startswith(("jku-", "x5u-", "jwk-", "x5c-", "iss-of"))]
    assert len(embedded) >= 9
    kit.attacker.reset_counts()
    with make_verifier(kit) as fresh:
        for param in embedded:
            hostile: Hostile = param.values[0]
            assert type(core_outcome(fresh, hostile.lines(kit))) is hostile.refusal
        settle_jwks_threads()
    assert kit.attacker.request_count() == 0


def test_alg_swaps_on_an_unpinned_static_key(kit: Kit) -> None:
    """A JWK without ``alg``: the key's family still decides; HS* never fits an RSA key."""
    jwk = kit.key("RS256").public_jwk()
    del jwk["alg"]
    trusted = {"keys": [jwk]}
    for algorithms in (None, ["HS256", "RS256", "PS256"]):
        verifier = TokenVerifier(
            issuer=kit.issuer.issuer,
            audience=kit.issuer.audience,
            jwks=trusted,
            algorithms=algorithms,
        )
        kid = jwk["kid"]
        for secret in (rsa_pem(kit), rsa_pem(kit, newline=False), js(jwk)):
            forged = hmac_token({"alg": "HS256", "kid": kid}, kit.claims(), secret)
            with pytest.raises(AlgorithmNotAllowed):
                verifier.verify(forged)
        # The real key signing PS256 is the key holder's choice: accepted on an unpinned key.
        header = {"alg": "PS256", "kid": kid}
        msg = signing_input(header, kit.claims())
        assert verifier.verify(f"{msg.decode()}.{b64(pss_signature(kit.key('RS256'), msg))}")
        # But a PKCS#1 signature relabelled PS256, or a PSS one relabelled RS256, is not.
        rs = kit.sign({"alg": "RS256", "kid": kid}, kit.claims())
        relabelled = b64(js(header)) + rs[rs.index(".") :]
        with pytest.raises(BadSignature):
            verifier.verify(relabelled)
        rs_header = {"alg": "RS256", "kid": kid}
        msg = signing_input(rs_header, kit.claims())
        with pytest.raises(BadSignature):
            verifier.verify(f"{msg.decode()}.{b64(pss_signature(kit.key('RS256'), msg))}")


# -- keys a key source should never have published ----------------------------------------------


def _small_order_jwks() -> list[dict[str, Any]]:
    return [
        {"kty": "OKP", "crv": crv, "kid": f"small-{crv}-{i}", "x": b64(raw), "use": "sig"}
        for crv, curve in CURVES.items()
        for i, raw in enumerate(small_order_encodings(curve))
    ]


def test_small_order_eddsa_keys_cannot_mint_tokens(caplog: pytest.LogCaptureFixture) -> None:
    """Every small-order Ed25519/Ed448 point, in every encoding, published with a kid: the
    forgery ``R = x, S = 0`` that such a key accepts is refused as an unknown key (the keys are
    skipped when the set is built), the provider's real keys keep serving, and one log line
    per fetch says so."""
    caplog.set_level(logging.INFO, logger="jwt_guard.keys")  # the summaries asserted below
    planted = _small_order_jwks()
    assert len(planted) == 14 + len(small_order_encodings(CURVES["Ed448"]))
    raw_accepted: list[tuple[str, str]] = []
    with (
        PlantedKeysIssuer(planted, algorithms=("EdDSA", "Ed448")) as issuer,
        requests.Session() as session,
    ):
        verifier = TokenVerifier(
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            jwks_options={"session": session},
        )
        assert verifier.verify(issuer.mint(alg="EdDSA")).subject
        assert verifier.verify(issuer.mint(alg="Ed448")).subject
        now = int(time.time())

        def claims(n: int) -> dict[str, Any]:
            return {
                "iss": issuer.issuer,
                "aud": issuer.audience,
                "sub": "admin",
                "iat": now,
                "exp": now + 300,
                "jti": f"forged-{n}",
            }

        canonical = {
            b64(curve.canonical(pt)) for curve in CURVES.values() for pt in curve.torsion_points()
        }
        for jwk in planted:
            raw = base64.urlsafe_b64decode(jwk["x"] + "==")
            tries = 64 if jwk["x"] in canonical else 1
            for alg in ("EdDSA", jwk["crv"]):
                header = {"alg": alg, "kid": jwk["kid"]}
                forged, accepted = small_order_forgery(header, claims, jwk["crv"], raw, tries)
                if accepted:
                    raw_accepted.append((jwk["x"], alg))
                with pytest.raises(UnknownKey):
                    verifier.verify(forged)
        settle_jwks_threads()
        fetches = issuer.jwks_requests
    # The attack is real where nothing checks the key: OpenSSL accepts R = S = 0 and the
    # identity as the public key (Ed25519), so the refusals above are jwt_guard's doing.
    assert (b64(b"\x01" + bytes(31)), "EdDSA") in raw_accepted
    summaries = [r for r in caplog.records if r.name == "jwt_guard.keys"]
    assert len(summaries) == fetches
    assert all(f"skipped {len(planted)} malformed or weak" in r.getMessage() for r in summaries)


def test_a_static_set_with_a_small_order_key_fails_at_construction() -> None:
    identity = {"kty": "OKP", "crv": "Ed25519", "kid": "id", "x": b64(b"\x01" + bytes(31))}
    with pytest.raises(ConfigurationError, match="small order"):
        TokenVerifier(issuer="https://idp.example", audience="api", jwks={"keys": [identity]})


def test_implausible_rsa_keys_from_a_key_source_are_skipped(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    """Even modulus, even or oversized exponent, oversized modulus: each costs verify time or
    cannot be an RSA key. Skipped at the build; tokens naming them are unknown-key refusals."""
    caplog.set_level(logging.INFO, logger="jwt_guard")
    good = kit.key("RS256").public_jwk()
    n = int.from_bytes(base64.urlsafe_b64decode(good["n"] + "=="), "big")

    def rsa(kid: str, n: int, e: int) -> dict[str, Any]:
        size = (n.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "kid": kid,
            "n": b64(n.to_bytes(size, "big")),
            "e": b64(e.to_bytes((e.bit_length() + 7) // 8, "big")),
        }

    planted = [
        rsa("even-modulus", n + 1, 65537),
        rsa("even-exponent", n, 65538),
        rsa("exponent-near-modulus", n, n - 2),
        rsa("exponent-65-bits", n, 2**64 + 1),
        rsa("modulus-16384-bits", (n << (16384 - n.bit_length())) | 1, 65537),
    ]
    with (
        PlantedKeysIssuer(planted, algorithms=("RS256",)) as issuer,
        requests.Session() as session,
    ):
        verifier = TokenVerifier(
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            jwks_options={"session": session},
        )
        assert verifier.verify(issuer.mint()).subject
        for jwk in planted:
            header = {"alg": "RS256", "kid": jwk["kid"]}
            forged = issuer.sign_raw(header, {"iss": issuer.issuer, "aud": issuer.audience})
            with pytest.raises(UnknownKey, match="RSA"):
                verifier.verify(forged)
        settle_jwks_threads()
    [summary, *_] = [r for r in caplog.records if r.name == "jwt_guard.keys"]
    assert summary.levelno == logging.WARNING
    assert "skipped 5 malformed or weak" in summary.getMessage()


def test_a_trusted_issuer_cannot_mint_for_another(kit: Kit) -> None:
    """Two trusted issuers: ``iss`` picks the key set, so B's key never verifies A's tokens."""
    with requests.Session() as session:
        verifier = TokenVerifier(
            issuers=[
                Issuer(kit.issuer.issuer, kit.issuer.audience, jwks_url=kit.issuer.jwks_url),
                Issuer(kit.attacker.issuer, kit.issuer.audience, jwks_url=kit.attacker.jwks_url),
            ],
            jwks_options={"session": session},
        )
        own = kit.attacker.mint(audience=kit.issuer.audience)
        assert verifier.verify(own).issuer == kit.attacker.issuer
        as_a = kit.attacker.mint(
            alg="PS256", issuer=kit.issuer.issuer, audience=kit.issuer.audience
        )
        with pytest.raises(UnknownKey):  # B's kid, unknown to A
            verifier.verify(as_a)
        with pytest.raises(BadSignature):  # B's key under A's kid
            verifier.verify(
                kit.attacker.mint(
                    issuer=kit.issuer.issuer, audience=kit.issuer.audience, kid="rs256-1"
                )
            )
        with pytest.raises(WrongIssuer):
            verifier.verify(kit.attacker.mint(issuer="https://evil.example"))
        settle_jwks_threads()


def test_a_flood_of_unknown_kids_fetches_once_per_cooldown(kit: Kit) -> None:
    """Random kids cannot turn requests into JWKS fetches: one refetch per cool-down window."""
    clock = Clock(now=1_800_000_000.0)
    with (
        # EdDSA: 400 tokens are minted; the key's family plays no part in an unknown-kid refusal
        LocalIssuer(algorithms=("EdDSA",), clock=clock) as issuer,
        requests.Session() as session,
    ):
        verifier = TokenVerifier(
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            clock=clock,
            monotonic=clock.monotonic,
            jwks_options={"session": session, "cooldown": 30.0},
        )
        asgi = AsgiDriver(asgi_app(verifier))
        wsgi = wsgi_app(verifier)
        try:
            good = [f"Bearer {issuer.mint()}".encode()]
            assert asgi(good).status == 200
            assert issuer.jwks_requests == 1

            def flood(tag: str) -> None:
                for n in range(100):
                    lines = [f"Bearer {issuer.mint(kid=f'{tag}-{n}')}".encode()]
                    answer = asgi(lines) if n % 2 else call_wsgi(wsgi, lines)
                    assert answer.status == 401

            flood("a")
            settle_jwks_threads()
            # The start-up fetch starts no cool-down: the first unknown kid refetches once,
            # and that refetch starts it.
            assert issuer.jwks_requests == 2
            clock.advance(31)
            flood("a2")
            settle_jwks_threads()
            assert issuer.jwks_requests == 3  # the first unknown kid after it: one refetch
            clock.advance(10)
            flood("b")
            settle_jwks_threads()
            assert issuer.jwks_requests == 3  # inside the cool-down: none
            clock.advance(25)
            flood("c")
            settle_jwks_threads()
            assert issuer.jwks_requests == 4  # the next window: one more
            assert asgi(good).status == 200
        finally:
            asgi.close()
            settle_jwks_threads()


def test_refusals_are_uniform_whatever_the_attack(kit: Kit, asgi: AsgiDriver) -> None:
    """Refusals of one class are byte-identical, so the answer reveals nothing of the input."""
    seen: dict[type[JWTGuardError], set[tuple[Any, ...]]] = {}
    for param in CORPUS:
        hostile: Hostile = param.values[0]
        answer = asgi(hostile.lines(kit), hostile.path)
        shape = (answer.status, tuple(answer.headers), answer.body)
        seen.setdefault(hostile.refusal, set()).add(shape)
    assert all(len(shapes) == 1 for shapes in seen.values()), seen


def test_security_defaults_hold_without_any_option(kit: Kit) -> None:
    """What a minimal configuration already enforces (RFC 8725 3.1, 3.2, 3.9)."""
    with pytest.raises(ConfigurationError, match="audience"):
        TokenVerifier(issuer=kit.issuer.issuer, jwks_url=kit.issuer.jwks_url)
    for algorithms in (["none"], ["NONE"], ["RS256", "none"]):
        with pytest.raises(ConfigurationError, match="none"):
            TokenVerifier(
                issuer=kit.issuer.issuer,
                audience=kit.issuer.audience,
                jwks_url=kit.issuer.jwks_url,
                algorithms=algorithms,
            )
    with make_verifier(kit) as verifier:
        assert verifier.max_token_size == 8192
        (source,) = verifier.key_sources().values()
        assert isinstance(source, JWKSClient)
        assert source.allow_oct is False  # no symmetric key from a remote JWKS
        assert source.allow_http is False  # https only (plain http on loopback alone)
        with pytest.raises(MissingClaim):  # exp is required
            verifier.verify(kit.valid(exp=None))


def test_ecdsa_signatures_are_malleable_so_the_token_string_is_not_an_identity(
    kit: Kit, verifier: TokenVerifier
) -> None:
    """(r, n - s) is as valid as (r, s) (OpenSSL accepts high-S): a second, different token
    string carries the same claims. Use ``jti`` to recognise a token, never its bytes."""
    token = kit.sign(kit.header("ES256"), kit.claims(jti="jti-malleable"), kit.key("ES256"))
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    s = int.from_bytes(raw[32:], "big")
    twin = f"{head}.{payload}.{b64(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"
    assert twin != token
    assert verifier.verify(twin).token_id == verifier.verify(token).token_id == "jti-malleable"


# -- a forged CORS preflight ---------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}


def _preflight_starlette(verifier: TokenVerifier, ran: list[str]) -> int:
    @require_scopes("admin")
    async def delete_all(request: Request) -> JSONResponse:
        ran.append(request.method)
        return JSONResponse({"deleted": True})

    app = Starlette(routes=[Route("/admin", delete_all, methods=["GET", "OPTIONS", "DELETE"])])
    with TestClient(JWTGuard(app, verifier=verifier, allow_preflight=True)) as client:
        return client.options("/admin", headers=PREFLIGHT).status_code


def _preflight_flask(verifier: TokenVerifier, ran: list[str]) -> int:
    app = Flask(__name__)
    app.wsgi_app = JWTGuardWSGI(  # type: ignore[method-assign]
        app.wsgi_app, verifier=verifier, allow_preflight=True
    )

    @app.route("/admin", methods=["GET", "OPTIONS", "DELETE"])
    @require_scopes("admin")
    def delete_all() -> dict[str, bool]:
        ran.append("OPTIONS")
        return {"deleted": True}

    return app.test_client().options("/admin", headers=PREFLIGHT).status_code


def _preflight_werkzeug(verifier: TokenVerifier, ran: list[str]) -> int:
    @require_scopes("admin")
    def delete_all(request: WerkzeugRequest) -> WerkzeugResponse:
        ran.append(request.method)
        return WerkzeugResponse("deleted")

    @WerkzeugRequest.application  # type: ignore[arg-type]
    def app(request: WerkzeugRequest) -> WerkzeugResponse:
        return delete_all(request)

    guarded = JWTGuardWSGI(app, verifier=verifier, allow_preflight=True)
    return Client(guarded).options("/admin", headers=PREFLIGHT).status_code


def _preflight_django(verifier: TokenVerifier, ran: list[str]) -> int:
    ensure_django()
    from django.http import HttpRequest, JsonResponse
    from django.test import Client as DjangoClient
    from django.test import override_settings
    from django.urls import path

    @require_scopes("admin")
    def delete_all(request: HttpRequest) -> JsonResponse:  # a function view takes any method
        ran.append(request.method or "")
        return JsonResponse({"deleted": True})

    urls = type("urls", (), {"urlpatterns": [path("admin", delete_all)]})
    with override_settings(
        ROOT_URLCONF=urls,
        MIDDLEWARE=["jwt_guard.django.JWTGuardMiddleware"],
        JWT_GUARD={"verifier": verifier, "allow_preflight": True},
    ):
        return DjangoClient().options("/admin", headers=PREFLIGHT).status_code


@pytest.mark.parametrize(
    "framework",
    [
        pytest.param(_preflight_starlette, id="starlette"),
        pytest.param(_preflight_flask, id="flask"),
        pytest.param(_preflight_werkzeug, id="werkzeug"),
        pytest.param(_preflight_django, id="django"),
    ],
)
def test_a_forged_preflight_never_runs_a_decorated_view(
    framework: Any, verifier: TokenVerifier
) -> None:
    """Anyone can send OPTIONS with ``Origin`` and ``Access-Control-Request-Method`` and no
    token: with allow_preflight=True the guard lets it pass for a CORS layer to answer, but a
    ``require_scopes`` view must not run for it (it did: an unauthenticated DELETE-everything on
    a Django function view). By default the guard refuses it outright."""
    ran: list[str] = []
    status = framework(verifier, ran)
    assert ran == []
    assert status == 204


def test_a_forged_preflight_is_refused_by_default(verifier: TokenVerifier) -> None:
    async def anything(request: Request) -> JSONResponse:
        return JSONResponse({"ran": True})

    app = Starlette(routes=[Route("/x", anything, methods=["OPTIONS"])])
    with TestClient(JWTGuard(app, verifier=verifier)) as client:
        assert client.options("/x", headers=PREFLIGHT).status_code == 401
    wsgi = JWTGuardWSGI(lambda environ, start_response: [b""], verifier=verifier)
    assert Client(wsgi).options("/x", headers=PREFLIGHT).status_code == 401
