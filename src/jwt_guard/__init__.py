"""jwt_guard: JWT bearer-token authorization for ASGI and WSGI apps.

The names a user writes in an app are here (``__all__``); everything else lives in its module.
``import jwt_guard`` imports no web framework: the middlewares and ``require_scopes`` load their
module on first use.

The package, in layers; an import points only at its own layer or one above it in this list::

    errors, events, _codec, _logsafe, _options, _version   the foundation
    keys/       JWK -> verification keys bound to algorithms; the algorithm table (python-jose)
    stores/     shared state (revocation, DPoP replay, key sets): in memory and Redis
    sources/    where keys come from: the KeySource protocol; static keys, the remote JWKS
                client (its options, cache policy, HTTP) and a JWKS file
    core/       a token in, Claims or a JWTGuardError out: jws, claims, issuers, token cache,
                TokenVerifier, configuration from the environment
    binding/    sender-constrained tokens: DPoP proofs and nonces, certificate thumbprints, the
                per-request check (SenderConstraints)
    guard/      framework-free middleware logic (header -> token -> decision -> ErrorResponse),
                websocket handshakes and lifetimes, health endpoints
    asgi, wsgi, flask, django, drf, fastapi, litestar, decorators    one adapter per framework
    testing/    the local issuer and the pytest plugin
    cli/        the jwt-guard command

The exceptions (all in :mod:`jwt_guard.errors`; the bases are exported here)::

    JWTGuardError
    ├── MissingToken, InvalidRequest
    ├── InvalidToken            MalformedToken (TokenTooLarge, EncryptedToken),
    │   │                       AlgorithmNotAllowed, UnsupportedHeader, UnknownKey, BadSignature
    │   ├── ClaimError          ExpiredToken, NotYetValid, IssuedInFuture, TokenTooOld,
    │   │                       WrongIssuer, WrongAudience, MissingClaim, InvalidClaim,
    │   │                       RevokedToken
    │   └──                     DPoPBindingMismatch, CertificateBindingMismatch
    ├── InvalidDPoPProof        DPoPProofMismatch, DPoPProofExpired, DPoPProofReplayed
    ├── UseDPoPNonce
    ├── InsufficientScope
    ├── KeysUnavailable
    └── StoreUnavailable        StoreFull
    ConfigurationError (ValueError)
"""

from __future__ import annotations

import importlib
import typing

from ._version import __version__ as __version__
from .core._tenants import IssuerTemplate
from .core.claims import Claims
from .core.verifier import Issuer, TokenVerifier
from .errors import (
    ClaimError,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    JWTGuardError,
    KeysUnavailable,
)
from .events import GuardObserver
from .guard.health import health_asgi_app, health_wsgi_app
from .guard.middleware import ErrorResponse
from .sources.base import KeySource
from .sources.options import JWKSOptions

if typing.TYPE_CHECKING:  # type checkers see the lazy names as ordinary imports
    from .asgi import JWTGuard
    from .decorators import require_scopes
    from .wsgi import JWTGuardWSGI

__all__ = [
    "ClaimError",
    "Claims",
    "ConfigurationError",
    "ErrorResponse",
    "GuardObserver",
    "InsufficientScope",
    "InvalidToken",
    "Issuer",
    "IssuerTemplate",
    "JWKSOptions",
    "JWTGuard",
    "JWTGuardError",
    "JWTGuardWSGI",
    "KeySource",
    "KeysUnavailable",
    "TokenVerifier",
    "health_asgi_app",
    "health_wsgi_app",
    "require_scopes",
]

_LAZY = {
    "JWTGuard": ".asgi",
    "JWTGuardWSGI": ".wsgi",
    "require_scopes": ".decorators",
}

if not typing.TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays a type error

    def __getattr__(name: str) -> typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'jwt_guard' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later lookups find it without __getattr__
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
