"""The one place where outside text is made safe for a log line.

Every log call that carries bytes the guard did not write itself (a request path, a client
address, a kid, an issuer from a token, a URL or ``Location`` from a key source, exception text)
passes them through :func:`safe`. The result is one line of printable text: control characters
(C0, DEL, C1, and the Unicode line and paragraph separators) are written as escapes, so no field
can forge a line, colour a terminal or hide what follows it. Long values are cut.
"""

from __future__ import annotations

import re

__all__ = ["safe"]

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
