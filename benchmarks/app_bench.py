"""Starlette behind ``JWTGuard`` and Flask behind ``JWTGuardWSGI``, driven in process.

No sockets: the ASGI app is awaited with a scope and ``receive``/``send`` callables, the WSGI
callable is called with an environ and ``start_response``, so the figures are the cost of the
app and its middleware alone. Every response must be a 200 or the run stops.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from jwt_guard import TokenVerifier

from ._fixtures import Bench
from ._report import Row, verdict
from ._timing import Batch, Stats, cycle, fmt_rps, interleave
from .reference_pyjwt import PyJWTASGIMiddleware, PyJWTVerifier, PyJWTWSGIMiddleware

REPEAT_POOL = 16  # distinct tokens cycled when "tokens repeat"
_HELLO = "Hello, world!"


class MinimalASGI:
    """The least any token middleware does for a repeated token, as a ceiling for the ratio.

    Find the ``Authorization`` header, look its raw value up in a dict, put the result in the
    scope: no parsing, no validation, no time checks, no ``request.user``.
    """

    def __init__(self, app: Any, known: dict[bytes, Any]) -> None:
        self.app = app
        self.known = known

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scope["jwt.claims"] = self.known.get(value)
                    break
        await self.app(scope, receive, send)


class MinimalWSGI:
    """:class:`MinimalASGI` for WSGI: one environ read, one dict lookup, one environ write."""

    def __init__(self, app: Any, known: dict[str, Any]) -> None:
        self.app = app
        self.known = known

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["jwt.claims"] = self.known.get(environ.get("HTTP_AUTHORIZATION"))
        return self.app(environ, start_response)  # type: ignore[no-any-return]


class _Fixture:
    """An RS256 issuer of its own (its JWKS holds only what the guards may use), and tokens."""

    def __init__(self, bench: Bench) -> None:
        mode = bench.mode
        self.issuer = bench.rsa_issuer()
        mint = self.issuer.mint
        self.repeating = [mint(scopes=["read"], expires_in=3600) for _ in range(REPEAT_POOL)]
        self.new = [mint(scopes=["read"], expires_in=3600) for _ in range(mode.app_new_tokens)]

    def close(self) -> None:
        self.issuer.stop()

    def verifier(self) -> TokenVerifier:
        """A jwt_guard verifier on the remote JWKS, warmed up (keys fetched), cache empty."""
        verifier = TokenVerifier(
            issuer=self.issuer.issuer,
            audience=self.issuer.audience,
            jwks_url=self.issuer.jwks_url,
            algorithms=["RS256"],
        )
        verifier.prefetch()  # the JWKS fetch happens here, outside any timing
        return verifier

    def reference(self) -> PyJWTVerifier:
        reference = PyJWTVerifier(
            self.issuer.jwks_url, audience=self.issuer.audience, issuer=self.issuer.issuer
        )
        reference.verify(self.repeating[0])  # fetch and cache the key
        return reference


def _rows(
    section: str,
    kind: str,
    stats: dict[str, Stats],
    results: dict[str, Any],
    mode_key: str,
) -> list[Row]:
    rps = {name: 1.0 / s.best for name, s in stats.items()}
    repeat = rps["guard_repeat"] / rps["bare"]
    new = rps["guard_new"] / rps["reference_new"]
    minimal = rps["minimal_repeat"] / rps["bare"]
    results[mode_key] = {
        "rps": rps,
        "stats": {k: s.as_json() for k, s in stats.items()},
        "repeat_vs_bare": repeat,
        "new_vs_reference": new,
        "minimal_vs_bare": minimal,
    }
    guard = "JWTGuard" if kind == "Starlette" else "JWTGuardWSGI"
    where = "scope" if kind == "Starlette" else "environ"
    return [
        Row(
            key=f"{mode_key}.repeat_vs_bare",
            section=section,
            label=f"{kind} + {guard}, tokens repeat vs bare {kind}",
            value=fmt_rps(rps["guard_repeat"]),
            baseline=fmt_rps(rps["bare"]),
            ratio=repeat,
            target=">= 0.85x",
            status=verdict(repeat >= 0.85),
        ),
        Row(
            key=f"{mode_key}.minimal_vs_bare",
            section=section,
            label=f"  ceiling: minimal middleware (header -> dict -> {where}) vs bare",
            value=fmt_rps(rps["minimal_repeat"]),
            baseline=fmt_rps(rps["bare"]),
            ratio=minimal,
            note="no verification at all",
        ),
        Row(
            key=f"{mode_key}.new_vs_reference",
            section=section,
            label=f"{kind} + {guard}, every token new vs PyJWT reference",
            value=fmt_rps(rps["guard_new"]),
            baseline=fmt_rps(rps["reference_new"]),
            ratio=new,
            target=">= 1.5x",
            status=verdict(new >= 1.5),
        ),
        Row(
            key=f"{mode_key}.reference_new_vs_bare",
            section=section,
            label=f"{kind} + PyJWT reference, every token new vs bare {kind}",
            value=fmt_rps(rps["reference_new"]),
            baseline=fmt_rps(rps["bare"]),
            ratio=rps["reference_new"] / rps["bare"],
        ),
    ]


def _skip(section: str, kind: str, mode_key: str, why: str) -> list[Row]:
    labels = {
        "repeat_vs_bare": (f"{kind} guarded, tokens repeat vs bare", ">= 0.85x"),
        "minimal_vs_bare": (f"{kind} minimal middleware vs bare", "-"),
        "new_vs_reference": (f"{kind} guarded, every token new vs PyJWT reference", ">= 1.5x"),
        "reference_new_vs_bare": (f"{kind} + PyJWT reference vs bare", "-"),
    }
    return [
        Row(f"{mode_key}.{k}", section, label, "-", target=t, status="SKIP", note=why)
        for k, (label, t) in labels.items()
    ]


# -- ASGI -------------------------------------------------------------------------------------


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse(_HELLO)

    return Starlette(routes=[Route("/", hello)])


# A server hands the app new header objects on every request (so, for one, their hashes are
# not cached yet): the drivers build the Authorization value afresh per request, in the loop.
_BEARER = b"Bearer "


class _ASGIDriver:
    """Awaits an ASGI app once per header list, on one event loop; seconds per request."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def batch(self, make_app: Callable[[], Any], tokens: list[str]) -> Batch:
        raw_tokens = [t.encode("ascii") for t in tokens]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def drive(app: Any) -> float:
            bad = 0

            async def send(message: dict[str, Any]) -> None:
                nonlocal bad
                if message["type"] == "http.response.start" and message["status"] != 200:
                    bad += 1

            start = time.thread_time()
            for raw in raw_tokens:
                scope = {
                    "type": "http",
                    "asgi": {"version": "3.0", "spec_version": "2.3"},
                    "http_version": "1.1",
                    "method": "GET",
                    "scheme": "http",
                    "path": "/",
                    "raw_path": b"/",
                    "query_string": b"",
                    "root_path": "",
                    "headers": [
                        (b"host", b"bench.local"),
                        (b"user-agent", b"jwt-guard-bench"),
                        (b"accept", b"*/*"),
                        (b"authorization", _BEARER + raw),
                    ],
                    "client": ("127.0.0.1", 50000),
                    "server": ("127.0.0.1", 8000),
                }
                await app(scope, receive, send)
            elapsed = time.thread_time() - start
            if bad:
                raise RuntimeError(f"{bad} of {len(raw_tokens)} requests were not answered 200")
            return elapsed / len(raw_tokens)

        def batch() -> float:
            return self.loop.run_until_complete(drive(make_app()))

        return batch


