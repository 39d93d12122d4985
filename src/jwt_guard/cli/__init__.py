"""The ``jwt-guard`` command (also ``python -m jwt_guard``).

::

    jwt-guard demo [--serve]            a local issuer + a protected app, and the cases that matter
    jwt-guard inspect TOKEN|-           header and claims, unverified, with what a verifier refuses
    jwt-guard verify TOKEN|- --issuer ... --audience ... [--jwks-url ...|--jwks-file ...]
    jwt-guard mint [--key-file F]       a token from a local issuer whose keys live in F
              [--dpop-key K] [--cert C] bound to a DPoP key (cnf.jkt) or a certificate
    jwt-guard dpop-proof --dpop-key K --url URL [--method M] [--token T] [--nonce N]
                                        a DPoP proof (RFC 9449) for one request
    jwt-guard issuer [--key-file F]     serve discovery + JWKS for those keys on 127.0.0.1
    jwt-guard revoke --store URL --jti X [--until T] | --sub S [--before T] | --token TOKEN
    jwt-guard revocations list|remove --store URL    the fleet's deny-list

Exit codes: 0 success (``verify``: the token is valid), 1 the token was refused, a demo answer
was not the expected one or ``revocations remove`` found no such entry, 2 usage or
configuration error, 3 verification keys (or the store) unavailable,
130 interrupted (Ctrl-C), 141 stdout closed early (``| head -1``; quietly, as SIGPIPE would).
Errors are one line on stderr, and nothing else is (jwt_guard's log lines only with ``-v``);
``--json`` prints one JSON document on stdout instead of text, for errors too.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import NoReturn

from .._version import __version__
from ..errors import ConfigurationError
from ._commands import (
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    Failure,
    configuration_failure,
    json_out,
    one_line,
    run_inspect,
    run_verify,
)
from ._dpop import DEFAULT_DPOP_ALG, run_dpop_proof
from ._local import DEFAULT_AUDIENCE, DEFAULT_PORT, run_issuer, run_mint
from ._revoke import add_revocation_commands, run_revocations, run_revoke

__all__ = ["build_parser", "main"]

DEFAULT_LIFETIME = "5m"

Runner = Callable[[argparse.Namespace], int]


def _run_demo(args: argparse.Namespace) -> int:
    """``jwt-guard demo``; its module (and Werkzeug's server) loads for it alone, not at the
    start of every command."""
    from ._demo import run_demo as run

    return run(args)


RUNNERS: dict[str, Runner] = {
    "demo": _run_demo,
    "inspect": run_inspect,
    "verify": run_verify,
    "mint": run_mint,
    "dpop-proof": run_dpop_proof,
    "issuer": run_issuer,
    "revoke": run_revoke,
    "revocations": run_revocations,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one-line ``Failure``s, not usage dumps."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (see {self.prog} --help)", code="usage", command=self.prog)


def _port(text: str, *, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({lowest}-65535)")
    return port


def _any_port(text: str) -> int:
    return _port(text, lowest=0)


def _fixed_port(text: str) -> int:
    return _port(text, lowest=1)


def _common() -> _Parser:
    """The options every command takes."""
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show jwt_guard's log lines on stderr (-vv: debug, every library)",
    )
    return common


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "token", nargs="?", default="-", help="the token; '-' or nothing reads it from stdin"
    )


def _add_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="JSON file with the issuer's private keys; created if missing (keep it private)",
    )
    parser.add_argument(
        "--port",
        type=_fixed_port,
        default=None,
        help=f"issuer port on 127.0.0.1 (default: the key file's, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--algorithms",
        default="RS256,ES256,EdDSA",
        help="keys to create in a new key file, comma-separated (default RS256,ES256,EdDSA)",
    )
    parser.add_argument(
        "--audience",
        default=None,
        help=f"default 'aud' of a new key file (default {DEFAULT_AUDIENCE})",
    )


def _add_dpop_key(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--dpop-key",
        metavar="FILE",
        required=required,
        help="the client's DPoP key: a private JWK file, created if missing (keep it private)",
    )
    parser.add_argument(
        "--dpop-alg",
        default=None,
        help=f"algorithm of a new DPoP key (default {DEFAULT_DPOP_ALG}); an asymmetric one",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jwt-guard``."""
    parser = _Parser(
        prog="jwt-guard",
        description="Try, inspect, verify and mint JWT bearer tokens, and revoke them across a "
        "fleet (jwt_guard).",
    )
    parser.add_argument("--version", action="version", version=f"jwt-guard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]

    demo = commands.add_parser(
        "demo",
        parents=common,
        help="run a local issuer and a protected app, and show the cases that matter",
    )
    demo.add_argument("--serve", action="store_true", help="keep both running; print curl lines")
    demo.add_argument(
        "--port", type=_any_port, default=0, help="app port on 127.0.0.1 (default 0: any free)"
    )
    demo.add_argument(
        "--issuer-port", type=_any_port, default=0, help="issuer port (default 0: any free)"
    )
    demo.add_argument("--lifetime", default="1h", help="lifetime of --serve tokens (default 1h)")

    inspect = commands.add_parser(
        "inspect",
        parents=common,
        help="decode a token WITHOUT verifying it and list what a verifier refuses",
    )
    _add_token(inspect)
    inspect.add_argument("--issuer", help="the 'iss' you expect: a mismatch shows both")
    inspect.add_argument(
        "--audience", action="append", help="an 'aud' you expect (repeatable): likewise"
    )
    inspect.add_argument("--typ", help="the 'typ' header you expect, e.g. at+jwt: likewise")

    verify = commands.add_parser(
        "verify", parents=common, help="verify a token with the real TokenVerifier"
    )
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
    verify.add_argument("--leeway", type=float, default=60.0, help="clock skew, s (default 60)")
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

    mint = commands.add_parser(
        "mint",
        parents=common,
        help="mint a token from a local issuer's keys",
        description="Mint a token signed by a local issuer's keys. HS256/384/512: a new key "
        "file gets a random secret for --alg (its 'k' member); verify such tokens with "
        "`jwt-guard verify --key-file FILE`.",
    )
    _add_keys(mint)
    mint.add_argument(
        "--alg",
        default=None,
        help="signing algorithm (default: the key file's first key); a new key file gets a key "
        "for it, HS* included",
    )
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
        default=DEFAULT_LIFETIME,
        metavar="DURATION",
        help=f"lifetime: 300, 90s, 15m, 1h, 2d (default {DEFAULT_LIFETIME}); "
        "already expired: --expires-in=-1h",
    )
    _add_dpop_key(mint, required=False)
    mint.add_argument(
        "--cert",
        metavar="FILE",
        help="bind the token to this client certificate (PEM or DER): cnf x5t#S256, RFC 8705",
    )

    proof = commands.add_parser(
        "dpop-proof",
        parents=common,
        help="make a DPoP proof (RFC 9449) for one request",
        description="Print a fresh DPoP proof for one request, signed with the DPoP key a "
        "token from `jwt-guard mint --dpop-key FILE` is bound to. Send it as the `DPoP` "
        "header, with `Authorization: DPoP TOKEN`; every request needs a new one.",
    )
    _add_dpop_key(proof, required=True)
    proof.add_argument("--url", required=True, help="the request's URL (its htu)")
    proof.add_argument("--method", default="GET", help="the request's method (default GET)")
    proof.add_argument(
        "--token", help="the access token it goes with (its hash becomes ath); '-' reads stdin"
    )
    proof.add_argument("--nonce", help="the server's DPoP-Nonce, when it asked for one")

    issuer = commands.add_parser(
        "issuer", parents=common, help="serve discovery + JWKS for a key file"
    )
    _add_keys(issuer)
    add_revocation_commands(commands, common)
    return parser


@contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """Quiet by default: log records go nowhere (not to Python's last-resort stderr handler);
    ``-v`` shows jwt_guard's INFO lines on stderr, ``-vv`` everything at DEBUG."""
    root, package = logging.getLogger(), logging.getLogger("jwt_guard")
    levels = root.level, package.level
    handler: logging.Handler
    if verbosity:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
        if verbosity > 1:
            root.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        package.setLevel(levels[1])


def _report(failure: Failure, command: str, as_json: bool) -> int:
    if as_json:
        json_out({"error": failure.code, "message": str(failure), "exit_code": failure.exit_code})
    else:
        print(f"{command}: error: {one_line(str(failure))}", file=sys.stderr, flush=True)
    return failure.exit_code


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """:func:`build_parser`'s parser, built once: parsing leaves it as it was, and building it
    (some 3 ms) costs more than most commands when ``main`` runs many times in one process."""
    return build_parser()


def _run(argv: list[str]) -> int:
    as_json = "--json" in argv  # known before parsing, so a usage error answers in JSON too
    try:
        args = _parser().parse_args(argv)
    except Failure as failure:
        return _report(failure, failure.command or "jwt-guard", as_json)
    command = f"jwt-guard {args.command}"
    with _logging(args.verbose):
        try:
            code = RUNNERS[args.command](args)
        except BrokenPipeError:
            raise
        except (ConfigurationError, OSError, ValueError) as exc:
            return _report(configuration_failure(exc), command, args.json)
        except Failure as failure:
            return _report(failure, command, args.json)
    sys.stdout.flush()  # a closed pipe shows here, not at exit
    return code


def _silence_closed_streams() -> None:
    """Point stdout and stderr at /dev/null so nothing more is written to a closed pipe
    (Python would otherwise report the failed flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            # not a real file when captured (tests): nothing to redirect
            with suppress(AttributeError, OSError, ValueError):
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jwt-guard`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        _silence_closed_streams()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
