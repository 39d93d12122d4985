"""The one exception tree of jwt_guard.

Every error carries its HTTP meaning as class data: the status, the RFC 6750 error code that goes
into ``WWW-Authenticate``, a stable machine-readable ``code`` and a fixed, client-safe
``description``. Detail about what exactly went wrong goes into ``str(exc)`` (and the log), never
into a response: it may hold attacker-controlled bytes.

::

    JWTGuardError                         base class; never raised itself
    ├── MissingToken                      401, no error code   (no credentials at all)
    ├── InvalidRequest                    400 invalid_request   (malformed Authorization header)
    ├── InvalidToken                      401 invalid_token
    │   ├── MalformedToken                    code "malformed"
    │   │   ├── TokenTooLarge                 code "too_large"
    │   │   └── EncryptedToken                code "encrypted"   (a JWE was presented)
    │   ├── AlgorithmNotAllowed               code "alg_not_allowed"
    │   ├── UnsupportedHeader                 code "bad_header"  (crit, b64, typ)
    │   ├── UnknownKey                        code "unknown_key"
    │   ├── BadSignature                      code "bad_signature"
    │   ├── ClaimError                        claim validation failed
    │   │   ├── ExpiredToken                  code "expired"
    │   │   ├── NotYetValid                   code "not_yet_valid"
    │   │   ├── IssuedInFuture                code "issued_in_future"
    │   │   ├── TokenTooOld                   code "too_old"
    │   │   ├── WrongIssuer                   code "wrong_issuer"
    │   │   ├── WrongAudience                 code "wrong_audience"
    │   │   ├── MissingClaim                  code "missing_claim"
    │   │   ├── InvalidClaim                  code "invalid_claim"
    │   │   └── RevokedToken                  code "revoked"
    │   ├── DPoPBindingMismatch               code "dpop_binding"  (cnf.jkt: not the proof's key,
    │   │                                                           or a bound token sent as Bearer)
    │   └── CertificateBindingMismatch        code "cert_binding"  (cnf x5t#S256, RFC 8705 3)
    ├── InvalidDPoPProof                  401 invalid_dpop_proof  (RFC 9449 7.1)
    │   ├── DPoPProofMismatch                 code "dpop_mismatch"  (htm, htu or ath: a proof
    │   │                                                            made for another request)
    │   ├── DPoPProofExpired                  code "dpop_expired"   (iat outside the window)
    │   └── DPoPProofReplayed                 code "dpop_replayed"  (jti seen before)
    ├── UseDPoPNonce                      401 use_dpop_nonce     (RFC 9449 9), carries .nonce
    ├── InsufficientScope                 403 insufficient_scope
    ├── KeysUnavailable                   503 (no usable verification keys could be had)
    └── StoreUnavailable                  503 (a store cannot answer a check that fails closed:
        │                                      a DPoP replay check, a stale revocation replica)
        └── StoreFull                         code "store_full"  (a bounded store full of live
                                                                  entries)

    ConfigurationError (ValueError)       raised at construction for a bad option
"""

from __future__ import annotations

__all__ = [
    "AlgorithmNotAllowed",
    "BadSignature",
    "CertificateBindingMismatch",
    "ClaimError",
    "ConfigurationError",
    "DPoPBindingMismatch",
    "DPoPProofExpired",
    "DPoPProofMismatch",
    "DPoPProofReplayed",
    "EncryptedToken",
    "ExpiredToken",
    "InsufficientScope",
    "InvalidClaim",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidToken",
    "IssuedInFuture",
    "JWTGuardError",
    "KeysUnavailable",
    "MalformedToken",
    "MissingClaim",
    "MissingToken",
    "NotYetValid",
    "RevokedToken",
    "StoreFull",
    "StoreUnavailable",
    "TokenTooLarge",
    "TokenTooOld",
    "UnknownKey",
    "UnsupportedHeader",
    "UseDPoPNonce",
    "WrongAudience",
    "WrongIssuer",
]


class ConfigurationError(ValueError):
    """Raised when an option given to jwt_guard is invalid; the message says what to write."""


class JWTGuardError(Exception):
    """Base class of every error jwt_guard raises while checking a request."""

    status: int = 401
    error: str | None = "invalid_token"
    code: str = "invalid_token"
    description: str = "The access token is invalid"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.description
        super().__init__(self.detail)


class MissingToken(JWTGuardError):
    """Raised when a request carries no bearer token at all."""

    status = 401
    error = None
    code = "missing_token"
    description = "Authentication required"


class InvalidRequest(JWTGuardError):
    """Raised when the Authorization header is malformed (RFC 6750 ``invalid_request``)."""

    status = 400
    error = "invalid_request"
    code = "invalid_request"
    description = "The Authorization header is malformed"


class InvalidToken(JWTGuardError):
    """Raised when the bearer token is not acceptable (RFC 6750 ``invalid_token``)."""


class MalformedToken(InvalidToken):
    """Raised when the token is not a well-formed compact JWS carrying a JSON object."""

    code = "malformed"
    description = "The access token is malformed"


class TokenTooLarge(MalformedToken):
    """Raised when the token is longer than the configured size limit."""

    code = "too_large"
    description = "The access token is too large"


class EncryptedToken(MalformedToken):
    """Raised when the token is a five-segment JWE; only signed tokens are accepted."""

    code = "encrypted"
    description = "Encrypted tokens (JWE) are not accepted"


class AlgorithmNotAllowed(InvalidToken):
    """Raised when the token's ``alg`` is missing, ``none``, or outside the allowlist."""

    code = "alg_not_allowed"
    description = "The token's signing algorithm is not allowed"


class UnsupportedHeader(InvalidToken):
    """Raised when the JOSE header uses ``crit``, ``b64`` or a ``typ`` the verifier refuses."""

    code = "bad_header"
    description = "The token's header is not acceptable"


