"""Snapshot and restore a :class:`LocalIssuer`, install given keys, pin its port.

The pytest plugin shares one issuer across a session and puts it back the way it was after each
test; the ``jwt-guard issuer`` / ``mint`` commands load a persisted key set into one and serve it
on a chosen port. Both need a little more than ``LocalIssuer``'s public methods offer, so this
module (inside the package that owns ``LocalIssuer``) is the one place that reaches inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._issuer import LocalIssuer
from ._keys import SigningKey

__all__ = ["IssuerSnapshot", "pin_port", "use_keys"]


@dataclass(frozen=True)
class IssuerSnapshot:
    """What a test may change on a :class:`LocalIssuer`, captured so it can be put back."""

    keys: tuple[SigningKey, ...]
    current: tuple[tuple[str, SigningKey], ...]
    serials: tuple[tuple[str, int], ...]
    audience: str
    cache_max_age: int | None
    include_secret_keys: bool

    @classmethod
    def capture(cls, issuer: LocalIssuer) -> IssuerSnapshot:
        """Record the issuer's keys, current keys, kid counters and settable options."""
        with issuer._lock:
            return cls(
                keys=tuple(issuer._keys),
                current=tuple(issuer._current.items()),
                serials=tuple(issuer._serials.items()),
                audience=issuer.audience,
                cache_max_age=issuer.cache_max_age,
                include_secret_keys=issuer.include_secret_keys,
            )

    def restore(self, issuer: LocalIssuer) -> None:
        """Put everything back: keys, options, no fault, zero counters, serving."""
        with issuer._lock:
            issuer._keys = list(self.keys)
            issuer._current = dict(self.current)
            issuer._serials = dict(self.serials)
            issuer.audience = self.audience
            issuer.cache_max_age = self.cache_max_age
            issuer.include_secret_keys = self.include_secret_keys
        issuer.set_fault(None)
        issuer.start()
        issuer.reset_counts()


def use_keys(issuer: LocalIssuer, keys: Sequence[SigningKey]) -> None:
    """Replace the issuer's keys by ``keys``; the first key of each algorithm becomes current."""
    if not keys:
        raise ValueError("use_keys needs at least one key")
    current: dict[str, SigningKey] = {}
    for key in keys:
        current.setdefault(key.alg, key)
    with issuer._lock:
        issuer._keys = list(keys)
        issuer._current = current


def pin_port(issuer: LocalIssuer, port: int) -> None:
    """Make a not yet started issuer listen on ``port`` (0: any free port)."""
    if port:
        issuer._server._port = port
