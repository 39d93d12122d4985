"""``jwt-guard demo``: a local issuer and a protected app on loopback, and a walk through them.

The app is a tiny Werkzeug application behind :class:`~jwt_guard.JWTGuardWSGI`, served by
``werkzeug.serving`` on 127.0.0.1 (both are runtime dependencies, so the demo needs nothing else).
It verifies tokens through OpenID discovery against a :class:`~jwt_guard.testing.LocalIssuer`,
exactly as it would against a real provider.
"""

from __future__ import annotations

import argparse
import http
import io
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from ..core.verifier import TokenVerifier
from ..decorators import require_scopes
from ..guard.middleware import CLAIMS_KEY
from ..testing import LocalIssuer, generate_key
from ..testing._server import ServingThread
from ..wsgi import JWTGuardWSGI
from ._commands import (
    EXIT_REFUSED,
    json_out,
    listen_failure,
    out,
    parse_duration,
    wait_forever,
)
from ._inspect import relative

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Demo", "Step", "demo_app", "run_demo", "running_demo"]

SCOPE = "read:items"
OTHER_ISSUER = "https://other-idp.example.test/"


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, mimetype="application/json")


@require_scopes(SCOPE)
def _items(request: Request) -> Response:
    claims = request.environ[CLAIMS_KEY]
    return _json({"items": ["apple", "pear", "plum"], "for": claims.subject})


def _me(request: Request) -> Response:
    claims = request.environ[CLAIMS_KEY]
    return _json({"sub": claims.subject, "scopes": sorted(claims.scopes)})


def demo_app(verifier: TokenVerifier) -> JWTGuardWSGI:
    """The protected demo app: ``/health`` open, ``/me`` any valid token, ``/items`` a scope."""
    views: dict[str, Callable[[Request], Response]] = {
        "/health": lambda request: _json({"status": "ok"}),
        "/me": _me,
        "/items": _items,
    }

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        request = Request(environ)
        view = views.get(request.path)
        response = _json({"error": "not_found"}, 404) if view is None else view(request)
        return response(environ, start_response)

    return JWTGuardWSGI(app, verifier=verifier, exclude_paths=["/health"], realm="demo")


@dataclass(frozen=True)
class Step:
    """One request of the walk-through and the status it should get."""

    title: str
    path: str
    token: str | None
    expected: int


@dataclass
class Demo:
    """A running issuer and app, with the tokens that show each case."""

    issuer: LocalIssuer
    server: BaseWSGIServer

    @property
    def url(self) -> str:
        """The app's base URL."""
        return f"http://127.0.0.1:{self.server.port}"

    def steps(self, lifetime: float = 300) -> list[Step]:
        """The five cases, each with a freshly minted token."""
        issuer = self.issuer
        now = time.time()
        stranger = generate_key("ES256")  # another issuer's key (EC: made in no time, unlike RSA)
        return [
            Step(
                f"a valid token with scope {SCOPE}",
                "/items",
                issuer.mint(subject="alice", scopes=[SCOPE, "profile"], expires_in=lifetime),
                200,
            ),
            Step("no token at all", "/items", None, 401),
            Step(
                f"a valid token without scope {SCOPE}",
                "/items",
                issuer.mint(subject="bob", scopes=["profile"], expires_in=lifetime),
                403,
            ),
            Step(
                "a token that expired an hour ago",
                "/items",
                issuer.mint(subject="alice", scopes=[SCOPE], issued_at=now - 7200, expires_in=3600),
                401,
            ),
            Step(
                "a token from another issuer",
                "/items",
                issuer.mint(subject="mallory", scopes=[SCOPE], issuer=OTHER_ISSUER, key=stranger),
                401,
            ),
        ]


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's request handler without its access log (the demo prints its own)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Stay quiet."""