def run_asgi(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Starlette hello-world: bare, behind JWTGuard, behind the PyJWT reference."""
    section = "ASGI in process (Starlette hello-world, RS256)"
    try:
        from jwt_guard.asgi import JWTGuard
    except ImportError as exc:
        return _skip(section, "Starlette", "asgi", f"jwt_guard.asgi unavailable: {exc}")
    mode = bench.mode
    fixture = _Fixture(bench)
    driver = _ASGIDriver()
    try:
        app = _starlette_app()
        repeat_guard = JWTGuard(app, verifier=fixture.verifier())
        reference = PyJWTASGIMiddleware(app, fixture.reference())
        repeating = cycle(fixture.repeating, mode.app_requests)
        # tokens repeat: they are in the token cache already
        verified = {t: repeat_guard.verifier.verify(t) for t in fixture.repeating}
        known = {b"Bearer " + t.encode(): claims for t, claims in verified.items()}
        minimal = MinimalASGI(app, known)
        contenders = {
            "bare": driver.batch(lambda: app, repeating),
            "minimal_repeat": driver.batch(lambda: minimal, repeating),
            "guard_repeat": driver.batch(lambda: repeat_guard, repeating),
            # a new verifier per round, so that every token is new to it
            "guard_new": driver.batch(
                lambda: JWTGuard(app, verifier=fixture.verifier()), fixture.new
            ),
            "reference_new": driver.batch(lambda: reference, fixture.new),
        }
        for batch in contenders.values():  # warm-up round (and the 200 check)
            batch()
        stats = interleave(contenders, mode.app_rounds)
        return _rows(section, "Starlette", stats, results, "asgi")
    finally:
        driver.close()
        fixture.close()


# -- WSGI -------------------------------------------------------------------------------------


def _flask_app() -> Any:
    from flask import Flask

    app = Flask("jwt_guard_bench")

    @app.get("/")
    def hello() -> str:
        return _HELLO

    return app


def _wsgi_batch(make_app: Callable[[], Any], tokens: list[str]) -> Batch:
    bearer = "Bearer "
    errors = sys.stderr

    def batch() -> float:
        app = make_app()
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return None

        start = time.thread_time()
        for token in tokens:
            environ = {
                "REQUEST_METHOD": "GET",
                "SCRIPT_NAME": "",
                "PATH_INFO": "/",
                "QUERY_STRING": "",
                "SERVER_NAME": "bench.local",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "bench.local",
                "HTTP_USER_AGENT": "jwt-guard-bench",
                "HTTP_ACCEPT": "*/*",
                "HTTP_AUTHORIZATION": bearer + token,
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(b""),
                "wsgi.errors": errors,
                "wsgi.multithread": False,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            body: Iterable[bytes] = app(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        elapsed = time.thread_time() - start
        bad = sum(not s.startswith("200") for s in statuses)
        if bad:
            raise RuntimeError(f"{bad} of {len(statuses)} requests were not answered 200")
        return elapsed / len(tokens)

    return batch


def run_wsgi(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Flask hello-world: bare, behind JWTGuardWSGI, behind the PyJWT reference."""
    section = "WSGI in process (Flask hello-world, RS256)"
    try:
        from jwt_guard.wsgi import JWTGuardWSGI
    except ImportError as exc:
        return _skip(section, "Flask", "wsgi", f"jwt_guard.wsgi unavailable: {exc}")
    mode = bench.mode
    fixture = _Fixture(bench)
    try:
        app = _flask_app()
        repeat_guard = JWTGuardWSGI(app, verifier=fixture.verifier())
        reference = PyJWTWSGIMiddleware(app, fixture.reference())
        repeating = cycle(fixture.repeating, mode.app_requests)
        known = {"Bearer " + t: repeat_guard.verifier.verify(t) for t in fixture.repeating}
        minimal = MinimalWSGI(app, known)
        contenders = {
            "bare": _wsgi_batch(lambda: app, repeating),
            "minimal_repeat": _wsgi_batch(lambda: minimal, repeating),
            "guard_repeat": _wsgi_batch(lambda: repeat_guard, repeating),
            "guard_new": _wsgi_batch(
                lambda: JWTGuardWSGI(app, verifier=fixture.verifier()), fixture.new
            ),
            "reference_new": _wsgi_batch(lambda: reference, fixture.new),
        }
        for batch in contenders.values():
            batch()
        stats = interleave(contenders, mode.app_rounds)
        return _rows(section, "Flask", stats, results, "wsgi")
    finally:
        fixture.close()
