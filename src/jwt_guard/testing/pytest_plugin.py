"""The jwt_guard pytest plugin: a real local issuer, a verifier that trusts it, and tokens.

Installed with jwt_guard (a ``pytest11`` entry point), so in any project that has jwt_guard
installed these fixtures are there without an import or a ``conftest.py``:

``jwt_issuer``
    A :class:`~jwt_guard.testing.LocalIssuer` serving OpenID discovery and JWKS on 127.0.0.1,
    started once per test session. Change it freely in a test (``rotate()``, ``add_key()``,
    ``remove_key()``, ``set_fault()``, ``cache_max_age``, ``audience``...): after the test its
    keys, options and request counters are put back and any fault is cleared, so tests never
    leak into each other.
``jwt_verifier``
    A fresh :class:`~jwt_guard.TokenVerifier` per test, trusting ``jwt_issuer`` through discovery
    (``issuer=jwt_issuer.issuer``, ``audience=jwt_issuer.audience``), with the unknown-kid
    cool-down off so a key rotated within a test is picked up at once. It follows
    ``jwt_issuer.audience``: set it in a test and the verifier expects the new audience from
    its next token on (a :class:`LocalIssuerVerifier`).
``mint_token``
    ``mint_token(claims=None, *, scopes=..., alg=..., expires_in=..., subject=..., audience=...,
    issuer=..., not_before=..., issued_at=..., headers=..., kid=..., key=...) -> str``: a token
    signed by ``jwt_issuer`` (the keywords of :meth:`LocalIssuer.mint`). An ``alg`` the issuer
    has no key for gets one for the rest of the test.
``jwt_issuer_fault``
    ``jwt_issuer_fault(fault, *, delay=None, endpoint=None)`` makes the JWKS and discovery
    endpoints misbehave (a :class:`~jwt_guard.testing.JWKSFault` or its value, e.g. ``"down"``,
    ``"error_500"``, ``"hang"``), until the ``with`` block ends or else until the test ends.
    ``jwt_issuer.set_fault(...)`` takes the same names; an unknown one is an error listing them.
``dpop_client``
    A :class:`~jwt_guard.testing.dpop.DPoPClient` per test with a fresh ES256 key:
    ``dpop_client.mint(scopes=[...])`` is a token from ``jwt_issuer`` bound to its key
    (``cnf.jkt``), ``dpop_client.headers("GET", "/items", token)`` the ``Authorization: DPoP``
    and ``DPoP`` proof headers of one request to ``https://api.example.com/items`` (set
    ``dpop_client.public_url`` to your guard's ``public_url``); ``remember(response.headers)``
    keeps a server nonce for the next proofs.
``jwt_issuer_session``
    The same issuer, session-scoped and never reset: for session-scoped fixtures (a verifier or
    an app built once). Do not change it from such fixtures.
``jwt_issuer_options``
    Session-scoped ``dict`` of :class:`LocalIssuer` keyword arguments; override it in your
    ``conftest.py`` (default: ``{"algorithms": ("RS256", "ES256", "EdDSA")}``).

Example::

    def test_items_need_a_scope(jwt_verifier, mint_token):
        app = make_app(verifier=jwt_verifier)            # your app, behind JWTGuard
        client = TestClient(app)
        token = mint_token(scopes=["read:items"])
        assert client.get("/items", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/items").status_code == 401
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pytest

from jwt_guard.core.claims import Claims
from jwt_guard.core.verifier import TokenVerifier

if TYPE_CHECKING:
    from jwt_guard.testing import JWKSFault, LocalIssuer
    from jwt_guard.testing.dpop import DPoPClient

__all__ = [
    "FaultSwitch",
    "IssuerFault",
    "LocalIssuerVerifier",
    "MintToken",
    "dpop_client",
    "jwt_issuer",
    "jwt_issuer_fault",
    "jwt_issuer_options",
    "jwt_issuer_session",
    "jwt_verifier",
    "mint_token",
]


class MintToken(Protocol):
    """The type of the ``mint_token`` fixture, for annotating tests."""

    def __call__(
        self, claims: dict[str, Any] | None = None, *, alg: str | None = None, **options: Any
    ) -> str: ...


class FaultSwitch:
    """A fault that is on: ends with its ``with`` block, or with the test."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self._issuer = issuer

    def __enter__(self) -> FaultSwitch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.clear()

    def clear(self) -> None:
        """Make the endpoints behave again."""
        self._issuer.set_fault(None)


