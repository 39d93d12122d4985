"""The ``jwt-guard`` command (also ``python -m jwt_guard``).

::

    jwt-guard demo [--serve]            a local issuer + a protected app, and the cases that matter
    jwt-guard inspect TOKEN|-           header and claims, unverified, with what a verifier refuses
    jwt-guard verify TOKEN|- --issuer ... --audience ... [--jwks-url ...|--jwks-file ...]
    jwt-guard mint [--key-file F]       a token from a local issuer whose keys live in F
    jwt-guard issuer [--key-file F]     serve discovery + JWKS for those keys on 127.0.0.1

Exit codes: 0 success (``verify``: the token is valid), 1 the token was refused or a demo answer
was not the expected one, 2 usage or configuration error, 3 verification keys unavailable.
Errors are one line on stderr; ``--json`` prints one JSON document on stdout instead of text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from ._commands import Failure, configuration_failure, run_inspect, run_verify
from ._demo import run_demo
from ._local import DEFAULT_AUDIENCE, DEFAULT_PORT, run_issuer, run_mint
from .errors import ConfigurationError

__all__ = ["build_parser", "main"]


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "token", nargs="?", default="-", help="the token; '-' or nothing reads it from stdin"
    )


def _add_keys(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="JSON file with the issuer's private keys"
        + ("; created if missing (keep it private)" if creating else ""),
    )
    if creating:
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"issuer port on 127.0.0.1 (default: the key file's, else {DEFAULT_PORT})",
        )
        parser.add_argument(
            "--algorithms",
            default="RS256,ES256,EdDSA",
            help="keys to create in a new key file (comma-separated; default RS256,ES256,EdDSA)",
        )
        parser.add_argument(
            "--audience",
            default=None,
            help=f"default 'aud' of a new key file (default {DEFAULT_AUDIENCE})",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jwt-guard``."""
    parser = argparse.ArgumentParser(
        prog="jwt-guard",
        description="Try, inspect, verify and mint JWT bearer tokens (jwt_guard).",
    )
    parser.add_argument("--version", action="version", version=f"jwt-guard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run a local issuer and a protected app, and show the cases that matter"
    )
    demo.add_argument("--serve", action="store_true", help="keep both running; print curl lines")
    demo.add_argument("--port", type=int, default=0, help="app port on 127.0.0.1 (default: any)")
    demo.add_argument("--issuer-port", type=int, default=0, help="issuer port (default: any)")
    demo.add_argument(
        "--lifetime", type=str, default="1h", help="lifetime of --serve tokens (default 1h)"
    )
    _add_json(demo)

    inspect = commands.add_parser(
        "inspect", help="decode a token WITHOUT verifying it and list what a verifier refuses"
    )
    _add_token(inspect)
    _add_json(inspect)

    verify = commands.add_parser("verify", help="verify a token with the real TokenVerifier")
    _add_token(verify)
    verify.add_argument("--issuer", help="the trusted 'iss' (default: the key file's)")
    audience = verify.add_mutually_exclusive_group()
    audience.add_argument(
        "--audience", action="append", help="accepted 'aud' (repeatable; default: the key file's)"
    )
    audience.add_argument(
        "--any-audience", action="store_true", help="do not check 'aud' (say so explicitly)"
    )
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--jwks-url", help="JWKS URL (default: OpenID discovery from --issuer)")
    source.add_argument("--jwks-file", metavar="FILE", help="a JWK Set in a local JSON file")
    source.add_argument("--key-file", metavar="FILE", help="a jwt-guard key file (see mint)")
    verify.add_argument("--algorithms", help="allowlist, comma-separated (default: all)")
    verify.add_argument("--leeway", type=float, default=60.0, help="clock skew, seconds (60)")
    verify.add_argument("--typ", help="required 'typ' header, e.g. at+jwt")
    verify.add_argument("--max-age", type=float, help="refuse tokens whose iat is older (s)")
    verify.add_argument(
        "--scope-claim",
        action="append",
        help="claim path holding scopes (repeatable; default: scope, scp)",
    )
    verify.add_argument(
        "--require-claim", action="append", default=[], help="claim that must be present"
    )
    verify.add_argument("--allow-http", action="store_true", help="allow http:// off loopback")
    _add_json(verify)

    mint = commands.add_parser("mint", help="mint a token from a local issuer's keys")
    _add_keys(mint, creating=True)
    mint.add_argument("--alg", default=None, help="signing algorithm (default: the first key's)")
    mint.add_argument("--sub", default="user-1", help="subject (default user-1)")
    mint.add_argument("--aud", action="append", help="audience (repeatable; default: the file's)")
    mint.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    mint.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra claim; VALUE is JSON if it parses, else a string (repeatable)",
    )
    mint.add_argument(
        "--expires-in",
        default="5m",
        help="lifetime: 300, 90s, 15m, 1h, 2d; already expired: --expires-in=-1h",
    )
    _add_json(mint)

    issuer = commands.add_parser("issuer", help="serve discovery + JWKS for a key file")
    _add_keys(issuer, creating=True)
    _add_json(issuer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jwt-guard`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    runners = {
        "demo": run_demo,
        "inspect": run_inspect,
        "verify": run_verify,
        "mint": run_mint,
        "issuer": run_issuer,
    }
    try:
        return runners[args.command](args)
    except (ConfigurationError, OSError, ValueError) as exc:
        failure = configuration_failure(exc)
    except Failure as exc:
        failure = exc
    except KeyboardInterrupt:
        return 130
    print(f"jwt-guard {args.command}: error: {failure}", file=sys.stderr)
    return failure.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
