"""The key-source interface: what a verifier asks of wherever an issuer's keys come from.

:class:`KeySource` is a ``typing.Protocol``: any object with its members is one, no base class
needed. The package has three (``StaticKeys``, ``JWKSClient``, ``JWKSFile``); an app can bring its
own through ``Issuer(key_source=...)``. Whatever the source, the keys it hands over are a
:class:`~jwt_guard.keys.jwk.KeySet`, which only ``KeySet.from_jwks`` builds: every key passes the
same checks (:func:`~jwt_guard.keys.jwk.build_key`), and the verifier's algorithm allowlist applies
before any key is looked up.

A source the app brings is called through :class:`CheckedSource`, which holds it to the contract
at run time: something other than a ``KeySet`` coming back, or an exception other than a
``JWTGuardError`` escaping, becomes ``KeysUnavailable`` (503, logged once), never a 500.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Protocol

from .._logsafe import safe
from ..errors import ConfigurationError, JWTGuardError, KeysUnavailable
from ..keys.jwk import KeySet

__all__ = ["CheckedSource", "KeySource", "check_key_source"]

logger = logging.getLogger("jwt_guard.sources")


class KeySource(Protocol):
    """Where one issuer's verification keys come from.

    The verifier calls these members, and nothing else:

    * ``name``: a short description for logs, metrics and ``repr`` (a URL, ``"static"``,
      ``"file:/etc/jwks.json"``); never a key or a secret.
    * ``keys_for(kid)``: the ``KeySet`` to verify a token naming ``kid`` (``None``: the token
      names none). May block (a fetch); raise ``KeysUnavailable`` when no usable set can be had.
      A set without the kid is a fine answer: the token is then refused with ``unknown_key``.
    * ``akeys_for(kid)``: the same from async code (``async def``); never block the event loop.
    * ``current(now=None)``: the set that may answer *right now* without waiting, or ``None``.
      Called on every verified-token cache hit, so it must answer from memory, in a few
      attribute reads: never wait on the network (at most start a background refresh, or, like
      ``JWKSFile``, ``stat`` a local file once per interval). ``now`` is the verifier's
      ``monotonic`` reading when the source exposes that very clock as its ``monotonic``
      attribute (so it need not read it again), else ``None``. A cached token keeps answering
      while this returns the set it was verified with, or one that still holds the same key.
    * ``prefetch()`` / ``aprefetch()`` (``async def``): get keys now (start-up, readiness
      probes); raise ``KeysUnavailable`` if none can be had. A source without I/O does nothing.
    * ``status()``: a health snapshot, a JSON-able dict with at least ``"source"`` (the name)
      and ``"usable"`` (bool: can it answer now?), and by convention ``"keys"``, ``"kids"``,
      ``"stale"`` and ``"last_error"``.

    Build the ``KeySet`` with ``KeySet.from_jwks(jwks, ...)``: the only way to make one, so the
    keys of every source pass the same checks (RSA size, curve points, HMAC length...).
    ``Issuer(key_source=...)`` refuses an object that lacks a member, naming it.

    Example, keys from a secrets manager, re-read every minute::

        class VaultKeys:
            name = "vault:jwt/keys"

            def __init__(self, client):
                self.client, self.keyset, self.read_at = client, None, float("-inf")

            def keys_for(self, kid):
                if time.monotonic() - self.read_at > 60:
                    jwks = self.client.read("jwt/keys")
                    self.keyset, self.read_at = KeySet.from_jwks(jwks), time.monotonic()
                return self.keyset

            async def akeys_for(self, kid):
                return await asyncio.to_thread(self.keys_for, kid)

            def current(self, now=None):
                return self.keyset if time.monotonic() - self.read_at <= 60 else None

            def prefetch(self):
                self.keys_for(None)

            async def aprefetch(self):
                await self.akeys_for(None)

            def status(self):
                return {"source": self.name, "usable": self.keyset is not None}
    """

    @property
    def name(self) -> str:
        """A short description of the source for logs and metrics; never a secret."""
        ...

    def keys_for(self, kid: str | None) -> KeySet:
        """The key set for a token naming ``kid`` (may block; ``KeysUnavailable`` if none)."""
        ...

    async def akeys_for(self, kid: str | None) -> KeySet:
        """Like :meth:`keys_for`, without blocking the event loop."""
        ...

    def current(self, now: float | None = None) -> KeySet | None:
        """The set that may answer now without waiting (``None``: call :meth:`keys_for`)."""
        ...

    def prefetch(self) -> None:
        """Get keys now; ``KeysUnavailable`` if none can be had (nothing to do: return)."""
        ...

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        ...

    def status(self) -> dict[str, Any]:
        """Health snapshot: at least ``{"source": name, "usable": bool}``."""
        ...


_METHODS = ("keys_for", "akeys_for", "current", "prefetch", "aprefetch", "status")
_ASYNC = ("akeys_for", "aprefetch")


def check_key_source(owner: str, value: object) -> None:
    """Raise ``ConfigurationError`` unless ``value`` has every member of :class:`KeySource`
    (``akeys_for`` and ``aprefetch`` as ``async def``), naming what is missing."""
    lacking: list[str] = []
    for member in ("name", *_METHODS):
        try:
            found = getattr(value, member)
        except Exception:  # a property that raises is as good as missing
            found = None
        if member == "name":
            if not isinstance(found, str) or not found:
                lacking.append("name (a non-empty string)")
        elif not callable(found):
            lacking.append(f"{member}()")
        elif member in _ASYNC and not inspect.iscoroutinefunction(found):
            lacking.append(f"{member}() as an async def")
    if lacking:
        raise ConfigurationError(
            f"{owner}(key_source=...): {type(value).__name__!r} is not a KeySource: it lacks "
            f"{', '.join(lacking)} (see jwt_guard.KeySource)"
        )


class CheckedSource:
    """A key source the app brought, as the verifier calls it: held to the contract.

    A ``KeySet`` passes through unchanged; anything else coming back, or an exception that is
    not a ``JWTGuardError``, is logged (ERROR, the first time, with the traceback) and becomes
    ``KeysUnavailable`` (``keys_for``, ``akeys_for``), ``None`` (``current``: the cached token
    is verified again, through ``keys_for``) or an unusable status. A ``JWTGuardError`` the
    source raises on purpose (``KeysUnavailable``, ``UnknownKey``...) passes through.
    """

    __slots__ = ("_told", "monotonic", "source")

    def __init__(self, source: KeySource) -> None:
        self.source = source
        # The verifier passes its monotonic reading to current() when this is its own clock.
        self.monotonic = getattr(source, "monotonic", None)
        self._told = False

    @property
    def name(self) -> str:
        """The source's own name."""
        return self.source.name

    def keys_for(self, kid: str | None) -> KeySet:
        """The source's key set, or ``KeysUnavailable``."""
        try:
            keyset = self.source.keys_for(kid)
        except JWTGuardError:
            raise
        except Exception as exc:
            raise self._failed("keys_for", exc) from exc
        return self._keyset("keys_for", keyset)

    async def akeys_for(self, kid: str | None) -> KeySet:
        """The source's key set, or ``KeysUnavailable``."""
        try:
            keyset = await self.source.akeys_for(kid)
        except JWTGuardError:
            raise
        except Exception as exc:
            raise self._failed("akeys_for", exc) from exc
        return self._keyset("akeys_for", keyset)

    def current(self, now: float | None = None) -> KeySet | None:
        """The source's current set, or ``None``."""
        try:
            keyset = self.source.current(now)
        except Exception as exc:
            self._failed("current", exc)
            return None
        if keyset is None or type(keyset) is KeySet:
            return keyset
        self._wrong_type("current", keyset)
        return None

    def prefetch(self) -> None:
        """The source's prefetch (a failure that is no ``JWTGuardError``: ``KeysUnavailable``)."""
        try:
            self.source.prefetch()
        except JWTGuardError:
            raise
        except Exception as exc:
            raise self._failed("prefetch", exc) from exc

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, awaited."""
        try:
            await self.source.aprefetch()
        except JWTGuardError:
            raise
        except Exception as exc:
            raise self._failed("aprefetch", exc) from exc

    def status(self) -> dict[str, Any]:
        """The source's status; unusable when it fails or lacks ``usable``."""
        try:
            status = self.source.status()
        except Exception as exc:
            return {
                "source": self._name(),
                "usable": False,
                "last_error": str(self._failed("status", exc)),
            }
        if not isinstance(status, dict):
            return {
                "source": self._name(),
                "usable": False,
                "last_error": f"status() returned a {type(status).__name__}, not a dict",
            }
        status.setdefault("source", self._name())
        if not isinstance(status.get("usable"), bool):
            status["usable"] = False
        return status

    # -- the contract broken ---------------------------------------------------------------

    def _name(self) -> str:
        try:
            name = self.source.name
        except Exception:
            return type(self.source).__name__
        return name if isinstance(name, str) else type(self.source).__name__

    def _failed(self, method: str, exc: Exception) -> KeysUnavailable:
        error = KeysUnavailable(
            f"key source {self._name()} failed in {method}(): {type(exc).__name__}"
        )
        if not self._told:
            self._told = True
            logger.error(
                "key source failed source=%s method=%s error=%s",
                safe(self._name()),
                method,
                safe(f"{type(exc).__name__}: {exc}", 300),
                exc_info=exc,
            )
        return error

    def _wrong_type(self, method: str, value: object) -> str:
        detail = (
            f"key source {self._name()}: {method}() returned a {type(value).__name__}, "
            "not a KeySet (build one with KeySet.from_jwks)"
        )
        if not self._told:
            self._told = True
            logger.error(
                "key source broke its contract source=%s detail=%s",
                safe(self._name()),
                safe(detail),
            )
        return detail

    def _keyset(self, method: str, value: object) -> KeySet:
        if type(value) is KeySet:
            return value
        raise KeysUnavailable(self._wrong_type(method, value))
