"""Property tests: whatever arrives in ``Authorization``, the answer is a verified, unchanged
token or a well-formed 4xx, from the core and from both middlewares; never a 5xx, never an
exception.

CI runs a short, derandomized run with no example database, so it is deterministic.
``scripts/fuzz_long.py`` runs the same properties with random seeds and many more examples
(``JWT_GUARD_FUZZ_EXAMPLES`` per property, ``JWT_GUARD_FUZZ_RANDOM=1``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _core_helpers import settle_jwks_threads
from _hostile import (
    Answer,
    AsgiDriver,
    Kit,
    Tally,
    acore_outcome,
    asgi_app,
    assert_4xx_refusal,
    b64,
    call_wsgi,
    core_outcome,
    make_kit,
    make_verifier,
    wsgi_app,
)
from jwt_guard import TokenVerifier
from jwt_guard.core.claims import Claims
from jwt_guard.errors import JWTGuardError
from jwt_guard.wsgi import JWTGuardWSGI

EXAMPLES = int(os.environ.get("JWT_GUARD_FUZZ_EXAMPLES", "100"))  # per property, in CI
LONG_RUN = os.environ.get("JWT_GUARD_FUZZ_RANDOM") == "1"

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TALLY = Tally()
"""Every input run, by outcome (read by ``scripts/fuzz_long.py``)."""


@dataclass
class Rig:
    """Everything a property needs: issuers, the verifier, both apps, valid tokens."""

    kit: Kit
    verifier: TokenVerifier
    asgi: AsgiDriver
    wsgi: JWTGuardWSGI
    tokens: dict[str, str]


@contextlib.contextmanager
def make_rig() -> Iterator[Rig]:
    with make_kit() as kit, make_verifier(kit) as verifier:
        asgi = AsgiDriver(asgi_app(verifier))
        tokens = {
            alg: kit.issuer.mint(
                alg=alg, subject=f"subject-{alg}", scopes=["admin"], expires_in=86400
            )
            for alg in ("RS256", "ES256", "EdDSA")
        }
        try:
            yield Rig(kit, verifier, asgi, wsgi_app(verifier), tokens)
        finally:
            asgi.close()
            settle_jwks_threads()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with make_rig() as made:
        yield made


def run_everywhere(rig: Rig, lines: list[bytes], path: str = "/me") -> list[Any]:
    """The core (sync and async) and both middlewares on one request; all their outcomes."""
    core = core_outcome(rig.verifier, lines, path)
    acore = rig.asgi.loop.run_until_complete(acore_outcome(rig.verifier, lines, path))
    return [core, acore, rig.asgi(lines, path), call_wsgi(rig.wsgi, lines, path)]


def expect_refused(
    rig: Rig, lines: list[bytes], path: str = "/me", status: int | None = None
) -> None:
    """Refused by all four, alike (``status`` if given), each answer a well-formed 4xx."""
    outcomes = run_everywhere(rig, lines, path)
    for outcome in outcomes:
        if isinstance(outcome, Answer):
            assert_4xx_refusal(outcome, lines)
        else:
            assert isinstance(outcome, JWTGuardError), outcome
    statuses = {outcome.status for outcome in outcomes}
    assert len(statuses) == 1, outcomes
    assert status is None or statuses == {status}
    TALLY.add(f"refused-{statuses.pop()}")


def expect_refused_or_verified(
    rig: Rig, lines: list[bytes], path: str, token: str | None, sub: str | None
) -> None:
    """Refused everywhere, or (only if the extracted token is ``token``) accepted everywhere."""
    outcomes = run_everywhere(rig, lines, path)
    accepted = [o for o in outcomes if isinstance(o, Claims) or getattr(o, "status", 0) == 200]
    if accepted:
        assert len(accepted) == len(outcomes), outcomes
        assert token is not None
        assert outcomes[0].subject == outcomes[1].subject == sub
        if path == "/me":
            assert json.loads(outcomes[2].body)["sub"] == json.loads(outcomes[3].body)["sub"] == sub
        TALLY.add("verified")
        return
    for outcome in outcomes:
        if isinstance(outcome, Answer):
            assert_4xx_refusal(outcome, lines)
        else:
            assert isinstance(outcome, JWTGuardError), outcome
    TALLY.add(f"refused-{outcomes[2].status}")


# -- strategies ---------------------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN68 = B64URL + ".~+/="

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.just(10**400)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["none", "RS256", "HS256", "rs256-1", "admin", "read admin", ""]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
segments = st.one_of(
    st.builds(lambda v: b64(json.dumps(v, allow_nan=True)), json_values),
    st.builds(b64, st.binary(max_size=80)),
    st.text(alphabet=TOKEN68, max_size=60),
    st.text(max_size=30),
)
header_values = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda raw: b"Bearer " + raw, st.binary(max_size=200)),
    st.builds(lambda t: b"Bearer " + t.encode(), st.text(alphabet=TOKEN68, max_size=200)),
    st.builds(
        lambda scheme, sep, t: scheme.encode("latin-1") + sep + t.encode("utf-8"),
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Bearer:", ""]),
        st.sampled_from([b" ", b"  ", b"\t", b"", b" \x00"]),
        st.text(max_size=120),
    ),
)
registered_claims = st.sampled_from(
    ["exp", "nbf", "iat", "iss", "aud", "sub", "jti", "scope", "scp", "x"]
)
header_members = st.sampled_from(
    ["alg", "kid", "typ", "crit", "b64", "jku", "jwk", "x5u", "x5c", "cty", "enc", "zip"]
)


# -- properties ---------------------------------------------------------------------------------


@FUZZ
@given(lines=st.lists(header_values, max_size=3), path=st.sampled_from(["/me", "/admin"]))
def test_arbitrary_authorization_headers(rig: Rig, lines: list[bytes], path: str) -> None:
    expect_refused(rig, lines, path)


@FUZZ
@given(parts=st.lists(segments, min_size=1, max_size=6), path=st.sampled_from(["/me", "/admin"]))
def test_arbitrary_tokens(rig: Rig, parts: list[str], path: str) -> None:
    token = ".".join(parts)
    expect_refused(rig, [b"Bearer " + token.encode("utf-8")], path)


@FUZZ
@given(
    alg=st.sampled_from(["RS256", "ES256", "EdDSA"]),
    keep=st.sampled_from([0, 1, 2]),
    tail=st.lists(segments, min_size=1, max_size=3),
)
def test_valid_segments_with_arbitrary_rest(rig: Rig, alg: str, keep: int, tail: list[str]) -> None:
    """Real header (and payload) segments followed by arbitrary ones: still refused."""
    token = ".".join(rig.tokens[alg].split(".")[: keep + 1] + tail)
    if token == rig.tokens[alg]:
        return
    expect_refused(rig, [b"Bearer " + token.encode("utf-8")])


@FUZZ
@given(
    header=st.dictionaries(header_members | st.text(max_size=4), json_values, max_size=3),
    claims=st.dictionaries(registered_claims | st.text(max_size=4), json_values, max_size=4),
    path=st.sampled_from(["/me", "/admin"]),
)
def test_validly_signed_arbitrary_headers_and_claims(
    rig: Rig, header: dict[str, Any], claims: dict[str, Any], path: str
) -> None:
    """Signed by the trusted key: odd claim types are refused or accepted, never a crash."""
    kit = rig.kit
    full_header = {**kit.header("EdDSA"), **header}
    payload = {**kit.claims(), **claims}
    try:
        header_bytes = json.dumps(full_header, allow_nan=True).encode()
        payload_bytes = json.dumps(payload, allow_nan=True).encode()
    except (ValueError, OverflowError):  # e.g. an integer json will not write
        return
    token = kit.sign(header_bytes, payload_bytes, key=kit.key("EdDSA"))
    sub = payload.get("sub") if isinstance(payload.get("sub"), str) else None
    expect_refused_or_verified(rig, [b"Bearer " + token.encode()], path, token, sub)


def _mutations(original: str) -> st.SearchStrategy[str]:
    n = len(original)
    replace = st.builds(
        lambda i, b: original[:i] + chr(b) + original[i + 1 :],
        st.integers(0, n - 1),
        st.integers(0, 255),
    )
    flip = st.builds(
        lambda i, bit: original[:i] + chr(ord(original[i]) ^ (1 << bit)) + original[i + 1 :],
        st.integers(0, n - 1),
        st.integers(0, 7),
    )
    replace_b64 = st.builds(
        lambda i, c: original[:i] + c + original[i + 1 :],
        st.integers(0, n - 1),
        st.sampled_from(B64URL + "."),
    )
    delete = st.builds(lambda i: original[:i] + original[i + 1 :], st.integers(0, n - 1))
    insert = st.builds(
        lambda i, b: original[:i] + chr(b) + original[i:], st.integers(0, n), st.integers(0, 255)
    )
    return st.one_of(replace, replace_b64, flip, delete, insert)


def _decoded_flip(token: str, part: int, index: int, bit: int) -> str:
    """Flip one bit of the decoded header, payload or signature; re-encode canonically."""
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=="))
    raw[index % len(raw)] ^= 1 << bit
    parts[part] = b64(bytes(raw))
    return ".".join(parts)


@FUZZ
@given(data=st.data(), alg=st.sampled_from(["RS256", "ES256", "EdDSA"]))
def test_single_byte_and_bit_mutations_of_a_valid_token(
    rig: Rig, data: st.DataObject, alg: str
) -> None:
    original = rig.tokens[alg]
    mutated = data.draw(_mutations(original), label="mutated")
    lines = [b"Bearer " + mutated.encode("latin-1")]
    if mutated == original:
        expect_refused_or_verified(rig, lines, "/me", original, f"subject-{alg}")
        return
    expect_refused(rig, lines)
    with pytest.raises(JWTGuardError):  # bytes take the same path
        rig.verifier.verify(mutated.encode("latin-1"))


@FUZZ
@given(
    alg=st.sampled_from(["RS256", "ES256", "EdDSA"]),
    part=st.sampled_from([0, 1, 2]),
    index=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_single_bit_flips_of_the_decoded_segments(
    rig: Rig, alg: str, part: int, index: int, bit: int
) -> None:
    """A flipped bit in the header, claims or signature bytes, re-encoded canonically: 401."""
    mutated = _decoded_flip(rig.tokens[alg], part, index, bit)
    assert mutated != rig.tokens[alg]
    expect_refused(rig, [b"Bearer " + mutated.encode()], status=401)


@FUZZ
@given(data=st.data(), alg=st.sampled_from(["RS256", "ES256", "EdDSA"]))
def test_mutations_of_the_whole_header_line(rig: Rig, data: st.DataObject, alg: str) -> None:
    """Mutate ``Bearer <token>`` anywhere: a 200 only if the token itself is unchanged."""
    original = rig.tokens[alg]
    line = data.draw(_mutations("Bearer " + original), label="line")
    token = line.strip(" \t").partition(" ")[2].lstrip(" ")
    unchanged = token == original
    expect_refused_or_verified(
        rig, [line.encode("latin-1")], "/me", original if unchanged else None, f"subject-{alg}"
    )


def test_the_valid_tokens_pass(rig: Rig) -> None:
    """The control: the unmutated tokens are accepted everywhere, with their own subject."""
    for alg, token in rig.tokens.items():
        for outcome in run_everywhere(rig, [f"Bearer {token}".encode()]):
            if isinstance(outcome, Answer):
                assert outcome.status == 200
                assert json.loads(outcome.body)["sub"] == f"subject-{alg}"
            else:
                assert outcome.subject == f"subject-{alg}"


PROPERTIES = [
    test_arbitrary_authorization_headers,
    test_arbitrary_tokens,
    test_valid_segments_with_arbitrary_rest,
    test_validly_signed_arbitrary_headers_and_claims,
    test_single_byte_and_bit_mutations_of_a_valid_token,
    test_single_bit_flips_of_the_decoded_segments,
    test_mutations_of_the_whole_header_line,
]
"""The hypothesis tests, in the order ``scripts/fuzz_long.py`` runs them."""
