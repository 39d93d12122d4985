"""The file key source: a JWK Set in a local file, re-read when the file changes.

For keys that a deployment puts on disk (a mounted Kubernetes secret, a file a rotation job
rewrites): no network, and no restart to rotate.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from .._codec import loads_object
from .._logsafe import safe
from .._options import duration, positive_int
from ..errors import ConfigurationError
from ..events import GuardObserver, emit
from ..keys.jwk import KeySet
from ._singleflight import reset_after_fork

__all__ = ["JWKSFile"]

logger = logging.getLogger("jwt_guard.sources")

_OWNER = "JWKSFile"

# What identifies one version of the file: device, inode, size, modification time (ns). An
# atomic replace (rename, a Kubernetes secret's symlink swap) changes the inode; an edit in
# place changes the time.
_Stamp = tuple[int, int, int, int]


class JWKSFile:
    """A :class:`~jwt_guard.sources.base.KeySource` reading a JWK Set (``{"keys": [...]}``) from
    a local file, and again whenever the file changes.

    Every key passes the same checks as a static set's (``KeySet.from_jwks(..., strict=True)``):
    a malformed or weak key makes the file unusable. The file is read at construction (a
    ``ConfigurationError`` if it cannot be, so a wrong path fails at start-up). After that, at
    most once per ``reload`` seconds (on the monotonic clock) the request that comes first
    checks the file's identity and modification time with one ``stat``; the file is read only
    when they changed. A file that turns unreadable, invalid or holds no usable key is logged
    once (WARNING, logger ``jwt_guard.sources``) and the last good key set keeps serving
    (``status()`` says ``stale`` with the reason) until a good version appears.

    Args:
        path: the file (made absolute at construction).
        reload: how often, at most, to check the file for a change (seconds or a
            ``timedelta``; default 10 s). ``0`` checks on every request; ``None`` reads the
            file once.
        algorithms: the algorithms keys may be bound to (default all; the verifier's
            allowlist applies in any case).
        allow_oct: accept symmetric (``oct``) keys, as a static set does (default True: the
            file is yours, not served to anyone). Keep such a file readable by the app only.
        max_bytes: the largest file accepted (default 512 KiB).
        monotonic: ``time.monotonic``-like callable the interval runs on (inject in tests).
        observer: a ``GuardObserver`` told of each read (``keys_fetched``) and each unusable
            version of the file (``keys_failed``).

    Example::

        from jwt_guard import Issuer, TokenVerifier
        from jwt_guard.sources import JWKSFile

        verifier = TokenVerifier(
            issuers=[Issuer("https://idp.example.com/", "my-api",
                            key_source=JWKSFile("/etc/jwt/jwks.json", reload=30))]
        )
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reload: float | timedelta | None = 10.0,
        algorithms: Iterable[str] | None = None,
        allow_oct: bool = True,
        max_bytes: int = 512 * 1024,
        monotonic: Callable[[], float] = time.monotonic,
        observer: GuardObserver | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigurationError(
                f"{_OWNER}(path=...): must be a file path, not {type(path).__name__!r}"
            )
        self.path = os.path.abspath(os.fspath(path))
        self.reload = None if reload is None else duration(_OWNER, "reload", reload)
        if algorithms is not None and (
            isinstance(algorithms, str) or not all(isinstance(a, str) for a in algorithms)
        ):
            raise ConfigurationError(f"{_OWNER}(algorithms=...): must be a list of names")
        self.algorithms = tuple(algorithms) if algorithms is not None else None
        if not isinstance(allow_oct, bool):
            raise ConfigurationError(f"{_OWNER}(allow_oct=...): must be True or False")
        self.allow_oct = allow_oct
        self.max_bytes = positive_int(_OWNER, "max_bytes", max_bytes, minimum=1)
        if not callable(monotonic):
            raise ConfigurationError(f"{_OWNER}(monotonic=...): must be a callable")
        self.monotonic = monotonic
        self.observer = observer
        self._lock = threading.Lock()
        self.reads = 0  # successful reads of the file, the first included
        self.last_error: str | None = None  # why the file on disk is not the set in use
        self._broken: _Stamp | str | None = None  # the unusable version already logged
        started = time.perf_counter()
        try:
            self.keyset, self._stamp = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{_OWNER}({self.path!r}): {_reason(exc)}") from None
        self._read_at = monotonic()
        self._next_check = self._read_at + self.reload if self.reload is not None else _NEVER
        self._loaded(self.keyset, None, time.perf_counter() - started)
        reset_after_fork(self)

    def __repr__(self) -> str:
        return f"JWKSFile({self.path!r}, reload={self.reload!r})"

    @property
    def name(self) -> str:
        """``file:`` and the path, for logs and metrics."""
        return f"file:{self.path}"

    # -- answering -------------------------------------------------------------------------

    def current(self, now: float | None = None) -> KeySet:
        """The key set in use; checks the file first when ``reload`` seconds have passed."""
        if now is None:
            now = self.monotonic()
        if now >= self._next_check:
            self._check(now)
        return self.keyset

    def keys_for(self, kid: str | None) -> KeySet:
        """Like :meth:`current` (a kid the set lacks waits for the next check, like any)."""
        return self.current()

    async def akeys_for(self, kid: str | None) -> KeySet:
        """Like :meth:`keys_for` (the check is one ``stat``; a read only after a change)."""
        return self.current()

    def prefetch(self) -> None:
        """Check the file now, whatever the interval (start-up, readiness); nothing to do with
        ``reload=None``. Never raises: the last good set serves whatever the file holds."""
        if self.reload is not None:
            self._check(self.monotonic(), force=True)

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`."""
        self.prefetch()

    def status(self) -> dict[str, Any]:
        """Health snapshot; ``stale`` (with ``last_error``) while the file on disk is unusable
        and the last good set serves."""
        keyset = self.keyset
        return {
            "source": self.name,
            "keys": len(keyset),
            "kids": sorted(keyset.kids),
            "age": max(0.0, self.monotonic() - self._read_at),
            "reads": self.reads,
            "stale": self.last_error is not None,
            "usable": True,
            "last_error": self.last_error,
        }

    # -- reading ---------------------------------------------------------------------------

    def _check(self, now: float, *, force: bool = False) -> None:
        """Re-read the file if it changed. One thread at a time; the others serve the set in
        use meanwhile (a check never makes a request wait on another's)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not force and now < self._next_check:
                return  # another thread checked meanwhile
            if self.reload is not None:
                self._next_check = now + self.reload
            try:
                stamp: _Stamp | str = _version(os.stat(self.path))
            except OSError as exc:
                stamp = f"{type(exc).__name__} {exc.errno}"
                self._unusable(stamp, _reason(exc))
                return
            if stamp == self._stamp:  # unchanged (or back to the version in use)
                self.last_error, self._broken = None, None
                return
            if stamp == self._broken:
                return  # the same unusable version: read once, logged once
            started = time.perf_counter()
            try:
                keyset, read = self._read()
            except (OSError, ValueError) as exc:
                self._unusable(stamp, _reason(exc))
                return
            old, self.keyset, self._stamp = self.keyset, keyset, read
            self._read_at = self.monotonic()
            self.last_error, self._broken = None, None
            self._loaded(keyset, old, time.perf_counter() - started)
        finally:
            self._lock.release()

    def _read(self) -> tuple[KeySet, _Stamp]:
        """The file's key set and the version it was read from (``OSError``/``ValueError``)."""
        with open(self.path, "rb") as file:
            stamp = _version(os.fstat(file.fileno()))
            data = file.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ValueError(f"the file is larger than max_bytes ({self.max_bytes})")
        document = loads_object(data)
        keyset = KeySet.from_jwks(
            document,
            algorithms=self.algorithms,
            allow_oct=self.allow_oct,
            source=self.name,
            strict=True,
        )
        return keyset, stamp

    def _after_fork(self) -> None:
        # In a forked child: another thread of the parent may have held the lock at the fork.
        self._lock = threading.Lock()

    # -- logs and events -------------------------------------------------------------------

    def _loaded(self, keyset: KeySet, old: KeySet | None, seconds: float) -> None:
        self.reads += 1
        before = old.kids if old is not None else frozenset()
        logger.info(
            "jwks file read source=%s keys=%d ms=%.1f added=%s removed=%s",
            safe(self.name),
            len(keyset),
            seconds * 1000,
            safe(sorted(keyset.kids - before)),
            safe(sorted(before - keyset.kids)),
        )
        if self.observer is not None:
            emit(self.observer.keys_fetched, self.name, len(keyset), seconds)

    def _unusable(self, stamp: _Stamp | str, error: str) -> None:
        self.last_error = error
        if stamp == self._broken:
            return  # this version was logged already
        self._broken = stamp
        logger.warning(
            "jwks file unusable source=%s error=%s serving=last good set (keys=%d)",
            safe(self.name),
            safe(error, 300),
            len(self.keyset),
        )
        if self.observer is not None:
            emit(self.observer.keys_failed, self.name, error)


_NEVER = float("inf")


def _version(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or type(exc).__name__}"
    return str(exc) or type(exc).__name__
