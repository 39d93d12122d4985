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
    cool-down off so a key rotated within a test is picked up at once.
``mint_token``
    ``mint_token(claims=None, *, scopes=..., alg=..., expires_in=..., subject=..., audience=...,
    issuer=..., not_before=..., issued_at=..., headers=..., kid=..., key=...) -> str``: a token
    signed by ``jwt_issuer`` (the keywords of :meth:`LocalIssuer.mint`). An ``alg`` the issuer
    has no key for gets one for the rest of the test.
``jwt_issuer_fault``
    ``jwt_issuer_fault(fault, *, delay=None, endpoint=None)`` makes the JWKS and discovery
    endpoints misbehave (a :class:`~jwt_guard.testing.JWKSFault` or its value, e.g. ``"down"``,
    ``"error_500"``, ``"hang"``), until the ``with`` block ends or else until the test ends.
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

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pytest

if TYPE_CHECKING:
    from jwt_guard.testing import JWKSFault, LocalIssuer
    from jwt_guard.verifier import TokenVerifier

__all__ = [
    "FaultSwitch",
    "IssuerFault",
    "MintToken",
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
        from jwt_guard.testing import JWKSFault

        try:
            chosen = fault if isinstance(fault, JWKSFault) else JWKSFault(fault)
        except ValueError:
            choices = ", ".join(repr(f.value) for f in JWKSFault)
            raise ValueError(f"unknown fault {fault!r}; choose from {choices}") from None
        self._issuer.set_fault(chosen, delay=delay, endpoint=endpoint)
        return FaultSwitch(self._issuer)


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
    from jwt_guard.testing._state import IssuerSnapshot

    snapshot = IssuerSnapshot.capture(jwt_issuer_session)
    jwt_issuer_session.set_fault(None)
    jwt_issuer_session.reset_counts()
    try:
        yield jwt_issuer_session
    finally:
        snapshot.restore(jwt_issuer_session)


@pytest.fixture
def jwt_verifier(jwt_issuer: LocalIssuer) -> TokenVerifier:
    """A fresh verifier trusting ``jwt_issuer`` through OpenID discovery, cool-down off."""
    from jwt_guard.verifier import TokenVerifier

    return TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        jwks_options={"cooldown": 0.0},
    )


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
