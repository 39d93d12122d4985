"""jwt_guard: JWT bearer-token authorization for ASGI and WSGI apps."""

from __future__ import annotations

from ._version import __version__ as __version__
from .asgi import JWTGuard, JWTUser
from .core.claims import Claims
from .core.jws import verify_jws
from .core.verifier import Issuer, TokenVerifier
from .decorators import check_scopes, require_scopes
from .errors import (
    AlgorithmNotAllowed,
    BadSignature,
    ClaimError,
    ConfigurationError,
    EncryptedToken,
    ExpiredToken,
    InsufficientScope,
    InvalidClaim,
    InvalidRequest,
    InvalidToken,
    IssuedInFuture,
    JWTGuardError,
    KeysUnavailable,
    MalformedToken,
    MissingClaim,
    MissingToken,
    NotYetValid,
    RevokedToken,
    TokenTooLarge,
    TokenTooOld,
    UnknownKey,
    UnsupportedHeader,
    WrongAudience,
    WrongIssuer,
)
from .events import GuardObserver
from .guard.health import health_asgi_app, health_wsgi_app
from .guard.middleware import ErrorResponse
from .keys.algorithms import ALGORITHMS
from .keys.jwk import KeySet
from .sources.jwks import JWKSClient
from .wsgi import JWTGuardWSGI

__all__ = [
    "ALGORITHMS",
    "AlgorithmNotAllowed",
    "BadSignature",
    "ClaimError",
    "Claims",
    "ConfigurationError",
    "EncryptedToken",
    "ErrorResponse",
    "ExpiredToken",
    "GuardObserver",
    "InsufficientScope",
    "InvalidClaim",
    "InvalidRequest",
    "InvalidToken",
    "IssuedInFuture",
    "Issuer",
    "JWKSClient",
    "JWTGuard",
    "JWTGuardError",
    "JWTGuardWSGI",
    "JWTUser",
    "KeySet",
    "KeysUnavailable",
    "MalformedToken",
    "MissingClaim",
    "MissingToken",
    "NotYetValid",
    "RevokedToken",
    "TokenTooLarge",
    "TokenTooOld",
    "TokenVerifier",
    "UnknownKey",
    "UnsupportedHeader",
    "WrongAudience",
    "WrongIssuer",
    "check_scopes",
    "health_asgi_app",
    "health_wsgi_app",
    "require_scopes",
    "verify_jws",
]
