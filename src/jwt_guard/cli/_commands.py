"""Shared pieces of the ``jwt-guard`` subcommands, and ``inspect`` and ``verify`` themselves.

``demo`` lives in :mod:`jwt_guard.cli._demo`, ``mint`` and ``issuer`` in
:mod:`jwt_guard.cli._local`; :mod:`jwt_guard.cli` only parses the arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._logsafe import safe
from ..core.verifier import TokenVerifier
from ..errors import ConfigurationError, JWTGuardError, KeysUnavailable
from ..guard.middleware import challenge
from ..sources.file import JWKSFile
from ._inspect import Expected, inspect_token, relative, render
from ._keyfile import KeyFile

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NO_KEYS",
    "EXIT_PIPE",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "Failure",
    "configuration_failure",
    "json_out",
    "listen_failure",
    "one_line",
    "out",
    "parse_duration",
    "read_token",
    "run_inspect",
    "run_verify",
    "wait_forever",
]

EXIT_REFUSED, EXIT_USAGE, EXIT_NO_KEYS = 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_PIPE = 141  # 128 + SIGPIPE: stdout was closed early (``| head -1``), as `yes | head` says
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\Z")
_UNITS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class Failure(Exception):
    """A command failed for a reason worth one line; ``exit_code`` is what the process returns.

    ``code`` names the kind of failure in ``--json`` output (``usage``, ``configuration``,
    ``listen``, ``not_a_jwt``); ``command`` is the command it belongs to, when it differs from
    the one that ran (a usage error is raised before any runs).
    """

    def __init__(
        self,
        message: str,
        exit_code: int = EXIT_USAGE,
        *,
        code: str = "usage",
        command: str | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.command = command


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters escaped (a token's bytes included)."""
    return safe(text, limit=2000)


def out(text: str = "") -> None:
    print(text, flush=True)


def json_out(document: Any) -> None:
    out(json.dumps(document, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse_duration(text: str) -> float:
    """Seconds from ``"300"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` (negative allowed)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise Failure(f"{text!r} is not a duration; write e.g. 300, 90s, 15m, 1h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def read_token(value: str) -> str:
    """The token argument, or stdin for ``-``; a leading ``Bearer`` is dropped."""
    if value == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise Failure("give a TOKEN argument or pipe one in on stdin")
        value = sys.stdin.read()
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise Failure("the token is empty")
    return token


def wait_forever() -> None:
    """Block until Ctrl-C (SIGINT), then say so."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out("stopped")


# -- inspect and verify ----------------------------------------------------------------------


def run_inspect(args: argparse.Namespace) -> int:
    """``jwt-guard inspect``: decode without verifying; exit 0 whenever it decodes."""
    try:
        expected = Expected(args.issuer, tuple(args.audience or ()), args.typ)
        result = inspect_token(read_token(args.token), time.time(), expected)
    except ValueError as exc:
        raise Failure(str(exc), EXIT_REFUSED, code="not_a_jwt") from None
    if args.json:
        json_out(result.as_json())
    else:
        out(render(result))
    return 0


def _verifier(args: argparse.Namespace) -> TokenVerifier:
    issuer, audience = args.issuer, args.audience
    jwks: dict[str, Any] | None = None
    key_source: JWKSFile | None = None
    if args.key_file:
        keyfile = KeyFile.load(Path(args.key_file))
        issuer = issuer or keyfile.issuer
        audience = audience or [keyfile.audience]
        jwks = keyfile.jwks()
    elif args.jwks_file:
        try:  # the file source a server would use, read once
            key_source = JWKSFile(args.jwks_file, reload=None)
        except ConfigurationError as exc:
            raise Failure(f"--jwks-file {args.jwks_file!r}: {exc}") from None
    if not issuer:
        raise Failure("--issuer is required: the exact 'iss' your provider puts in tokens")
    if not audience and not args.any_audience:
        raise Failure("--audience is required: the 'aud' your API expects (or --any-audience)")
    options: dict[str, Any] = {
        "issuer": issuer,
        "audience": audience,
        "jwks_url": args.jwks_url,
        "jwks": jwks,
        "key_source": key_source,
        "leeway": args.leeway,
        "typ": args.typ,
        "max_age": args.max_age,
        "required_claims": args.require_claim,
        "token_cache_size": 0,
    }
    if jwks is None and key_source is None:  # a remote JWKS: the only place the option applies
        options["jwks_options"] = {"allow_http": args.allow_http}
    if args.algorithms:
        options["algorithms"] = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if args.scope_claim:
        options["scope_claims"] = args.scope_claim
    return TokenVerifier(**options)


def run_verify(args: argparse.Namespace) -> int:
    """``jwt-guard verify``: exit 0 when valid, 1 when refused, 3 when keys are unavailable."""
    token = read_token(args.token)
    verifier = _verifier(args)
    try:
        claims = verifier.verify(token)
    except JWTGuardError as exc:
        return _report_refusal(exc, args.json)
    expires = claims.expires_at
    if args.json:
        json_out(
            {
                "valid": True,
                "claims": dict(claims),
                "scopes": sorted(claims.scopes),
                "audience_checked": not args.any_audience,
            }
        )
        return 0
    out("valid")
    out(f"  issuer    {claims.issuer}")
    out(f"  subject   {claims.subject}")
    out(f"  audience  {' '.join(claims.audience) or '-'}")
    out(f"  scopes    {' '.join(sorted(claims.scopes)) or '-'}")
    if expires is not None:
        left = expires.timestamp() - time.time()
        out(f"  expires   {expires:%Y-%m-%d %H:%M:%S} UTC (in {relative(left)})")
    if args.any_audience:
        out("  note      --any-audience: the audience was NOT checked")
    out("claims:")
    out("  " + json.dumps(dict(claims), indent=2, default=_plain).replace("\n", "\n  "))
    return 0


def _report_refusal(exc: JWTGuardError, as_json: bool) -> int:
    """One line on stderr (or a JSON document): the check that failed, ``str(exc)`` with what
    the token said and what was expected, and the answer an API would give (whose body never
    carries that detail)."""
    code = EXIT_NO_KEYS if isinstance(exc, KeysUnavailable) else EXIT_REFUSED
    header = None if isinstance(exc, KeysUnavailable) else challenge(exc)
    detail = str(exc)
    if as_json:
        json_out(
            {
                "valid": False,
                "error": exc.code,
                "error_class": type(exc).__name__,
                "detail": detail,
                "status": exc.status,
                "www_authenticate": header,
            }
        )
        return code
    answer = f"an API would answer {exc.status}"
    if header is not None:
        answer += f" with WWW-Authenticate: {header}"
    line = f"invalid: {exc.code} ({type(exc).__name__}): {one_line(detail)}; {answer}"
    print(line, file=sys.stderr, flush=True)
    return code


def configuration_failure(exc: ConfigurationError | OSError | ValueError) -> Failure:
    """A one-line ``Failure`` for an error raised while setting a command up."""
    if isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        return Failure(message, code="configuration")
    return Failure(str(exc), code="configuration")


def listen_failure(port: int, option: str, exc: OSError) -> Failure:
    """The one shape of "this port is taken" for every command that listens."""
    reason = exc.strerror or str(exc)
    return Failure(f"cannot listen on 127.0.0.1:{port} ({option}): {reason}", code="listen")
