"""``jwt-guard revoke`` and ``jwt-guard revocations list|remove``: a fleet's deny-list from the
command line.

The store is the fleet's Redis (``--store``, or ``JWT_GUARD_STORE_URL``); every worker following
it refuses a revoked token within milliseconds. Times (``--until``, ``--before``) are epoch
seconds, an ISO 8601 time with a zone (``2025-11-28T12:00:00Z``), or ``+DURATION`` from now
(``+90s``, ``+15m``, ``+1h``, ``+2d``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._codec import loads_object
from ..core.jws import parse
from ..errors import ConfigurationError, JWTGuardError
from ..stores.base import Revocation
from ..stores.fleet import Revocations
from ..stores.memory import DAY
from ._commands import Failure, json_out, one_line, out, parse_duration

__all__ = ["EXIT_UNAVAILABLE", "add_revocation_commands", "run_revocations", "run_revoke"]

EXIT_NOT_FOUND = 1
EXIT_UNAVAILABLE = 3  # as for unavailable keys: a service the command needs did not answer
STORE_ENV = "JWT_GUARD_STORE_URL"
NAMESPACE_ENV = "JWT_GUARD_STORE_NAMESPACE"


def add_revocation_commands(
    commands: argparse._SubParsersAction[Any], common: Sequence[argparse.ArgumentParser]
) -> None:
    """``revoke`` and ``revocations`` on the ``jwt-guard`` parser."""
    revoke = commands.add_parser(
        "revoke",
        parents=[*common, _store_options()],
        help="refuse a token (its jti) or a subject's tokens across a fleet",
        description="Add an entry to the fleet's deny-list: every worker sharing the store "
        "refuses the token (--jti, --token) or the subject's tokens issued before --before "
        "(--sub) as 'revoked' (401), cached tokens included.",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the 'jti' of the token to refuse")
    which.add_argument("--sub", help="the subject whose tokens to refuse ('sign out everywhere')")
    which.add_argument(
        "--token", help="the token itself (its jti and exp are read, unverified); '-': stdin"
    )
    revoke.add_argument(
        "--until",
        metavar="WHEN",
        help="when the entry lapses: the token's exp (default: --token's exp, else 30 days)",
    )
    revoke.add_argument(
        "--before",
        metavar="WHEN",
        help="--sub: refuse tokens issued before this (default: now)",
    )

    listing = commands.add_parser(
        "revocations", help="list or remove entries of the fleet's deny-list"
    )
    actions = listing.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "list", parents=[*common, _store_options()], help="the entries in force, from the store"
    )
    remove = actions.add_parser(
        "remove", parents=[*common, _store_options()], help="take an entry off the list"
    )
    gone = remove.add_mutually_exclusive_group(required=True)
    gone.add_argument("--jti", help="the token entry to remove")
    gone.add_argument("--sub", help="the subject entry to remove")


def _store_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"the fleet's store: redis://, rediss:// or unix:// (default: ${STORE_ENV})",
    )
    options.add_argument(
        "--namespace",
        default=None,
        help=f"the store's key prefix (default: ${NAMESPACE_ENV}, else jwt_guard)",
    )
    options.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per store call (default 2)"
    )
    return options


@contextmanager
def _revocations(args: argparse.Namespace) -> Iterator[tuple[Revocations, str]]:
    """The store named by ``--store`` (or the environment), closed afterwards."""
    url = args.store or os.environ.get(STORE_ENV)
    if not url:
        raise Failure(f"give --store redis://host:6379/0 (or set {STORE_ENV})")
    if url.lower().startswith("memory:"):
        raise Failure(
            "a memory store lives inside one process; give the fleet's store (--store redis://...)"
        )
    namespace = args.namespace or os.environ.get(NAMESPACE_ENV) or "jwt_guard"
    try:
        from ..stores.redis import RedisConnection, RedisRevocationStore
    except ImportError as exc:
        raise Failure(
            f"the Redis client is not installed: pip install 'jwt_guard[redis]' ({exc})",
            code="configuration",
        ) from None
    connection = RedisConnection(url, namespace=namespace, timeout=args.timeout)
    store = RedisRevocationStore(connection)
    try:
        yield Revocations(store), connection.display
    except JWTGuardError as exc:  # StoreUnavailable, StoreFull: the store did not answer
        raise Failure(
            f"the store did not answer: {exc.detail}",
            EXIT_UNAVAILABLE,
            code=exc.code,
        ) from None
    finally:
        store.close()
        connection.close()


def run_revoke(args: argparse.Namespace) -> int:
    """``jwt-guard revoke``: exit 0 once the store holds the entry."""
    now = time.time()
    until = None if args.until is None else _when(args.until, "--until", now)
    jti, sub = args.jti, args.sub
    if args.token is not None:
        if args.before is not None:
            raise Failure("--before goes with --sub, not --token")
        jti, exp = _token_fields(args.token)
        until = until if until is not None else exp
    if jti is not None:
        if args.before is not None:
            raise Failure("--before goes with --sub (a jti names one token)")
        entry = Revocation("jti", jti, until if until is not None else now + 30 * DAY - 1)
    else:
        before = now if args.before is None else _when(args.before, "--before", now)
        lapse = until if until is not None else now + 30 * DAY - 1
        entry = Revocation("sub", sub, lapse, before)
    if entry.until <= now:
        raise Failure(
            f"--until is in the past ({_iso(entry.until)}): that token has expired already"
        )
    with _revocations(args) as (revocations, where):
        _guarded(
            lambda: (
                revocations.revoke(entry.value, entry.until)
                if entry.kind == "jti"
                else revocations.revoke_subject(entry.value, entry.issued_before, entry.until)
            )
        )
    if args.json:
        json_out({"revoked": _plain(entry), "store": where})
    else:
        out(f"revoked {_describe(entry)} (store {where})")
    return 0


def run_revocations(args: argparse.Namespace) -> int:
    """``jwt-guard revocations list|remove``."""
    with _revocations(args) as (revocations, where):
        if args.action == "list":
            entries = _guarded(revocations.list)
            if args.json:
                json_out({"revocations": [_plain(e) for e in entries], "store": where})
            elif not entries:
                out(f"no revocations in force (store {where})")
            else:
                for entry in entries:
                    out(_describe(entry))
            return 0
        kind, value = ("jti", args.jti) if args.jti is not None else ("sub", args.sub)
        removed = _guarded(
            lambda: (
                revocations.unrevoke(value)
                if kind == "jti"
                else revocations.unrevoke_subject(value)
            )
        )
    if args.json:
        json_out({"removed": removed, "kind": kind, "value": value, "store": where})
    elif removed:
        out(f"removed {kind} {one_line(repr(value))} (store {where})")
    else:
        print(  # not a failure of the store: one line on stderr, exit 1 like a refusal
            f"jwt-guard revocations: no entry for {kind} {one_line(repr(value))} (store {where})",
            file=sys.stderr,
            flush=True,
        )
    return 0 if removed else EXIT_NOT_FOUND


def _guarded(call: Callable[[], Any]) -> Any:
    """``call()``, with a bad value (an overlong jti, a time too far ahead) as a usage error."""
    try:
        return call()
    except ConfigurationError as exc:
        raise Failure(str(exc), code="configuration") from None


def _when(text: str, option: str, now: float) -> float:
    """Epoch seconds from ``1764300000``, ``2025-11-28T12:00:00Z`` or ``+1h``."""
    value = text.strip()
    if value.startswith("+"):
        return now + parse_duration(value[1:])
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Failure(
            f"{option} {value!r}: write epoch seconds, an ISO 8601 time with a zone "
            "(2025-11-28T12:00:00Z) or +DURATION (+15m, +1h, +2d)"
        )
    return moment.timestamp()


def _token_fields(value: str) -> tuple[str, float | None]:
    """The ``jti`` and ``exp`` of a token, read without verifying it (it is being revoked)."""
    from ._commands import read_token

    try:
        payload = loads_object(parse(read_token(value)).payload)
    except (JWTGuardError, ValueError) as exc:
        raise Failure(f"--token is not a JWT: {one_line(str(exc))}", code="not_a_jwt") from None
    jti, exp = payload.get("jti"), payload.get("exp")
    if not isinstance(jti, str) or not jti:
        raise Failure("the token has no 'jti' to revoke: revoke its subject instead (--sub)")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        return jti, float(exp)
    return jti, None


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(entry: Revocation) -> str:
    value = one_line(repr(entry.value))
    if entry.kind == "jti":
        return f"jti {value} until {_iso(entry.until)}"
    before = _iso(entry.issued_before or 0.0)
    return f"sub {value} issued before {before} until {_iso(entry.until)}"


def _plain(entry: Revocation) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "value": entry.value,
        "until": entry.until,
        "issued_before": entry.issued_before,
    }
