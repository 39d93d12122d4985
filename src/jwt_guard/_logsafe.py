"""The one place where outside text is made safe for a log line (and for a response header).

Every log call that carries bytes the guard did not write itself (a request path, a client
address, a kid, an issuer from a token, a URL or ``Location`` from a key source, exception text)
passes them through :func:`safe`. The result is one line of printable text: control characters
(C0, DEL, C1, and the Unicode line and paragraph separators) are written as escapes, so no field
can forge a line, colour a terminal or hide what follows it. Long values are cut.
"""

from __future__ import annotations

import re
from types import TracebackType

__all__ = ["exc_info", "header_safe", "quoted", "safe"]

_LIMIT = 200
# C0 controls, DEL, C1 controls, the Unicode line/paragraph separators, bidi overrides and
# isolates, zero-width and BOM characters: anything that can break a line or disguise text.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\\\\]"
)


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object, limit: int = _LIMIT) -> str:
    """``value`` as one printable log field: controls escaped, at most ``limit`` characters.

    ``None`` stays ``"-"``; anything not a string is formatted with ``str()`` first (an
    exception's text can hold outside bytes too).
    """
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNSAFE.sub(_escape, text)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


_STAND_INS: dict[type[BaseException], type[Exception]] = {}


def _stand_in(kind: type[BaseException]) -> type[Exception]:
    """An exception class printed like ``kind`` (same name and module) in a traceback."""
    found = _STAND_INS.get(kind)
    if found is None:
        found = type(kind.__name__, (Exception,), {"__module__": kind.__module__})
        if len(_STAND_INS) < 256:  # a few kinds ever reach a log; never grow without bound
            _STAND_INS[kind] = found
    return found


def exc_info(exc: BaseException) -> ExcInfo:
    """``exc`` for ``logger.error(..., exc_info=exc_info(exc))``: its frames, its text escaped.

    A logged traceback ends with the exception's text, which can hold outside bytes (a user's
    ``error_handler`` or observer raising with a request's value in its message). The frames stay
    as they are; the text of the exception and of its causes goes through :func:`safe`.
    """
    top = below = _escaped(exc)
    current = _cause(exc)
    for _ in range(8):  # a cause chain is short; a cycle or a long one is cut
        if current is None:
            break
        below.__cause__ = _escaped(current)
        below, current = below.__cause__, _cause(current)
    return type(top), top, top.__traceback__


def _escaped(exc: BaseException) -> BaseException:
    return _stand_in(type(exc))(safe(exc, 1000)).with_traceback(exc.__traceback__)


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def header_safe(value: str) -> str:
    """Keep only printable ASCII, so a value can never break or smuggle a header line."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in value)


def quoted(value: str) -> str:
    """An RFC 9110 quoted-string: the value between double quotes, ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
