"""The local issuer: keys, minting, the loopback JWKS/discovery server and its fault modes."""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from _common import shared_key
from jwt_guard.errors import ConfigurationError
from jwt_guard.keys.algorithms import ALGORITHMS
from jwt_guard.keys.jwk import thumbprint
from jwt_guard.testing import JWKSFault, LocalIssuer, SigningKey, generate_key
from jwt_guard.testing._faults import fault_named

MakeIssuer = Callable[..., LocalIssuer]


@pytest.fixture
def make_issuer() -> Iterator[MakeIssuer]:
    started: list[LocalIssuer] = []

    def make(**kwargs: Any) -> LocalIssuer:
        issuer = LocalIssuer(**kwargs).start()
        started.append(issuer)
        return issuer

    yield make
    for issuer in started:
        issuer.stop()


@pytest.fixture
def issuer(make_issuer: MakeIssuer) -> LocalIssuer:
    """A started issuer of one RS256 key (shared by the run: these tests are about the server)."""
    return make_issuer(keys=[shared_key("RS256")])


def _get(url: str, timeout: float = 2.0, **kwargs: Any) -> requests.Response:
    with requests.Session() as session:
        return session.get(url, timeout=timeout, **kwargs)


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _int(text: str) -> int:
    return int.from_bytes(_b64d(text), "big")


def _verify(jwk: dict[str, Any], token: str) -> None:
    """Check ``token``'s signature with ``cryptography`` alone, from the public JWK."""
    head, body, sig_b64 = token.split(".")
    msg, sig, alg = f"{head}.{body}".encode(), _b64d(sig_b64), jwk["alg"]
    if jwk["kty"] == "OKP":
        okp = ed25519.Ed25519PublicKey if jwk["crv"] == "Ed25519" else ed448.Ed448PublicKey
        okp.from_public_bytes(_b64d(jwk["x"])).verify(sig, msg)
        return
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:5]]
    if jwk["kty"] == "oct":
        assert hmac.compare_digest(hmac.digest(_b64d(jwk["k"]), msg, digest.name), sig)
    elif jwk["kty"] == "RSA":
        key = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        if alg.startswith("PS"):
            pad = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        key.verify(sig, msg, pad, digest)
    elif jwk["kty"] == "EC":
        curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}.get(
            jwk["crv"], ec.SECP256K1
        )()
        numbers = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve)
        half = len(sig) // 2
        der = encode_dss_signature(int.from_bytes(sig[:half]), int.from_bytes(sig[half:]))
        numbers.public_key().verify(der, msg, ec.ECDSA(digest))


# -- keys and tokens


@pytest.mark.parametrize("curve", [None, "Ed448"], ids=["default", "ed448"])
def test_every_algorithm_mints_a_token_that_verifies(
    make_issuer: MakeIssuer, curve: str | None
) -> None:
    algs = tuple(ALGORITHMS) if curve is None else ("EdDSA",)
    issuer = make_issuer(algorithms=algs, include_secret_keys=True)
    if curve is not None:
        issuer.rotate("EdDSA", curve=curve)
    served = {jwk["kid"]: jwk for jwk in _get(issuer.jwks_url).json()["keys"]}
    assert set(served) == {k.kid for k in issuer.keys}
    for key in issuer.keys:
        token = issuer.mint(alg=key.alg)
        assert token.count(".") == 2, key.alg
        assert json.loads(_b64d(token.split(".")[0])) == {
            "alg": key.alg,
            "typ": "JWT",
            "kid": key.kid,
        }
        _verify(served[key.kid], token)
    if curve is not None:
        assert served[issuer.key().kid]["crv"] == "Ed448"