class _LogHandler(WSGIRequestHandler):
    """One short line per request, for ``--serve``."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        print(f"  {self.command} {self.path} -> {code}", file=sys.stderr, flush=True)


@contextmanager
def running_demo(app_port: int = 0, issuer_port: int = 0, *, log: bool = False) -> Iterator[Demo]:
    """Start the issuer and the protected app on 127.0.0.1; stop both on exit.

    ``log`` prints one line per request to stderr. A port that is taken is a ``Failure``
    naming it and its option (``--issuer-port``, ``--port``).
    """
    issuer = LocalIssuer(algorithms=("RS256",), port=issuer_port)
    try:
        issuer.start()
    except OSError as exc:
        raise listen_failure(issuer_port, "--issuer-port", exc) from None
    with issuer:
        verifier = TokenVerifier(issuer=issuer.issuer, audience=issuer.audience)
        handler = _LogHandler if log else _QuietHandler
        try:
            listening = _listen(app_port)
        except OSError as exc:
            raise listen_failure(app_port, "--port", exc) from None
        with listening:  # werkzeug serves a duplicate of this socket
            server = make_server(
                "127.0.0.1",
                app_port,
                demo_app(verifier),
                threaded=True,
                request_handler=handler,
                fd=listening.fileno(),
            )
        serving = ServingThread(server, "jwt_guard-demo")  # stops at once, not at a poll
        try:
            yield Demo(issuer, server)
        finally:
            serving.stop(timeout=5)
            server.server_close()


def _listen(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port``, bound here because werkzeug's own bind prints
    its error and exits the process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug would
        sock.bind(("127.0.0.1", port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def _short(token: str) -> str:
    return token if len(token) <= 48 else token[:40] + "..." + token[-6:]


def walk_through(demo: Demo, out: TextIO) -> list[dict[str, Any]]:
    """Send each step's request, print it and its answer; return the results."""
    results: list[dict[str, Any]] = []
    with requests.Session() as session:
        for number, step in enumerate(demo.steps(), 1):
            headers = {} if step.token is None else {"Authorization": f"Bearer {step.token}"}
            response = session.get(demo.url + step.path, headers=headers, timeout=10)
            ok = response.status_code == step.expected
            print(f"\n{number}. {step.title}: expect {step.expected}", file=out)
            print(f"   > GET {step.path}", file=out)
            if step.token is not None:
                print(f"   > Authorization: Bearer {_short(step.token)}", file=out)
            print(
                f"   < {response.status_code} {http.HTTPStatus(response.status_code).phrase}",
                file=out,
            )
            challenge = response.headers.get("WWW-Authenticate")
            if challenge:
                print(f"   < WWW-Authenticate: {challenge}", file=out)
            print(f"   < {response.text}", file=out)
            if not ok:
                print(f"   !! expected {step.expected}", file=out)
            results.append(
                {
                    "title": step.title,
                    "path": step.path,
                    "expected": step.expected,
                    "status": response.status_code,
                    "www_authenticate": challenge,
                    "body": response.text,
                    "ok": ok,
                }
            )
    return results


def curl_commands(demo: Demo, lifetime: float) -> list[tuple[str, str]]:
    """``(title, command)`` for each step, with tokens valid for ``lifetime`` seconds."""
    commands = []
    for step in demo.steps(lifetime):
        auth = "" if step.token is None else f" -H 'Authorization: Bearer {step.token}'"
        title = f"{step.title}: expect {step.expected}"
        commands.append((title, f"curl -i {demo.url}{step.path}{auth}"))
    return commands


def run_demo(args: argparse.Namespace) -> int:
    """``jwt-guard demo``: walk through the five cases, or ``--serve`` and print curl lines."""
    lifetime = parse_duration(args.lifetime)
    with running_demo(args.port, args.issuer_port, log=args.serve) as demo:
        if not args.json:
            out("jwt_guard demo: everything runs on 127.0.0.1\n")
            out(f"  identity provider  {demo.issuer.issuer}   (OpenID discovery + JWKS, RS256)")
            out(f"  protected app      {demo.url}   (a Werkzeug app behind JWTGuardWSGI)")
            out(f"{'':21}/health is open, /me takes any valid token, /items needs {SCOPE}")
        if args.serve:
            _serve(demo, lifetime, args.json)
            return 0
        results = walk_through(demo, io.StringIO() if args.json else sys.stdout)
    ok = all(result["ok"] for result in results)
    if args.json:
        json_out({"ok": ok, "steps": results})
    elif ok:
        out(f"\nAll {len(results)} answers as expected. Keep both running: jwt-guard demo --serve")
    return 0 if ok else EXIT_REFUSED


def _serve(demo: Demo, lifetime: float, as_json: bool) -> None:
    commands = curl_commands(demo, lifetime)
    if as_json:
        json_out(
            {
                "issuer": demo.issuer.issuer,
                "app": demo.url,
                "commands": [{"title": title, "command": cmd} for title, cmd in commands],
            }
        )
    else:
        out(f"\nTry it (the tokens are valid for {relative(lifetime)}):")
        for title, command in commands:
            out(f"\n# {title}\n{command}")
        out("\nPress Ctrl-C to stop.")
    wait_forever()