class IssuerFault:
    """The ``jwt_issuer_fault`` fixture: ``jwt_issuer_fault("down")``, with or without ``with``."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self._issuer = issuer

    def __call__(
        self,
        fault: JWKSFault | str,
        *,
        delay: float | None = None,
        endpoint: Literal["jwks", "discovery"] | None = None,
    ) -> FaultSwitch:
        """Turn ``fault`` on (see :class:`~jwt_guard.testing.JWKSFault` for the choices)."""
        self._issuer.set_fault(fault, delay=delay, endpoint=endpoint)
        return FaultSwitch(self._issuer)


class LocalIssuerVerifier(TokenVerifier):
    """The ``jwt_verifier`` fixture: a ``TokenVerifier`` that trusts a ``LocalIssuer`` and
    follows its ``audience``.

    When a test sets ``jwt_issuer.audience``, the next ``verify``/``averify``/``cached`` call
    rebuilds the verifier for the new audience (a fresh key cache and token cache), so a token
    minted for the issuer's current audience verifies, and one minted for the old audience is
    refused like any other wrong audience.
    """

    def __init__(self, issuer: LocalIssuer, **options: Any) -> None:
        self._local = issuer
        self._options = options
        self._audience = issuer.audience
        self._follow_lock = threading.Lock()
        super().__init__(issuer=issuer.issuer, audience=self._audience, **options)

    def _follow(self) -> None:
        audience = self._local.audience
        if audience == self._audience:
            return
        with self._follow_lock:
            if audience != self._audience:
                TokenVerifier.__init__(
                    self, issuer=self._local.issuer, audience=audience, **self._options
                )
                self._audience = audience

    def verify(self, token: str | bytes, *, client: str | None = None) -> Claims:
        """:meth:`TokenVerifier.verify`, for the issuer's current audience."""
        self._follow()
        return super().verify(token, client=client)

    async def averify(self, token: str | bytes, *, client: str | None = None) -> Claims:
        """:meth:`TokenVerifier.averify`, for the issuer's current audience."""
        self._follow()
        return await super().averify(token, client=client)

    def cached(self, token: str, client: str | None = None) -> Claims | None:
        """:meth:`TokenVerifier.cached`, for the issuer's current audience."""
        self._follow()
        return super().cached(token, client)


@pytest.fixture(scope="session")
def jwt_issuer_options() -> dict[str, Any]:
    """Keyword arguments for the session's :class:`LocalIssuer`; override it to change them."""
    return {"algorithms": ("RS256", "ES256", "EdDSA")}


@pytest.fixture(scope="session")
def jwt_issuer_session(jwt_issuer_options: dict[str, Any]) -> Iterator[LocalIssuer]:
    """The session's local issuer, started once and never reset (for session-scoped fixtures)."""
    from jwt_guard.testing import LocalIssuer

    with LocalIssuer(**jwt_issuer_options) as issuer:
        yield issuer


@pytest.fixture
def jwt_issuer(jwt_issuer_session: LocalIssuer) -> Iterator[LocalIssuer]:
    """The session's local issuer, put back as it was (keys, options, no fault) after the test."""
    snapshot = jwt_issuer_session.snapshot()
    jwt_issuer_session.set_fault(None)
    jwt_issuer_session.reset_counts()
    try:
        yield jwt_issuer_session
    finally:
        jwt_issuer_session.restore(snapshot)
        jwt_issuer_session.set_fault(None)
        jwt_issuer_session.start()
        jwt_issuer_session.reset_counts()


@pytest.fixture
def jwt_verifier(jwt_issuer: LocalIssuer) -> TokenVerifier:
    """A fresh verifier trusting ``jwt_issuer`` through OpenID discovery, cool-down off; it
    follows ``jwt_issuer.audience`` when a test changes it."""
    return LocalIssuerVerifier(jwt_issuer, jwks_options={"cooldown": 0.0})


@pytest.fixture
def mint_token(jwt_issuer: LocalIssuer) -> MintToken:
    """A factory of tokens signed by ``jwt_issuer``; takes the keywords of ``LocalIssuer.mint``."""

    def mint(
        claims: dict[str, Any] | None = None, *, alg: str | None = None, **options: Any
    ) -> str:
        if alg is not None and options.get("key") is None:
            try:
                jwt_issuer.key(alg)
            except LookupError:
                jwt_issuer.add_key(alg)
        return jwt_issuer.mint(claims, alg=alg, **options)

    return mint


@pytest.fixture
def jwt_issuer_fault(jwt_issuer: LocalIssuer) -> IssuerFault:
    """Make ``jwt_issuer``'s endpoints fail: ``with jwt_issuer_fault("down"): ...``."""
    return IssuerFault(jwt_issuer)


@pytest.fixture
def dpop_client(jwt_issuer: LocalIssuer) -> DPoPClient:
    """A DPoP client with a fresh ES256 key whose tokens ``jwt_issuer`` binds to it."""
    from jwt_guard.testing.dpop import DPoPClient

    return DPoPClient(issuer=jwt_issuer)
