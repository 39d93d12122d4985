"""Server-provided DPoP nonces (RFC 9449 section 9), stateless: an HMAC of a time window.

The nonce of window ``w = floor(now / lifetime)`` is ``base64url(HMAC-SHA256(secret, w))`` cut
to 128 bits. Any worker that holds the secret issues and checks the same values without shared
state; a nonce is accepted during its own window and the next one, so it lives from
``lifetime`` to ``2 * lifetime`` after it was handed out. A missing or stale nonce is answered
with ``use_dpop_nonce`` and a fresh ``DPoP-Nonce`` header.
"""

from __future__ import annotations

import datetime
import hmac
import math
import secrets
import time
from collections.abc import Callable

from .._codec import b64url_encode
from .._options import duration
from ..errors import ConfigurationError

__all__ = ["NONCE_HEADER", "DPoPNonces"]

NONCE_HEADER = "DPoP-Nonce"
"""The response header that carries a fresh nonce (RFC 9449 8.1)."""
MIN_SECRET_BYTES = 32
_CONTEXT = b"jwt_guard DPoP nonce v1\x00"
_NONCE_BYTES = 16


class DPoPNonces:
    """Issues and checks rotating server nonces for DPoP proofs, without storing any.

    Parameters:
        secret: the HMAC key, at least 32 bytes (``str`` is taken as UTF-8). ``None`` (default)
            draws a random one for this process: fine for one process; for several workers or
            hosts configure the same secret everywhere (every worker must accept every
            worker's nonces), and keep it out of logs and source control.
        lifetime: the length of a window (default 120 s; seconds or a ``timedelta``): a
            nonce is accepted from ``lifetime`` to ``2 * lifetime`` after it is issued.
        clock: the ``time.time``-like wall clock the windows follow (a wall clock, so that
            workers on different hosts agree on the window; inject it in tests).

    Example::

        nonces = DPoPNonces(secret=os.environ["DPOP_NONCE_SECRET"])
        DPoPVerifier(nonces=nonces)
        response.headers["DPoP-Nonce"] = nonces.current()   # on any response, to rotate it
    """

    __slots__ = ("_cache", "_clock", "_key", "lifetime")

    def __init__(
        self,
        secret: bytes | str | None = None,
        *,
        lifetime: float | datetime.timedelta = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is None:
            secret = secrets.token_bytes(MIN_SECRET_BYTES)
        elif isinstance(secret, str):
            secret = secret.encode("utf-8")
        elif not isinstance(secret, bytes):
            raise ConfigurationError(
                f"DPoPNonces(secret=...): must be bytes or str, not {type(secret).__name__!r}"
            )
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"DPoPNonces(secret=...): must be at least {MIN_SECRET_BYTES} bytes, got "
                f"{len(secret)} (e.g. secrets.token_urlsafe(32))"
            )
        self._key = secret
        self.lifetime = duration("DPoPNonces", "lifetime", lifetime, minimum=1.0)
        if not callable(clock):
            raise ConfigurationError("DPoPNonces(clock=...): must be a time.time-like callable")
        self._clock = clock
        self._cache: tuple[int, str, str] | None = None  # (window, its nonce, the previous one)

    def __repr__(self) -> str:
        return f"DPoPNonces(lifetime={self.lifetime:g})"  # never the secret

    def _nonce(self, window: int) -> str:
        message = _CONTEXT + window.to_bytes(8, "big", signed=True)
        return b64url_encode(hmac.digest(self._key, message, "sha256")[:_NONCE_BYTES])

    def _pair(self) -> tuple[str, str]:
        window = math.floor(self._clock() / self.lifetime)
        cache = self._cache
        if cache is None or cache[0] != window:
            previous = cache[1] if cache is not None and cache[0] == window - 1 else None
            cache = (window, self._nonce(window), previous or self._nonce(window - 1))
            self._cache = cache  # one tuple, replaced whole: safe across threads
        return cache[1], cache[2]

    def current(self) -> str:
        """The nonce to hand out now (in ``DPoP-Nonce``)."""
        return self._pair()[0]

    def check(self, nonce: str) -> bool:
        """Whether ``nonce`` is the current window's or the previous window's (constant time)."""
        if not isinstance(nonce, str) or not nonce.isascii():
            return False
        current, previous = self._pair()
        given = nonce.encode("ascii")
        # both comparisons run, so the time taken does not say which window matched
        return hmac.compare_digest(given, current.encode()) | hmac.compare_digest(
            given, previous.encode()
        )
