"""JWTGuardWSGI on a raw Werkzeug app: the case table, environ, options, hooks, isolation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

import jwt_guard
from _common import verifier_for
from _wsgi_helpers import CASES, OPTIONS, Answer, Case, check, check_refusal
from jwt_guard import ConfigurationError, JWTGuardError, TokenVerifier
from jwt_guard.decorators import require_scopes
from jwt_guard.guard.middleware import CLAIMS_KEY, GUARD_KEY, ErrorResponse
from jwt_guard.testing import JWKSFault, LocalIssuer
from jwt_guard.testing._server import ServingThread
from jwt_guard.wsgi import JWTGuardWSGI, status_line

View = Callable[[Request], Response]


def _sub(request: Request) -> Response:
    claims = request.environ.get(CLAIMS_KEY)
    body = {"sub": None if claims is None else claims.subject}
    return Response(json.dumps(body), content_type="application/json")


def make_app() -> Any:
    """The raw WSGI app of the case table (see ``Case``)."""
    items: View = require_scopes("read:items")(_sub)
    routes: dict[str, View] = {
        "/items": items,
        "/public/items": items,
        "/any": require_scopes("read:items", "admin", any_of=True)(_sub),
    }

    @Request.application
    def app(request: Request) -> Response:
        return routes.get(request.path, _sub)(request)

    return app


def call(app: Any, path: str, auth: Sequence[str] = (), **kwargs: Any) -> Answer:
    headers = [("Authorization", value) for value in auth] + list(kwargs.pop("headers", {}).items())
    with Client(app).open(path, headers=headers, **kwargs) as response:
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )


@pytest.mark.parametrize("case", CASES)
def test_case_table(case: Case, issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier, **OPTIONS)
    answer = call(app, case.path, case.auth(issuer), method=case.method, headers=case.headers)
    check(case, answer)


def test_claims_and_guard_in_environ(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    guarded = JWTGuardWSGI(app, verifier=verifier)
    token = issuer.mint(subject="carol", scopes=["a", "b"], claims={"email": "c@example.test"})
    assert call(guarded, "/x", [f"Bearer {token}"]).status == 200
    claims = seen[CLAIMS_KEY]
    assert isinstance(claims, jwt_guard.Claims)
    assert (claims.subject, claims.scopes, claims["email"]) == (
        "carol",
        frozenset({"a", "b"}),
        "c@example.test",
    )
    assert seen[GUARD_KEY] is guarded.guard


def test_open_path_overwrites_claims_set_upstream(verifier: TokenVerifier) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier, exclude_paths=["/health"])
    answer = call(app, "/health", environ_overrides={CLAIMS_KEY: "forged"})
    assert answer.json() == {"sub": None}


def test_refusal_status_line_and_length(verifier: TokenVerifier) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier)
    with Client(app).get("/me") as response:
        assert response.status == "401 Unauthorized"
        assert int(response.headers["content-length"]) == len(response.get_data())
    assert status_line(403) == "403 Forbidden"
    assert status_line(503) == "503 Service Unavailable"
    assert status_line(499) == "499 Error"


@pytest.mark.parametrize(
    ("path", "auth", "status", "sub"),
    [
        pytest.param("/me", [], 200, None, id="no-token-passes"),
        pytest.param("/me", ["Bearer junk.junk.junk"], 401, None, id="bad-token-refused"),
        pytest.param("/me", ["Bearer a b"], 400, None, id="malformed-refused"),
        pytest.param("/me", ["Basic abc"], 401, None, id="other-scheme-refused"),
        pytest.param("/items", [], 401, None, id="decorated-route-401"),
        pytest.param("/me", "valid", 200, "dave", id="valid-token"),
    ],
)
def test_optional_mode(
    path: str, auth: Any, status: int, sub: str | None, issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier, optional=True)
    if auth == "valid":
        auth = [f"Bearer {issuer.mint(subject='dave')}"]
    answer = call(app, path, auth)
    assert answer.status == status
    if status == 200:
        assert answer.json() == {"sub": sub}
    if path == "/items":
        check_refusal(answer, 401, None)


def test_error_handler_reshapes_and_can_decline(verifier: TokenVerifier) -> None:
    seen: list[JWTGuardError] = []

    def handler(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse | None:
        seen.append(exc)
        if exc.status == 400:
            return None  # keep the default answer
        headers = [*response.headers, ("x-error-code", exc.code)]
        return ErrorResponse(response.status, headers, b'{"message": "nope"}')

    app = JWTGuardWSGI(make_app(), verifier=verifier, realm="my api", error_handler=handler)
    shaped = call(app, "/me", ["Bearer a.b.c"])
    assert (shaped.status, shaped.body) == (401, b'{"message": "nope"}')
    assert shaped.headers["x-error-code"] == "malformed"
    assert 'realm="my api"' in shaped.headers["www-authenticate"]
    default = call(app, "/me", ["Bearer a b"])
    check_refusal(default, 400, "invalid_request", realm="my api")
    # the decorator's refusals go through the same hook
    assert call(app, "/items", ["Bearer a.b.c"]).headers["x-error-code"] == "malformed"
    assert [type(e).__name__ for e in seen] == [
        "MalformedToken",
        "InvalidRequest",
        "MalformedToken",
    ]


def broken(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse | None:
    if exc.status == 400:
        return ErrorResponse(400, [("x-evil", "a\r\nset-cookie: x=1")], b"")
    raise RuntimeError("handler bug")


@pytest.mark.parametrize(
    ("auth", "status", "error"),
    [
        pytest.param(["Bearer a b"], 400, "invalid_request", id="handler-returns-a-split-header"),
        pytest.param(["Bearer abc.def.ghi"], 401, "invalid_token", id="handler-raises"),
        pytest.param([], 401, None, id="handler-raises-no-token"),
    ],
)
def test_broken_error_handler_falls_back(
    verifier: TokenVerifier, auth: list[str], status: int, error: str | None
) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier, error_handler=broken)
    for path in ("/me", "/items"):  # the middleware's refusal, then the decorator's
        answer = call(app, path, auth)
        check_refusal(answer, status, error)
        assert "x-evil" not in answer.headers
        assert "set-cookie" not in answer.headers


def test_keys_unavailable_at_cold_start_is_503() -> None:
    with LocalIssuer() as down, verifier_for(down) as verifier:
        token = down.mint()
        down.set_fault(JWKSFault.DOWN)
        app = JWTGuardWSGI(make_app(), verifier=verifier)
        for _ in range(2):  # the fetch fails, then the back-off answers without a fetch
            answer = call(app, "/me", [f"Bearer {token}"])
            assert answer.status == 503
            assert int(answer.headers["retry-after"]) >= 1
            assert "www-authenticate" not in answer.headers
            assert answer.json()["error"] == "temporarily_unavailable"
        down.set_fault(None)


async def _async_hook(claims: Any) -> bool:  # verify() cannot await it: every request was a 500
    return False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "verifier=", id="nothing"),
        pytest.param({"exclude_paths": ["health"]}, "must start with '/'", id="relative-path"),
        pytest.param({"realm": 'a"\n'}, "realm", id="bad-realm"),
        pytest.param({"claims_check": _async_hook}, "ASGI", id="async-claims-check"),
        pytest.param({"is_revoked": _async_hook}, "ASGI", id="async-is-revoked"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    if kwargs:
        kwargs.setdefault("issuer", "https://idp.example.test/")
        kwargs.setdefault("audience", "api")
    with pytest.raises(ConfigurationError, match=message):
        JWTGuardWSGI(make_app(), **kwargs)


def test_verifier_and_its_options_together_are_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(ConfigurationError, match="belong to TokenVerifier"):
        JWTGuardWSGI(make_app(), verifier=verifier, issuer="https://x.test/")


def test_exported() -> None:
    """(That importing it loads no framework is checked in test_layers.py.)"""
    assert jwt_guard.JWTGuardWSGI is JWTGuardWSGI
    assert "JWTGuardWSGI" in jwt_guard.__all__


def test_concurrent_requests_see_only_their_own_claims(
    issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    app = JWTGuardWSGI(make_app(), verifier=verifier)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = ServingThread(server, "wsgi-concurrent")
    url = f"http://127.0.0.1:{server.port}/me"
    tokens = {f"user-{n}": issuer.mint(subject=f"user-{n}") for n in range(20)}
    jobs = [f"user-{n % 20}" for n in range(200)]

    def fetch(sub: str) -> tuple[str, int, Any]:
        with requests.Session() as session:
            response = session.get(
                url, headers={"Authorization": f"Bearer {tokens[sub]}"}, timeout=10
            )
            return sub, response.status_code, response.json()

    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(fetch, jobs))
    finally:
        serving.stop()
        server.server_close()
    assert len(results) == 200
    for sub, status, body in results:
        assert (status, body) == (200, {"sub": sub})
