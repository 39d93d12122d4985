"""Small pieces every store uses: argument checks, fork safety, log-once, back-off."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import math
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from .._logsafe import safe
from .._options import duration
from ..errors import ConfigurationError

__all__ = [
    "MAX_VALUE_LENGTH",
    "Backoff",
    "LogOnce",
    "check_namespace",
    "check_on_stale",
    "check_value",
    "digest",
    "instant",
    "logger",
    "reset_after_fork",
    "ttl_seconds",
]

logger = logging.getLogger("jwt_guard.stores")

# The longest jti or sub a deny-list keeps (UTF-8 bytes): a real one is far shorter, and a bound
# keeps a hostile or mistaken value from costing more than its share of memory.
MAX_VALUE_LENGTH = 1024
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: _ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child process forked from now on (weakly held).

    A child starts with one thread: a lock another thread held at the fork stays held, a
    subscriber thread does not exist, a connection is shared with the parent. Each store
    rebuilds what it needs in the child, lazily.
    """
    _FORK_AWARE.add(obj)


def _reset_all() -> None:
    for obj in list(_FORK_AWARE):
        with contextlib.suppress(Exception):  # one broken object must not break the others
            obj._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_reset_all)


def check_value(owner: str, name: str, value: object) -> str:
    """A ``jti`` or ``sub``: a non-empty string of at most ``MAX_VALUE_LENGTH`` UTF-8 bytes."""
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{owner}({name}=...): must be a string, not {type(value).__name__!r}"
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"{owner}({name}=...): not encodable as UTF-8") from exc
    if not 0 < size <= MAX_VALUE_LENGTH:
        raise ConfigurationError(
            f"{owner}({name}=...): must be 1 to {MAX_VALUE_LENGTH} bytes long, got {size}"
        )
    return value


def instant(owner: str, name: str, value: object) -> float:
    """Epoch seconds from a number or an aware ``datetime``; else ``ConfigurationError``."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"{owner}({name}=...): a naive datetime is ambiguous; give it a tzinfo "
                "(datetime.timezone.utc) or pass epoch seconds"
            )
        seconds = value.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"{owner}({name}=...): must be epoch seconds or an aware datetime, "
            f"not {type(value).__name__!r}"
        )
    if not math.isfinite(seconds) or seconds < 0 or seconds >= 1e11:
        raise ConfigurationError(f"{owner}({name}=...): not a usable time: {seconds!r}")
    return seconds


def ttl_seconds(owner: str, value: object) -> float:
    """A positive duration for ``ttl`` (number or ``timedelta``); else ``ConfigurationError``."""
    return duration(owner, "ttl", value, allow_zero=False)


def check_namespace(owner: str, value: object) -> str:
    """The key prefix: letters, digits, ``_ . -``, at most 64 characters."""
    if not isinstance(value, str) or not _NAMESPACE.fullmatch(value):
        raise ConfigurationError(
            f"{owner}(namespace=...): must be 1 to 64 of A-Z a-z 0-9 _ . -, got {safe(value)!r}"
        )
    return value


def check_on_stale(owner: str, value: object) -> bool:
    """``on_stale``: ``"refuse"`` (``True``: refuse when stale) or ``"accept"``."""
    if value not in ("refuse", "accept"):
        raise ConfigurationError(
            f"{owner}(on_stale=...): must be 'refuse' or 'accept', got {safe(value)!r}"
        )
    return value == "refuse"


def digest(value: str) -> str:
    """A fixed-length name for outside text inside a store key (SHA-256, hex)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class LogOnce:
    """Logs a problem the first time it is seen, then only when it changes or after recovery.

    A dead store or a hostile value is seen on every call; the log gets one line per episode
    (``key`` names the place, ``fingerprint`` what went wrong there), not one per call.
    """

    def __init__(self, limit: int = 256) -> None:
        self._seen: dict[str, str] = {}
        self._limit = limit
        self._lock = threading.Lock()
        reset_after_fork(self)

    def problem(self, key: str, fingerprint: str, message: str, *args: object) -> bool:
        """Log ``message`` at WARNING unless ``key`` is already known to have this problem."""
        with self._lock:
            if self._seen.get(key) == fingerprint:
                return False
            if key not in self._seen and len(self._seen) >= self._limit:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = fingerprint
        logger.warning(message, *args)
        return True

    def recovered(self, key: str, message: str | None = None, *args: object) -> None:
        """Forget ``key``'s problem (logging ``message`` at INFO if there was one)."""
        with self._lock:
            had = self._seen.pop(key, None) is not None
        if had and message is not None:
            logger.info(message, *args)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


class Backoff:
    """Reconnect delays: exponential with full jitter, between ``base`` and ``cap`` seconds."""

    def __init__(
        self, base: float, cap: float, rand: Callable[[float, float], float] | None = None
    ) -> None:
        self.base, self.cap = base, cap
        self._rand = rand or secrets.SystemRandom().uniform
        self._attempt = 0

    def reset(self) -> None:
        """After a success: the next failure waits ``base`` again."""
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.cap, self.base * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return self._rand(self.base / 2, max(self.base / 2, ceiling))