def test_mint_claims_defaults_overrides_and_removal(make_issuer: MakeIssuer) -> None:
    issuer = make_issuer(clock=lambda: 1_000_000.5)
    payload = json.loads(_b64d(issuer.mint(scopes=["read", "write"]).split(".")[1]))
    assert payload.pop("jti")
    assert payload == {
        "iss": issuer.issuer,
        "sub": "user-1",
        "aud": "https://api.example.test",
        "iat": 1_000_000,
        "exp": 1_000_300,
        "scope": "read write",
    }
    token = issuer.mint(
        {"role": "admin", "jti": None},
        kid=None,
        subject=None,
        audience=["a", "b"],
        scopes="x y",
        expires_in=None,
        not_before=5,
        issuer="https://other.test",
        headers={"typ": None, "cty": "x"},
    )
    header, payload = (json.loads(_b64d(part)) for part in token.split(".")[:2])
    assert header == {"alg": "RS256", "cty": "x"}
    assert payload == {
        "iss": "https://other.test",
        "aud": ["a", "b"],
        "iat": 1_000_000,
        "nbf": 5,
        "scope": "x y",
        "role": "admin",
    }
    with pytest.raises(ConfigurationError, match="headers="):
        issuer.mint(alg="ES256", key=issuer.key())


def test_sign_raw_signs_exact_bytes(issuer: LocalIssuer) -> None:
    header = b'{"alg":"RS256","alg":"none"}'
    token = issuer.sign_raw(header, b"\xff not json")
    head, body, _ = token.split(".")
    assert (_b64d(head), _b64d(body)) == (header, b"\xff not json")
    _verify(issuer.key().public_jwk(), token)
    assert "=" not in token


def test_generate_key_rejects_unknown_names_and_curves() -> None:
    with pytest.raises(ConfigurationError, match="unknown algorithm"):
        generate_key("none")
    with pytest.raises(ConfigurationError, match="curve"):
        generate_key("ES256", curve="P-384")
    a, b = generate_key("RS256", rsa_bits=1024), generate_key("RS256", rsa_bits=1024)
    assert a.kid != b.kid
    assert _thumbprint_kid(a)
    assert a.public_jwk()["n"] != b.public_jwk()["n"]
    assert isinstance(a, SigningKey)
    assert repr(a).startswith("SigningKey(kid=")


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_every_generated_key_is_named_by_its_thumbprint(alg: str) -> None:
    key = generate_key(alg, rsa_bits=1024) if alg[:2] in ("RS", "PS") else generate_key(alg)
    assert _thumbprint_kid(key)
    assert SigningKey(None, alg, key.private_key).kid == key.kid  # the same key, the same kid
    assert generate_key(alg, "mine", rsa_bits=1024).kid == "mine"


def test_secret_keys_are_published_only_on_request(make_issuer: MakeIssuer) -> None:
    assert make_issuer(algorithms=("HS256", "ES256")).jwks()["keys"][0]["kty"] == "EC"
    shown = make_issuer(algorithms=("HS256",), include_secret_keys=True).jwks()["keys"]
    assert len(_b64d(shown[0]["k"])) == 32


def _thumbprint_kid(key: SigningKey) -> bool:
    jwk = key.public_jwk()
    return key.kid == jwk["kid"] == thumbprint({k: v for k, v in jwk.items() if k != "kid"})


def test_rotate_add_and_remove_keys(make_issuer: MakeIssuer) -> None:
    issuer = make_issuer(algorithms=("ES256", "RS256"))
    first, rs = issuer.key(), issuer.key("RS256")
    assert _thumbprint_kid(first)
    assert _thumbprint_kid(rs)
    second = issuer.rotate()
    assert issuer.key() is second
    assert _thumbprint_kid(second)
    assert second.kid != first.kid  # a new key is a new kid: verifiers refetch, never mix up
    assert [k.kid for k in issuer.keys] == [rs.kid, second.kid]
    third = issuer.rotate("ES256", keep_old=True)
    served = {jwk["kid"] for jwk in _get(issuer.jwks_url).json()["keys"]}
    assert {second.kid, third.kid} <= served
    extra = issuer.add_key("ES256", kid="spare")
    assert extra.kid == "spare"
    assert issuer.rotate("RS256", kid="explicit").kid == "explicit"
    assert issuer.key("ES256") is third
    issuer.remove_key(third.kid)
    assert issuer.key("ES256") is extra
    with pytest.raises(KeyError):
        issuer.remove_key("nope")
    with pytest.raises(LookupError):
        issuer.key("PS256")