class UnknownKey(InvalidToken):
    """Raised when no trusted key matches the token's ``kid`` and algorithm."""

    code = "unknown_key"
    description = "The token's signing key is not trusted"


class BadSignature(InvalidToken):
    """Raised when the signature does not verify under the selected key."""

    code = "bad_signature"
    description = "The token's signature is invalid"


class ClaimError(InvalidToken):
    """Raised when a claim fails validation; subclasses say which rule."""

    code = "invalid_claim"
    description = "The token's claims are invalid"


class ExpiredToken(ClaimError):
    """Raised when ``exp`` is in the past beyond the leeway."""

    code = "expired"
    description = "The access token expired"


class NotYetValid(ClaimError):
    """Raised when ``nbf`` is in the future beyond the leeway."""

    code = "not_yet_valid"
    description = "The access token is not valid yet"


class IssuedInFuture(ClaimError):
    """Raised when ``iat`` is in the future beyond the leeway."""

    code = "issued_in_future"
    description = "The access token was issued in the future"


class TokenTooOld(ClaimError):
    """Raised when ``iat`` is older than the configured maximum token age."""

    code = "too_old"
    description = "The access token is too old"


class WrongIssuer(ClaimError):
    """Raised when ``iss`` is missing or not a configured issuer."""

    code = "wrong_issuer"
    description = "The access token was issued by an untrusted issuer"


class WrongAudience(ClaimError):
    """Raised when ``aud`` is missing or names none of the configured audiences."""

    code = "wrong_audience"
    description = "The access token is not meant for this audience"


class MissingClaim(ClaimError):
    """Raised when a required claim is absent."""

    code = "missing_claim"
    description = "The access token lacks a required claim"


class InvalidClaim(ClaimError):
    """Raised when a claim has the wrong type or fails a custom check."""

    code = "invalid_claim"
    description = "The token's claims are invalid"


class RevokedToken(ClaimError):
    """Raised when the revocation hook reports the token as revoked."""

    code = "revoked"
    description = "The access token has been revoked"


class InsufficientScope(JWTGuardError):
    """Raised when verified claims lack a scope the route requires (HTTP 403)."""

    status = 403
    error = "insufficient_scope"
    code = "insufficient_scope"
    description = "The access token lacks a required scope"

    def __init__(self, detail: str | None = None, *, scopes: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.scopes = scopes


class KeysUnavailable(JWTGuardError):
    """Raised when no usable verification key can be had from the key source (HTTP 503)."""

    status = 503
    error = "temporarily_unavailable"
    code = "keys_unavailable"
    description = "Token verification is temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 30) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


# -- sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate binding) -------------------


class DPoPBindingMismatch(InvalidToken):
    """Raised when a DPoP binding does not hold: the token's ``cnf.jkt`` is malformed or not the
    RFC 7638 thumbprint of the proof's key, a DPoP-bound token came as ``Bearer``, or a token
    without ``cnf.jkt`` came with the ``DPoP`` scheme (RFC 9449 7.1 answers ``invalid_token``)."""

    code = "dpop_binding"
    description = "Invalid DPoP key binding"


class CertificateBindingMismatch(InvalidToken):
    """Raised when a certificate-bound token's ``cnf["x5t#S256"]`` does not match the client
    certificate, or there is no usable client certificate (RFC 8705 section 3)."""

    code = "cert_binding"
    description = "The access token is not bound to the client certificate"


class InvalidDPoPProof(JWTGuardError):
    """Raised when the ``DPoP`` proof is missing, malformed, badly signed or not acceptable."""

    status = 401
    error = "invalid_dpop_proof"
    code = "invalid_dpop_proof"
    description = "The DPoP proof is invalid"


class DPoPProofMismatch(InvalidDPoPProof):
    """Raised when the proof was made for another method, URL or access token (htm/htu/ath)."""

    code = "dpop_mismatch"
    description = "The DPoP proof does not match the request"


class DPoPProofExpired(InvalidDPoPProof):
    """Raised when the proof's ``iat`` lies outside the accepted window."""

    code = "dpop_expired"
    description = "The DPoP proof is too old or from the future"


class DPoPProofReplayed(InvalidDPoPProof):
    """Raised when a proof's ``jti`` was already used with the same key within the window."""

    code = "dpop_replayed"
    description = "The DPoP proof was already used"


class UseDPoPNonce(JWTGuardError):
    """Raised when the proof lacks the server's current nonce; ``nonce`` is a fresh one, sent
    back in the ``DPoP-Nonce`` response header (RFC 9449 section 9)."""

    status = 401
    error = "use_dpop_nonce"
    code = "use_dpop_nonce"
    description = "Resource server requires nonce in DPoP proof"

    def __init__(self, detail: str | None = None, *, nonce: str) -> None:
        super().__init__(detail)
        self.nonce = nonce


# -- stores -------------------------------------------------------------------------------------


class StoreUnavailable(JWTGuardError):
    """Raised when a store cannot answer a check that fails closed (HTTP 503, ``Retry-After``).

    A DPoP replay check whose store does not answer in time, a revocation replica older than
    its ``max_staleness`` (with ``on_stale="refuse"``), a shared store's reply that is not what
    the protocol allows: the request is refused, never let through unchecked.
    """

    status = 503
    error = "temporarily_unavailable"
    code = "store_unavailable"
    description = "Token verification is temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreFull(StoreUnavailable):
    """Raised when a bounded store is full of live entries and dropping one would be unsafe.

    A replay store that forgot a live key would let a proof be replayed, a deny-list that forgot
    an entry would let a revoked token back in: both refuse the new entry instead.
    """

    code = "store_full"
