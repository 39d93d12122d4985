"""``jwt_guard.guard.middleware``, what every adapter shares: the header-to-token step, and the
checks of the middleware options (each bad one named with its middleware)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jwt_guard import ConfigurationError, JWTGuard, JWTGuardWSGI
from jwt_guard.errors import (
    InvalidRequest,
    JWTGuardError,
    KeysUnavailable,
    MissingToken,
    StoreFull,
    StoreUnavailable,
)
from jwt_guard.guard.middleware import bearer_token, render_error

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


@pytest.mark.parametrize(
    ("values", "outcome"),
    [
        pytest.param([f"Bearer {TOKEN}"], TOKEN, id="bearer"),
        pytest.param([f"bEaReR {TOKEN}"], TOKEN, id="scheme-case"),
        pytest.param([], MissingToken, id="no-header"),
        pytest.param(["Basic dXNlcjpwYXNz"], MissingToken, id="other-scheme"),
        pytest.param(['Digest username="u", realm="r"'], MissingToken, id="auth-params"),
        pytest.param(["Bearer"], InvalidRequest, id="no-credential"),
        pytest.param(["Bearer a b"], InvalidRequest, id="two-credentials"),
        pytest.param([f"Basic x, Bearer {TOKEN}"], InvalidRequest, id="bearer-after-other"),
        pytest.param(["Bearer ey\u00e9"], InvalidRequest, id="not-ascii"),
    ],
)
def test_bearer_token(values: list[str], outcome: str | type[JWTGuardError]) -> None:
    if isinstance(outcome, str):
        assert bearer_token(values) == outcome
    else:
        with pytest.raises(outcome):
            bearer_token(values)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([f"Bearer {TOKEN}", f"Bearer {TOKEN}"], id="same-token-twice"),
        pytest.param([f"Bearer {TOKEN}", "Bearer other"], id="two-tokens"),
        pytest.param(["Basic x", f"Bearer {TOKEN}"], id="basic-then-bearer"),
        pytest.param([f"Bearer {TOKEN}", "Basic x"], id="bearer-then-basic"),
        pytest.param(["! ", ""], id="junk-then-empty"),
        pytest.param(["Basic x", "Basic y"], id="two-basic"),
        pytest.param(["", ""], id="two-empty"),
    ],
)
def test_several_lines_get_the_answer_of_the_line_a_wsgi_server_joins(lines: list[str]) -> None:
    """ASGI servers pass repeated headers one by one, WSGI servers join them with ","; the
    answer must not depend on which (found by the fuzz suite: 400 on ASGI, 401 on WSGI)."""

    def outcome(values: list[str]) -> object:
        try:
            return bearer_token(values)
        except JWTGuardError as exc:
            return type(exc)

    assert outcome(lines) == outcome([",".join(lines)])
    assert outcome(lines) != TOKEN  # two lines never make one credential


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(KeysUnavailable("jwks down", retry_after=7), id="keys"),
        pytest.param(StoreUnavailable("redis timed out", retry_after=7), id="store"),
        pytest.param(StoreFull("replay store full", retry_after=7), id="store-full"),
    ],
)
def test_every_503_carries_retry_after_and_no_challenge(exc: JWTGuardError) -> None:
    """A store that cannot answer (a DPoP replay check, a stale revocation replica) is answered
    like unavailable keys: a client told ``invalid_token`` would throw a good token away."""
    answer = render_error(exc)
    headers = dict(answer.headers)
    assert answer.status == 503
    assert headers["retry-after"] == "7"
    assert "www-authenticate" not in headers
    assert b"redis" not in answer.body
    assert b"jwks" not in answer.body


# -- options ---------------------------------------------------------------------------------


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return []


ISSUER = {"issuer": "https://idp.example.test/", "audience": "api"}


@pytest.mark.parametrize("middleware", [JWTGuard, JWTGuardWSGI], ids=["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {**ISSUER, "exclude_path": ["/health"]},
            r"\(exclude_path=\.\.\.\): no such option; did you mean 'exclude_paths'\?",
            id="typo-middleware-option",
        ),
        pytest.param(
            {**ISSUER, "audiense": "api"},
            r"\(audiense=\.\.\.\): no such option; did you mean 'audience'\?",
            id="typo-verifier-option",
        ),
        pytest.param(
            {**ISSUER, "exclude_paths": "/health"},
            r"\(exclude_paths=\.\.\.\): give a list of paths, e\.g\. \['/health'\], not a single",
            id="paths-as-a-string",
        ),
        pytest.param(
            {**ISSUER, "exclude_prefixes": "/docs"},
            r"\(exclude_prefixes=\.\.\.\): give a list of paths",
            id="prefixes-as-a-string",
        ),
        pytest.param(
            {**ISSUER, "exclude_paths": ["health"]},
            r"\(exclude_paths=\.\.\.\): path 'health' must start with '/'",
            id="relative-path",
        ),
        pytest.param(
            {"issuer": "", "audience": "api"},
            r"\(issuer=\.\.\.\): must be the exact 'iss'",
            id="empty-issuer",
        ),
        pytest.param(
            {**ISSUER, "optional": "false"},
            r"\(optional=\.\.\.\): must be True or False",
            id="optional-as-a-string",
        ),
        pytest.param(
            {**ISSUER, "allow_preflight": 1},
            r"\(allow_preflight=\.\.\.\): must be True or False",
            id="preflight-as-an-int",
        ),
        pytest.param(
            {**ISSUER, "prefetch": "yes"},
            r"\(prefetch=\.\.\.\): must be True or False",
            id="prefetch-as-a-string",
        ),
        pytest.param({**ISSUER, "realm": 3}, r"\(realm=\.\.\.\): must be printable", id="realm"),
        pytest.param(
            {**ISSUER, "error_handler": "mymodule.handler"},
            r"\(error_handler=\.\.\.\): must be a function",
            id="handler-not-callable",
        ),
        pytest.param(
            {**ISSUER, "leeway": "soon"}, r": TokenVerifier\(leeway=\.\.\.\): must be", id="leeway"
        ),
    ],
)
def test_a_bad_option_names_the_middleware_and_the_option(
    middleware: Any, options: dict[str, Any], message: str
) -> None:
    """``exclude_path=`` named TokenVerifier (a TypeError), ``exclude_paths="/health"`` said
    "excluded path 'l' must start with '/'" and ``issuer=""`` talked about JWKS."""
    with pytest.raises(ConfigurationError, match=f"^{middleware.__name__}(: |{message})") as info:
        middleware(_wsgi_app, **options)
    assert re.search(message, str(info.value)), str(info.value)