# -- the server


@pytest.mark.parametrize("path", ["", "/realms/demo/"], ids=["root", "realm"])
def test_discovery_and_jwks_are_served_and_consistent(make_issuer: MakeIssuer, path: str) -> None:
    issuer = make_issuer(path=path, cache_max_age=120)
    assert issuer.url.startswith("http://127.0.0.1:")
    assert issuer.issuer == issuer.url + path.rstrip("/")
    discovery = _get(issuer.discovery_url)
    assert discovery.json() == {
        "issuer": issuer.issuer,
        "jwks_uri": issuer.jwks_url,
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    response = _get(discovery.json()["jwks_uri"])
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=120"
    assert response.json() == issuer.jwks() == {"keys": [issuer.key().public_jwk()]}
    assert _get(issuer.url + "/elsewhere").status_code == 404
    issuer.cache_max_age = None
    assert "Cache-Control" not in _get(issuer.jwks_url).headers


def test_requests_are_counted(issuer: LocalIssuer) -> None:
    with requests.Session() as session:  # keep-alive: one connection, three requests
        for url in (issuer.jwks_url, issuer.jwks_url, issuer.discovery_url):
            assert session.get(url, timeout=2).status_code == 200
    assert (issuer.jwks_requests, issuer.discovery_requests, issuer.request_count()) == (2, 1, 3)
    assert issuer.request_count(issuer.jwks_url) == issuer.request_count("/.well-known/jwks.json")
    issuer.reset_counts()
    assert issuer.request_count() == 0


def test_wait_for_requests_counts_a_request_its_client_gave_up_on(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.HANG)
    with pytest.raises(requests.ReadTimeout):
        _get(issuer.jwks_url, timeout=0.05)
    assert issuer.wait_for_requests(1, issuer.jwks_url) == 1
    assert issuer.wait_for_requests(1) == 1  # in all
    # A count not reached: the count as it is when the timeout passes.
    assert issuer.wait_for_requests(2, issuer.jwks_url, timeout=0.01) == 1
    issuer.set_fault(None)


def test_stop_start_and_context_manager_keep_the_port() -> None:
    with LocalIssuer(keys=[shared_key()]) as issuer:
        url = issuer.url
        assert issuer.start() is issuer
    with pytest.raises(requests.ConnectionError):
        _get(url)
    issuer.stop()
    with issuer:
        assert issuer.url == url
        assert _get(issuer.jwks_url).status_code == 200
    with pytest.raises(RuntimeError, match="start"):
        _ = LocalIssuer(keys=[shared_key()]).url


def test_given_keys_and_port_through_the_constructor() -> None:
    keys = [generate_key("ES256"), shared_key("RS256"), generate_key("ES256")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issuer = LocalIssuer(keys=keys, port=port, audience="api")
    assert issuer.url == f"http://127.0.0.1:{port}"  # known before it starts
    assert issuer.keys == keys
    assert (issuer.key(), issuer.key("RS256")) == (keys[0], keys[1])  # first of each alg
    with issuer:
        served = _get(issuer.jwks_url).json()["keys"]
    assert [jwk["kid"] for jwk in served] == [k.kid for k in keys]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"keys": [], "algorithms": ("RS256",)}, "not both", id="both"),
        pytest.param({"keys": []}, "non-empty sequence of SigningKey", id="no-keys"),
        pytest.param({"keys": ["RS256"]}, "sequence of SigningKey", id="not-keys"),
        pytest.param({"algorithms": "RS256"}, "non-empty sequence", id="alg-str"),
        pytest.param({"algorithms": ()}, "non-empty sequence", id="no-algs"),
        pytest.param({"port": 70000}, "port=", id="port-range"),
        pytest.param({"port": "8080"}, "port=", id="port-type"),
    ],
)
def test_bad_constructor_arguments(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalIssuer(**options)


def test_snapshot_and_restore(issuer: LocalIssuer) -> None:
    before = issuer.snapshot()
    original = issuer.keys
    issuer.rotate()
    issuer.add_key("ES256")
    issuer.audience, issuer.cache_max_age, issuer.include_secret_keys = "x", None, True
    issuer.restore(before)
    assert issuer.keys == original
    assert issuer.key() is original[0]
    assert (issuer.audience, issuer.cache_max_age, issuer.include_secret_keys) == (
        "https://api.example.test",
        300,
        False,
    )
    assert _get(issuer.jwks_url).json() == {"keys": [original[0].public_jwk()]}


# -- faults


def test_down_refuses_connections_then_comes_back_on_the_same_port(issuer: LocalIssuer) -> None:
    url = issuer.jwks_url
    with requests.Session() as session:
        assert session.get(url, timeout=2).status_code == 200
        issuer.set_fault(JWKSFault.DOWN)
        with pytest.raises(requests.ConnectionError):  # the pooled connection is gone too
            session.get(url, timeout=2)
        issuer.set_fault(None)
        assert issuer.jwks_url == url
        assert session.get(url, timeout=2).status_code == 200


def test_hang_holds_requests_until_cleared(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.HANG, delay=0.5)
    with pytest.raises(requests.ReadTimeout):
        _get(issuer.jwks_url, timeout=0.1)
    issuer.set_fault(None)
    assert _get(issuer.jwks_url).status_code == 200


def test_slow_answers_after_the_delay(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.SLOW, delay=0.1)
    started = time.monotonic()
    assert _get(issuer.jwks_url).json() == issuer.jwks()
    assert time.monotonic() - started >= 0.1


def test_stop_is_prompt_with_a_hung_request_in_flight(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.HANG)  # 30 s by default
    outcome: list[BaseException | requests.Response] = []

    def fetch() -> None:
        try:
            outcome.append(_get(issuer.jwks_url, timeout=10))
        except requests.RequestException as exc:
            outcome.append(exc)

    client = threading.Thread(target=fetch)
    client.start()
    with pytest.raises(requests.ReadTimeout):  # proves the server is holding requests
        _get(issuer.jwks_url, timeout=0.1)
    started = time.monotonic()
    issuer.stop()
    assert time.monotonic() - started < 2
    client.join(timeout=2)
    assert not client.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "check"),
    [
        pytest.param(JWKSFault.ERROR_500, 500, "application/json", None, id="error_500"),
        pytest.param(
            JWKSFault.HTML, 200, "text/html; charset=utf-8", lambda r: r.text.startswith("<html>"),
            id="html",
        ),
        pytest.param(
            JWKSFault.INVALID_JSON, 200, "application/json",
            lambda r: not _is_json(r.content), id="invalid_json",
        ),
        pytest.param(
            JWKSFault.NOT_AN_OBJECT, 200, "application/json", lambda r: r.json() == [1, 2],
            id="not_an_object",
        ),
        pytest.param(
            JWKSFault.NO_KEYS, 200, "application/json", lambda r: r.json() == {"keys": []},
            id="no_keys",
        ),
        pytest.param(
            JWKSFault.HUGE, 200, "application/json",
            lambda r: len(r.content) == int(r.headers["Content-Length"]) == 2 * 1024 * 1024,
            id="huge",
        ),
    ],
)  # fmt: skip
def test_content_faults(
    issuer: LocalIssuer,
    fault: JWKSFault,
    status: int,
    content_type: str,
    check: Callable[[requests.Response], object] | None,
) -> None:
    issuer.set_fault(fault, body_size=2 * 1024 * 1024)
    response = _get(issuer.jwks_url)
    assert (response.status_code, response.headers["Content-Type"]) == (status, content_type)
    assert check is None or check(response)


