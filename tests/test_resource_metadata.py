"""Protected-resource metadata (RFC 9728) and resource indicators (RFC 8707): the ``resource=``
option of every middleware (guard/_resource.py).

Field by field against RFC 9728 section 2; the well-known URL of section 3.1 (the resource's path
appended); ``resource_metadata`` in every challenge (section 5.1); the resource as the required
audience unless ``audience=`` says otherwise; all of it built from configuration, whatever the
request's ``Host`` says. Every framework through its own test client.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import Client as WerkzeugClient

from _adapter_apps import FRAMEWORKS, driver
from _asgi_helpers import TestClient
from _hostile import challenge_params
from jwt_guard import (
    ConfigurationError,
    Issuer,
    IssuerTemplate,
    JWTGuard,
    JWTGuardWSGI,
    TokenVerifier,
)
from jwt_guard.binding.dpop import DPoPVerifier
from jwt_guard.errors import (
    InvalidDPoPProof,
    InvalidToken,
    JWTGuardError,
    KeysUnavailable,
    MissingToken,
)
from jwt_guard.guard.middleware import Guard, challenge, render_error
from jwt_guard.testing import LocalIssuer

RESOURCE = "https://api.example.com/mcp"
METADATA_URL = "https://api.example.com/.well-known/oauth-protected-resource/mcp"
BARE = "/.well-known/oauth-protected-resource"
SUFFIXED = BARE + "/mcp"
EXTRA = {
    "scopes_supported": ["mcp:tools", "mcp:resources"],
    "resource_name": "Example MCP server",
    "resource_documentation": "https://docs.example.com/mcp",
}


@pytest.fixture(scope="module")
def verifier(issuer: LocalIssuer) -> TokenVerifier:
    return TokenVerifier(issuer=issuer.issuer, audience=RESOURCE, jwks_url=issuer.jwks_url)


def _document(issuer: LocalIssuer, **fields: Any) -> dict[str, Any]:
    return {
        "resource": RESOURCE,
        "authorization_servers": [issuer.issuer],
        **EXTRA,
        "bearer_methods_supported": ["header"],
        **fields,
    }


# -- the document -------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("path", [SUFFIXED, BARE])
def test_every_framework_serves_the_document(
    framework: str, path: str, issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    app = driver(framework, verifier, resource=RESOURCE, resource_metadata=EXTRA)
    for authorization in (None, "Bearer not-a-token", "Basic dXNlcjpwdw=="):  # no token needed
        reply = app.get(path, authorization)
        assert reply.status == 200, (framework, reply.body)
        headers = {k.lower(): v for k, v in reply.headers.items()}
        assert headers["content-type"] == "application/json"
        assert headers["access-control-allow-origin"] == "*"
        assert "www-authenticate" not in headers
        assert reply.json() == _document(issuer)
        assert list(reply.json())[:2] == ["resource", "authorization_servers"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_framework_names_the_document_in_its_challenges(
    framework: str, issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    app = driver(framework, verifier, resource=RESOURCE)
    cases = [
        ("/me", None, 401, None),
        ("/me", "Bearer not.a.token", 401, "invalid_token"),
        ("/me", "Bearer a b", 400, "invalid_request"),
        (
            "/me",
            f"Bearer {issuer.mint(audience='https://other.example.com/mcp')}",
            401,
            "invalid_token",
        ),
        ("/admin", f"Bearer {issuer.mint(audience=RESOURCE)}", 403, "insufficient_scope"),
    ]
    for path, authorization, status, error in cases:
        reply = app.get(path, authorization)
        assert reply.status == status, (framework, path, reply.body)
        headers = {k.lower(): v for k, v in reply.headers.items()}
        params = challenge_params(headers["www-authenticate"])
        assert params["resource_metadata"] == METADATA_URL, (framework, path)
        assert params.get("error") == error
    reply = app.get("/me", f"Bearer {issuer.mint(audience=RESOURCE)}")
    assert reply.status == 200


@pytest.mark.parametrize(
    ("resource", "url", "paths"),
    [
        pytest.param(
            "https://api.example.com",
            "https://api.example.com/.well-known/oauth-protected-resource",
            {BARE},
            id="host-only",
        ),
        pytest.param(
            "https://api.example.com/",
            "https://api.example.com/.well-known/oauth-protected-resource",
            {BARE},
            id="host-slash",
        ),
        pytest.param(
            "https://api.example.com:8443/tools/mcp",
            "https://api.example.com:8443/.well-known/oauth-protected-resource/tools/mcp",
            {BARE, BARE + "/tools/mcp"},
            id="port-and-path",
        ),
        pytest.param(
            "https://api.example.com/mcp/",
            "https://api.example.com/.well-known/oauth-protected-resource/mcp/",
            {BARE, BARE + "/mcp/"},
            id="trailing-slash",
        ),
        pytest.param(
            "http://127.0.0.1:8000/mcp",
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp",
            {BARE, BARE + "/mcp"},
            id="loopback-http",
        ),
    ],
)
def test_the_well_known_url_is_the_resource_with_the_path_appended(
    resource: str, url: str, paths: set[str], verifier: TokenVerifier
) -> None:
    """RFC 9728 3.1: the well-known string goes between the host and the path."""
    guard = Guard(verifier=verifier, resource=resource)
    assert guard.resource_metadata == url
    assert guard.resource is not None
    assert guard.resource.paths == paths
    for path in paths:
        answer = guard.metadata_answer("GET", path)
        assert answer is not None
        assert json.loads(answer.body)["resource"] == resource
    for other in (BARE + "/", BARE + "/other", SUFFIXED + "/x", "/mcp", BARE.upper()):
        if other not in paths:
            assert guard.metadata_answer("GET", other) is None


def _asgi(verifier: TokenVerifier, **options: Any) -> TestClient:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    app = Starlette(routes=[Route("/mcp", me, methods=["GET", "POST"])])
    return TestClient(JWTGuard(app, verifier=verifier, resource=RESOURCE, **options))


def test_methods_head_options_and_the_rest(verifier: TokenVerifier) -> None:
    client = _asgi(verifier)
    get = client.get(SUFFIXED)
    head = client.head(SUFFIXED)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == "application/json"
    preflight = client.options(
        SUFFIXED,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = client.request(method, SUFFIXED)
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD, OPTIONS"
        assert "www-authenticate" not in refused.headers


def test_head_under_wsgi_sends_the_get_headers_and_no_content(verifier: TokenVerifier) -> None:
    app = JWTGuardWSGI(lambda e, s: [], verifier=verifier, resource=RESOURCE)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen[status] = dict(headers)

    environ = {"REQUEST_METHOD": "HEAD", "PATH_INFO": SUFFIXED, "SCRIPT_NAME": ""}
    assert list(app(environ, start_response)) == []
    get = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, start_response))
    assert seen["200 OK"]["content-length"] == str(len(get))
    assert json.loads(get)["resource"] == RESOURCE


def test_the_host_header_changes_nothing(verifier: TokenVerifier) -> None:
    """The URLs come from the configured resource, never from the request."""
    client = _asgi(verifier)
    for host in ("evil.example", 'evil.example"\r\nx: y', "api.example.com:1"):
        document = client.get(SUFFIXED, headers={"Host": host})
        assert document.json()["resource"] == RESOURCE
        refused = client.get("/mcp", headers={"Host": host})
        assert challenge_params(refused.headers["www-authenticate"])["resource_metadata"] == (
            METADATA_URL
        )
    wsgi = WerkzeugClient(JWTGuardWSGI(lambda e, s: [], verifier=verifier, resource=RESOURCE))
    reply = wsgi.get("/mcp", headers={"Host": "evil.example"})
    assert challenge_params(reply.headers["www-authenticate"])["resource_metadata"] == METADATA_URL


def test_under_a_script_name_the_full_path_counts(verifier: TokenVerifier) -> None:
    """A WSGI app mounted at /api sees its well-known path as SCRIPT_NAME + PATH_INFO."""
    resource = "https://api.example.com/api/mcp"
    app = JWTGuardWSGI(lambda e, s: [], verifier=verifier, resource=resource)
    client = WerkzeugClient(app)
    mounted = client.get(BARE + "/mcp", environ_overrides={"SCRIPT_NAME": "/api"})
    assert mounted.status_code == 401  # /api/.well-known/...: not the metadata path
    whole = client.get(BARE + "/api/mcp")
    assert whole.status_code == 200
    assert whole.get_json()["resource"] == resource


def test_a_503_has_no_challenge_and_the_error_handler_keeps_the_parameter(
    issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    guard = Guard(verifier=verifier, resource=RESOURCE)
    down = guard.error_response(KeysUnavailable("down"))
    assert down.status == 503
    assert "www-authenticate" not in dict(down.headers)
    kept = Guard(verifier=verifier, resource=RESOURCE, error_handler=lambda exc, resp: None)
    value = dict(kept.error_response(MissingToken()).headers)["www-authenticate"]
    assert challenge_params(value)["resource_metadata"] == METADATA_URL
    assert challenge(InvalidToken(), resource_metadata=METADATA_URL).endswith(
        f'resource_metadata="{METADATA_URL}"'
    )
    assert "resource_metadata" not in challenge(InvalidToken())
    assert "resource_metadata" not in dict(render_error(InvalidToken()).headers)["www-authenticate"]


# -- the fields ---------------------------------------------------------------------------------


def test_authorization_servers_default_to_the_exact_issuers(issuer: LocalIssuer) -> None:
    two = TokenVerifier(
        issuers=[
            Issuer(issuer.issuer, RESOURCE, jwks_url=issuer.jwks_url),
            Issuer("https://other.example.com/", RESOURCE, jwks=issuer.jwks()),
        ]
    )
    document = Guard(verifier=two, resource=RESOURCE).resource
    assert document is not None
    assert document.document(None)["authorization_servers"] == [
        issuer.issuer,
        "https://other.example.com/",
    ]
    given = Guard(
        verifier=two,
        resource=RESOURCE,
        resource_metadata={"authorization_servers": ["https://as.example.com"]},
    ).resource
    assert given is not None
    assert given.document(None)["authorization_servers"] == ["https://as.example.com"]


def test_templates_are_not_authorization_servers(issuer: LocalIssuer) -> None:
    """A template names no single server: give ``authorization_servers`` yourself."""
    template = IssuerTemplate(
        issuer.url + "/{tid}/v2.0", RESOURCE, any_tenant=True, jwks=issuer.jwks()
    )
    only = TokenVerifier(issuers=[template])
    resource = Guard(verifier=only, resource=RESOURCE).resource
    assert resource is not None
    assert "authorization_servers" not in resource.document(None)


def test_dpop_fields_come_from_the_guards_dpop_settings(verifier: TokenVerifier) -> None:
    """The hook for the DPoP wiring: ``guard.dpop`` (with ``algorithms``) and
    ``guard.dpop_required``, read when the document is first built."""
    plain = Guard(verifier=verifier, resource=RESOURCE)
    answer = plain.metadata_answer("GET", SUFFIXED)
    assert answer is not None
    assert not {k for k in json.loads(answer.body) if k.startswith("dpop")}

    guard = Guard(verifier=verifier, resource=RESOURCE)
    guard.dpop = DPoPVerifier(algorithms=["ES256", "EdDSA"])  # type: ignore[attr-defined]
    guard.dpop_required = True  # type: ignore[attr-defined]
    answer = guard.metadata_answer("GET", SUFFIXED)
    assert answer is not None
    document = json.loads(answer.body)
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert document["dpop_bound_access_tokens_required"] is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(["scopes_supported"], "must be a dict", id="not-a-dict"),
        pytest.param({"resource": "https://x"}, "resource=", id="resource"),
        pytest.param({"bearer_methods_supported": ["body"]}, "Authorization header", id="bearer"),
        pytest.param({"dpop_bound_access_tokens_required": True}, "DPoP", id="dpop"),
        pytest.param({"scopes_suported": ["a"]}, "did you mean 'scopes_supported'", id="typo"),
        pytest.param({"scopes_supported": "mcp:tools"}, "a list of strings", id="scopes-text"),
        pytest.param({"scopes_supported": []}, "a list of strings", id="scopes-empty"),
        pytest.param({"scopes_supported": ["a\nb"]}, "a list of strings", id="scopes-newline"),
        pytest.param({"resource_name": 7}, "a string", id="name-number"),
        pytest.param({"resource_documentation": "docs"}, "https URL", id="docs-not-url"),
        pytest.param(
            {"tls_client_certificate_bound_access_tokens": "yes"}, "True or False", id="flag"
        ),
        pytest.param({"x_extension": {1, 2}}, "not a JSON value", id="extension-not-json"),
        pytest.param({"x_extension": float("nan")}, "not a JSON value", id="extension-nan"),
        pytest.param({7: "x"}, "field names are strings", id="name-not-text"),
    ],
)
def test_bad_metadata_fields(fields: Any, message: str, verifier: TokenVerifier) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWTGuard(Starlette(), verifier=verifier, resource=RESOURCE, resource_metadata=fields)


def test_extension_fields_pass_through(verifier: TokenVerifier) -> None:
    guard = Guard(
        verifier=verifier, resource=RESOURCE, resource_metadata={"x_mcp_version": "2025-11-25"}
    )
    answer = guard.metadata_answer("GET", BARE)
    assert answer is not None
    assert json.loads(answer.body)["x_mcp_version"] == "2025-11-25"


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        pytest.param("http://api.example.com/mcp", "https", id="plain-http"),
        pytest.param("https://api.example.com/mcp#frag", "fragment", id="fragment"),
        pytest.param("https://api.example.com/mcp?x=1", "query", id="query"),
        pytest.param("https://user@api.example.com/mcp", "user information", id="userinfo"),
        pytest.param("https://API.example.com/mcp", "lower case", id="upper-case-host"),
        pytest.param("https:///mcp", "host", id="no-host"),
        pytest.param("/mcp", "https", id="relative"),
        pytest.param("https://api.example.com/a b", "characters", id="space"),
        pytest.param("https://api.example.com/é", "characters", id="non-ascii"),
        pytest.param("https://api.example.com/a/../b", "dot", id="dot-segment"),
        pytest.param("", "this API's URL", id="empty"),
        pytest.param(7, "this API's URL", id="not-text"),
    ],
)
def test_bad_resources(resource: Any, message: str, verifier: TokenVerifier) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWTGuardWSGI(lambda e, s: [], verifier=verifier, resource=resource)


def test_resource_metadata_needs_a_resource(verifier: TokenVerifier) -> None:
    with pytest.raises(ConfigurationError, match="give resource="):
        JWTGuard(Starlette(), verifier=verifier, resource_metadata=EXTRA)


# -- the audience (RFC 8707) --------------------------------------------------------------------


@pytest.fixture
def mint(issuer: LocalIssuer) -> Any:
    def make(audience: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(audience=audience)}"}

    return make


def test_the_resource_is_the_default_audience(issuer: LocalIssuer, mint: Any) -> None:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/mcp", me)])
    client = TestClient(JWTGuard(app, issuer=issuer.issuer, resource=RESOURCE))
    assert client.get("/mcp", headers=mint(RESOURCE)).status_code == 200
    assert client.get("/mcp", headers=mint([RESOURCE, "other"])).status_code == 200
    for other in ("https://api.example.com/other", "https://api.example.com/mcp/", "my-api"):
        refused = client.get("/mcp", headers=mint(other))
        assert refused.status_code == 401
        assert challenge_params(refused.headers["www-authenticate"])["error"] == "invalid_token"

    explicit = TestClient(JWTGuard(app, issuer=issuer.issuer, audience="my-api", resource=RESOURCE))
    assert explicit.get("/mcp", headers=mint("my-api")).status_code == 200
    assert explicit.get("/mcp", headers=mint(RESOURCE)).status_code == 401
    unchecked = TestClient(JWTGuard(app, issuer=issuer.issuer, audience=None, resource=RESOURCE))
    assert unchecked.get("/mcp", headers=mint("anything")).status_code == 200


def test_a_given_verifier_keeps_its_own_audience(issuer: LocalIssuer, mint: Any) -> None:
    verifier = TokenVerifier(issuer=issuer.issuer, audience="my-api")
    app = JWTGuardWSGI(
        lambda e, s: [s("200 OK", []), b"ok"][1:], verifier=verifier, resource=RESOURCE
    )
    client = WerkzeugClient(app)
    assert client.get("/mcp", headers=mint("my-api")).status_code == 200
    assert client.get("/mcp", headers=mint(RESOURCE)).status_code == 401


def test_django_settings_take_the_resource(issuer: LocalIssuer, mint: Any) -> None:
    from django.test import Client, override_settings

    import _adapter_apps

    settings = {"issuer": issuer.issuer, "resource": RESOURCE, "resource_metadata": EXTRA}
    with override_settings(
        ROOT_URLCONF=_adapter_apps._URLS,
        MIDDLEWARE=["jwt_guard.django.JWTGuardMiddleware"],
        JWT_GUARD=settings,
    ):
        client = Client()
        document = client.get(SUFFIXED)
        assert document.status_code == 200
        assert document.json() == _document(issuer)
        assert (
            client.get("/me", **{"HTTP_AUTHORIZATION": mint(RESOURCE)["Authorization"]}).status_code
            == 200
        )
        refused = client.get("/me", **{"HTTP_AUTHORIZATION": mint("my-api")["Authorization"]})
        assert refused.status_code == 401
        assert challenge_params(refused["WWW-Authenticate"])["resource_metadata"] == METADATA_URL


# -- from the environment -----------------------------------------------------------------------


def test_from_env(issuer: LocalIssuer, mint: Any) -> None:
    environ = {
        "JWT_GUARD_ISSUER": issuer.issuer,
        "JWT_GUARD_RESOURCE": RESOURCE,
        "JWT_GUARD_RESOURCE_METADATA": json.dumps(EXTRA),
    }
    client = TestClient(JWTGuard.from_env(Starlette(routes=[]), environ=environ))
    assert client.get(SUFFIXED).json() == _document(issuer)
    assert client.get("/mcp", headers=mint(RESOURCE)).status_code == 404  # admitted, no route
    assert client.get("/mcp", headers=mint("my-api")).status_code == 401

    wsgi = JWTGuardWSGI.from_env(
        lambda e, s: [s("200 OK", []), b"ok"][1:],
        environ={**environ, "JWT_GUARD_AUDIENCE": "my-api"},  # an explicit audience wins
    )
    assert WerkzeugClient(wsgi).get("/mcp", headers=mint("my-api")).status_code == 200
    assert WerkzeugClient(wsgi).get("/mcp", headers=mint(RESOURCE)).status_code == 401
    with pytest.raises(ConfigurationError, match="JWT_GUARD_RESOURCE_METADATA"):
        JWTGuard.from_env(Starlette(), environ={**environ, "JWT_GUARD_RESOURCE_METADATA": "[1]"})


@pytest.mark.parametrize("mode", ["allowed", "required"])
@pytest.mark.parametrize(
    ("authorization", "exc"),
    [
        pytest.param((), MissingToken(), id="no-token"),
        pytest.param(("Bearer x.y.z",), InvalidToken(), id="bearer-refused"),
        pytest.param(("DPoP x.y.z",), InvalidToken(), id="dpop-refused"),
        pytest.param(("DPoP x.y.z",), InvalidDPoPProof(), id="bad-proof"),
    ],
)
def test_every_challenge_of_a_dpop_guard_names_the_metadata(
    verifier: TokenVerifier, mode: str, authorization: tuple[str, ...], exc: JWTGuardError
) -> None:
    """RFC 9728 5.1: ``resource_metadata`` is a parameter of the challenge whatever the scheme,
    so a client that only speaks DPoP finds the metadata too (and with both schemes offered,
    each challenge carries it)."""
    guard = Guard(
        verifier=verifier, resource=RESOURCE, dpop=mode, public_url="https://api.example.com"
    )
    value = dict(guard.error_response(exc, authorization).headers)["www-authenticate"]
    starts = [m.start(1) for m in re.finditer(r"(?:^|, )(Bearer|DPoP) ", value)]
    parts = [value[a:b] for a, b in zip(starts, [*starts[1:], len(value)], strict=True)]
    schemes = sorted(part.split(" ", 1)[0] for part in parts)
    assert schemes == (["DPoP"] if mode == "required" else ["Bearer", "DPoP"]), value
    for part in parts:
        assert f'resource_metadata="{METADATA_URL}"' in part, (part, value)
