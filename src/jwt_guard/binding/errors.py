"""The errors of sender-constrained tokens, in the pattern of :mod:`jwt_guard.errors`.

Each class carries its HTTP meaning as class data (status, the error code of the
``WWW-Authenticate`` challenge, a stable ``code``, a fixed client-safe ``description``); what
exactly went wrong goes into ``str(exc)`` and the log, never into a response.

::

    JWTGuardError
    ├── InvalidDPoPProof                  401 invalid_dpop_proof  (RFC 9449 7.1)
    │   ├── DPoPProofMismatch                 code "dpop_mismatch"  (htm, htu or ath: a proof
    │   │                                                            made for another request)
    │   ├── DPoPProofExpired                  code "dpop_expired"   (iat outside the window)
    │   └── DPoPProofReplayed                 code "dpop_replayed"  (jti seen before)
    ├── UseDPoPNonce                      401 use_dpop_nonce     (RFC 9449 9), carries .nonce
    ├── InvalidToken                      401 invalid_token
    │   ├── DPoPBindingMismatch               code "dpop_binding"   (cnf.jkt is not the proof's key)
    │   └── CertificateBindingMismatch        code "cert_binding"   (cnf x5t#S256, RFC 8705 3)
    └── ReplayCheckUnavailable            503                    (the replay store cannot answer)
        └── ReplayStoreFull                   code "replay_store_full"
"""

from __future__ import annotations

from ..errors import InvalidToken, JWTGuardError

__all__ = [
    "CertificateBindingMismatch",
    "DPoPBindingMismatch",
    "DPoPProofExpired",
    "DPoPProofMismatch",
    "DPoPProofReplayed",
    "InvalidDPoPProof",
    "ReplayCheckUnavailable",
    "ReplayStoreFull",
    "UseDPoPNonce",
]


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
    """Raised when the proof lacks the server's current nonce; ``nonce`` is a fresh one to send
    back in the ``DPoP-Nonce`` response header (RFC 9449 section 9)."""

    status = 401
    error = "use_dpop_nonce"
    code = "use_dpop_nonce"
    description = "Resource server requires nonce in DPoP proof"

    def __init__(self, detail: str | None = None, *, nonce: str) -> None:
        super().__init__(detail)
        self.nonce = nonce


class DPoPBindingMismatch(InvalidToken):
    """Raised when the access token's ``cnf.jkt`` is missing, malformed, or not the RFC 7638
    thumbprint of the proof's key (RFC 9449 7.1 answers ``invalid_token``)."""

    code = "dpop_binding"
    description = "Invalid DPoP key binding"


class CertificateBindingMismatch(InvalidToken):
    """Raised when a certificate-bound token's ``cnf["x5t#S256"]`` does not match the client
    certificate, or there is no usable client certificate (RFC 8705 section 3)."""

    code = "cert_binding"
    description = "The access token is not bound to the client certificate"


class ReplayCheckUnavailable(JWTGuardError):
    """Raised when the replay store cannot answer (unreachable, failing): the proof is refused
    (HTTP 503), never accepted unchecked."""

    status = 503
    error = "temporarily_unavailable"
    code = "replay_store_unavailable"
    description = "Proof verification is temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ReplayStoreFull(ReplayCheckUnavailable):
    """Raised when the in-memory replay store holds its maximum of unexpired entries: a new
    proof is refused (evicting an unexpired entry would let that proof be replayed)."""

    code = "replay_store_full"