def test_broken_keys_come_with_the_good_ones(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.BROKEN_KEYS)
    keys = _get(issuer.jwks_url).json()["keys"]
    assert keys[-1] == issuer.key().public_jwk()
    assert {"broken-rsa-n", "broken-rsa-no-e", "broken-ec-point"} <= {k["kid"] for k in keys}
    assert not any("e" in k for k in keys if k["kid"] == "broken-rsa-no-e")
    assert _get(issuer.discovery_url).json()["issuer"] == issuer.issuer


@pytest.mark.parametrize("fault", list(JWKSFault), ids=lambda f: f.value)
def test_every_fault_is_reachable_by_its_name(fault: JWKSFault) -> None:
    assert fault_named(fault.value) is fault
    assert fault_named(fault.value.upper()) is fault
    assert fault_named(fault) is fault


def test_set_fault_by_name_really_takes_the_issuer_down(issuer: LocalIssuer) -> None:
    issuer.set_fault("down")  # once a silent no-op: an outage test then tested nothing
    with pytest.raises(requests.ConnectionError):
        _get(issuer.jwks_url)
    issuer.set_fault(None)
    issuer.set_fault("error_500", endpoint="jwks")
    assert _get(issuer.jwks_url).status_code == 500


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"fault": "dwon"}, "unknown fault 'dwon'; choose from 'down', ", id="typo"),
        pytest.param({"fault": ""}, "unknown fault ''", id="empty"),
        pytest.param({"fault": 500}, "unknown fault 500", id="int"),
        pytest.param({"fault": "hang", "delay": "1"}, r"set_fault\(delay=", id="delay"),
        pytest.param({"fault": "huge", "body_size": -1}, r"body_size=", id="size"),
        pytest.param({"fault": "down", "endpoint": "keys"}, "endpoint=", id="endpoint"),
    ],
)
def test_set_fault_refuses_what_it_does_not_know(
    issuer: LocalIssuer, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        issuer.set_fault(**kwargs)
    assert _get(issuer.jwks_url).status_code == 200  # nothing was switched on


def test_set_fault_takes_a_timedelta(issuer: LocalIssuer) -> None:
    issuer.set_fault("slow", delay=datetime.timedelta(milliseconds=100))
    started = time.monotonic()
    assert _get(issuer.jwks_url).status_code == 200
    assert time.monotonic() - started >= 0.1


def test_redirect_loop_and_per_endpoint_faults(issuer: LocalIssuer) -> None:
    issuer.set_fault(JWKSFault.REDIRECT_LOOP)
    with pytest.raises(requests.TooManyRedirects):
        _get(issuer.discovery_url)
    issuer.set_fault(JWKSFault.ERROR_500, endpoint="jwks")
    assert _get(issuer.discovery_url).status_code == 200
    assert _get(issuer.jwks_url).status_code == 500


def test_mint_binds_tokens_to_a_dpop_key_and_a_certificate() -> None:
    import base64
    import datetime
    import hashlib
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from jwt_guard.testing.dpop import DPoPKey

    def payload(token: str) -> dict[str, Any]:
        segment = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(Encoding.DER)
    x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    dpop = DPoPKey.generate("ES256")
    issuer = LocalIssuer(keys=[generate_key("ES256")])
    issuer.start()
    try:
        _check_binding(issuer, payload, dpop, cert, der, x5t)
    finally:
        issuer.stop()


def _check_binding(
    issuer: LocalIssuer, payload: Any, dpop: Any, cert: Any, der: bytes, x5t: str
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    assert payload(issuer.mint(dpop_key=dpop))["cnf"] == {"jkt": dpop.jkt}
    assert payload(issuer.mint(dpop_key="j" * 43))["cnf"] == {"jkt": "j" * 43}
    for form in (cert, der, cert.public_bytes(Encoding.PEM).decode()):
        assert payload(issuer.mint(certificate=form))["cnf"] == {"x5t#S256": x5t}
    both = payload(issuer.mint(dpop_key=dpop, certificate=cert))
    assert both["cnf"] == {"jkt": dpop.jkt, "x5t#S256": x5t}
    assert "cnf" not in payload(issuer.mint())
    overridden = payload(issuer.mint({"cnf": {"kid": "k"}}, dpop_key=dpop))
    assert overridden["cnf"] == {"kid": "k"}  # claims= still has the last word
