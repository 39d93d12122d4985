"""Option checks shared by every constructor: one message shape, always ``ConfigurationError``.

A bad option value (wrong type, out of range, a misspelt name) must never escape as a raw
``TypeError`` or ``ValueError`` from deep inside: each constructor checks its options here first.
"""

from __future__ import annotations

import datetime
import math

from .errors import ConfigurationError

__all__ = ["duration", "positive_int"]


def duration(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    allow_zero: bool = True,
) -> float:
    """Seconds from a number or a ``datetime.timedelta``; anything else is a ``ConfigurationError``.

    ``owner`` names the class or function the option belongs to (``"TokenVerifier"``), so the
    message says where to look: ``TokenVerifier(leeway=...): must be a number of seconds or a
    datetime.timedelta, not 'str'``.
    """
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"{owner}({name}=...): must be a number of seconds or a datetime.timedelta, "
            f"not {type(value).__name__!r}"
        )
    if not math.isfinite(seconds):
        raise ConfigurationError(f"{owner}({name}=...): must be finite, got {seconds!r}")
    if seconds < minimum or (not allow_zero and seconds == 0):
        bound = f"> {minimum:g}" if not allow_zero and minimum == 0 else f">= {minimum:g}"
        raise ConfigurationError(f"{owner}({name}=...): must be {bound} seconds, got {seconds:g}")
    return seconds


def positive_int(owner: str, name: str, value: object, *, minimum: int = 0) -> int:
    """An ``int`` (not a bool, not a float) of at least ``minimum``, else ``ConfigurationError``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"{owner}({name}=...): must be an integer, not {type(value).__name__!r}"
        )
    if value < minimum:
        raise ConfigurationError(f"{owner}({name}=...): must be >= {minimum}, got {value}")
    return value
