"""README.md stays true: every python block runs against a local issuer, the tables match the code.

Each python block is preceded by a marker, ``<!-- test: KIND [NAME] -->``, saying how it is
exercised. The placeholder issuer ``"https://idp.example.com/"`` (audience ``"my-api"``) and the
providers' URLs in the recipes are replaced by the local issuer before the block runs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _common import INNER_PYTEST, shared_key
from jwt_guard import (
    Issuer,
    IssuerTemplate,
    JWKSOptions,
    JWTGuard,
    JWTGuardError,
    JWTGuardWSGI,
    TokenVerifier,
    errors,
)
from jwt_guard.binding.policy import SENDER_OPTIONS, SenderConstraints
from jwt_guard.core._env import ENV_VARIABLES
from jwt_guard.errors import InvalidClaim, RevokedToken, UnknownKey, WrongAudience, WrongIssuer
from jwt_guard.fastapi import JWTBearer
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing.pytest_plugin import MintToken

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER_ISSUER = '"https://idp.example.com/"'
PLACEHOLDER_AUDIENCE = "my-api"
_BLOCK = re.compile(
    r"(?:<!-- test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str
    kind: str
    name: str
    code: str
    line: int


def _blocks() -> list[Block]:
    found = []
    for match in _BLOCK.finditer(README):
        kind, _, name = (match["marker"] or "").partition(" ")
        line = README.count("\n", 0, match.start("code"))
        found.append(Block(match["lang"], kind, name, match["code"], line))
    return found


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def _section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n## ", start + len(heading))
    return README[start : end if end != -1 else len(README)]


# -- the blocks themselves


def test_every_block_is_python_with_a_marker_or_bash() -> None:
    assert {b.lang for b in BLOCKS} == {"python", "bash", "text", "js"}
    assert all(b.kind in KINDS or b.kind in TOGETHER for b in PYTHON), [
        (b.line, b.kind) for b in PYTHON
    ]
    assert not [b.line for b in BLOCKS if b.lang == "bash" and b.kind]


def test_the_two_commands_and_ci_agree() -> None:
    commands = [b.code.strip() for b in BLOCKS if b.lang == "bash"][:2]
    assert commands == [
        "pip install -e . && jwt-guard demo",
        'pip install -e ".[test]" && python -m pytest -q -n auto --dist loadfile',
    ]
    assert _section("## Two commands").count("```bash") == 2
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == "python -m pytest -q -n auto --dist loadfile"
    assert 'pip install --quiet -e ".[test]"' in ci[-2]


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _check_app(get: Callable[[str, str | None], tuple[int, Any]], mint_token: MintToken) -> None:
    """The quick-start contract: /health open, /me any valid token, /items needs read:items."""
    reader = mint_token(subject="alice", scopes=["read:items"])
    assert get("/health", None) == (200, {"status": "ok"})
    assert get("/me", reader) == (200, {"sub": "alice", "scopes": ["read:items"]})
    assert get("/items", reader) == (200, {"items": ["apple", "pear"]})
    assert get("/items", None)[0] == 401
    assert get("/items", mint_token(scopes=["profile"]))[0] == 403
    assert get("/me", mint_token(expires_in=-3600))[0] == 401
    assert get("/me", mint_token(audience="another-api"))[0] == 401


def _run(block: Block, jwt_issuer: LocalIssuer, **names: Any) -> dict[str, Any]:
    code = block.code.replace(PLACEHOLDER_ISSUER, repr(jwt_issuer.issuer))
    namespace: dict[str, Any] = {"__name__": f"readme_line_{block.line}", **names}
    exec(compile(code, f"README.md:{block.line}", "exec"), namespace)
    return namespace


@pytest.fixture
def issuer_for_readme(jwt_issuer: LocalIssuer) -> LocalIssuer:
    jwt_issuer.audience = PLACEHOLDER_AUDIENCE
    return jwt_issuer


def _run_app(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    app = _run(block, issuer)["app"]
    if hasattr(app, "test_client"):  # Flask
        flask_client = app.test_client()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            response = flask_client.get(path, headers=_bearer(token))
            return response.status_code, response.get_json()

    else:
        from starlette.testclient import TestClient

        client = TestClient(app)

        def get(path: str, token: str | None) -> tuple[int, Any]:
            response = client.get(path, headers=_bearer(token))
            return response.status_code, response.json()

    _check_app(get, mint_token)


def _ensure_django() -> None:
    from _wsgi_helpers import ensure_django

    ensure_django()


def _run_django(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    _ensure_django()
    from django.test import Client, override_settings

    ns = _run(block, issuer)
    urls = types.ModuleType(f"readme_urls_{block.line}")
    urls.urlpatterns = ns["urlpatterns"]  # type: ignore[attr-defined]
    with override_settings(
        MIDDLEWARE=ns["MIDDLEWARE"], JWT_GUARD=ns["JWT_GUARD"], ROOT_URLCONF=urls
    ):
        client = Client()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            extra = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            response = client.get(path, **extra)
            return response.status_code, response.json()

        _check_app(get, mint_token)


def _run_django_async(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The async views through Django's AsyncClient: the middleware on an async chain."""
    import asyncio

    _ensure_django()
    from django.test import AsyncClient, override_settings

    ns = _run(block, issuer)
    urls = types.ModuleType(f"readme_urls_{block.line}")
    urls.urlpatterns = ns["urlpatterns"]  # type: ignore[attr-defined]
    with override_settings(
        MIDDLEWARE=ns["MIDDLEWARE"], JWT_GUARD=ns["JWT_GUARD"], ROOT_URLCONF=urls
    ):
        client = AsyncClient()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            response = asyncio.run(client.get(path, headers=headers))
            return response.status_code, response.json()

        _check_app(get, mint_token)


def _run_drf(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The DRF views through DRF's APIClient; the settings' dotted paths name jwt_guard's
    classes."""
    _ensure_django()
    from django.test import override_settings
    from django.utils.module_loading import import_string
    from rest_framework.test import APIClient

    from jwt_guard.drf import HasScopes, JWTGuardAuthentication

    ns = _run(block, issuer)
    defaults = ns["REST_FRAMEWORK"]
    assert [import_string(p) for p in defaults["DEFAULT_AUTHENTICATION_CLASSES"]] == [
        JWTGuardAuthentication
    ]
    assert [import_string(p) for p in defaults["DEFAULT_PERMISSION_CLASSES"]] == [HasScopes]
    urls = types.ModuleType(f"readme_urls_{block.line}")
    urls.urlpatterns = ns["urlpatterns"]  # type: ignore[attr-defined]
    with override_settings(
        INSTALLED_APPS=ns["INSTALLED_APPS"],
        MIDDLEWARE=[],
        JWT_GUARD=ns["JWT_GUARD"],
        REST_FRAMEWORK=defaults,
        ROOT_URLCONF=urls,
    ):
        client = APIClient()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            extra = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            response = client.get(path, **extra)
            return response.status_code, response.json()

        _check_app(get, mint_token)


def _run_litestar(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """A Litestar app (Litestar reads its handlers' module: the block runs as one)."""
    import sys

    from litestar.testing import TestClient

    name = f"readme_line_{block.line}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        code = block.code.replace(PLACEHOLDER_ISSUER, repr(issuer.issuer))
        exec(compile(code, f"README.md:{block.line}", "exec"), module.__dict__)
        with TestClient(module.app) as client:

            def get(path: str, token: str | None) -> tuple[int, Any]:
                response = client.get(path, headers=_bearer(token))
                return response.status_code, response.json()

            _check_app(get, mint_token)
    finally:
        del sys.modules[name]


def _run_websocket(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """A browser's handshake (the token in Sec-WebSocket-Protocol) and a refused one."""
    from starlette.testclient import TestClient, WebSocketDenialResponse

    app = _run(block, issuer)["app"]
    token = mint_token(subject="alice")
    with TestClient(app) as client:
        with client.websocket_connect("/ws", subprotocols=["chat", "bearer", token]) as ws:
            assert ws.accepted_subprotocol == "chat"
            assert ws.receive_text() == "hello alice"
            ws.send_text("ping")
            assert ws.receive_text() == "ping"
        with client.websocket_connect("/ws", subprotocols=["bearer", token]) as ws:
            assert ws.accepted_subprotocol == "bearer"
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect("/ws", subprotocols=["chat"]),
        ):
            pass  # pragma: no cover - refused
        assert refused.value.status_code == 401


def _run_verifier(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    verifier = _run(block, issuer)["verifier"]
    assert verifier.verify(mint_token(subject="alice", scopes=["a"])).scopes == {"a"}
    with pytest.raises(WrongAudience):
        verifier.verify(mint_token(audience="another-api"))


def _run_sources(block: Block, issuer: LocalIssuer, mint_token: MintToken, **kw: Any) -> None:
    """The key-source examples: a JWKS file (the issuer's keys written where the block looks)
    and a source of one's own, each verifying the issuer's tokens."""
    path = kw["tmp_path"] / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    placeholder = '"/etc/jwt/jwks.json"'
    assert block.code.count(placeholder) == 2
    code = block.code.replace(placeholder, repr(str(path)))
    namespace = _run(dataclasses.replace(block, code=code), issuer)
    for name in ("verifier", "custom"):
        verifier = namespace[name]
        assert verifier.verify(mint_token(subject="alice", scopes=["a"])).scopes == {"a"}
        with pytest.raises(WrongAudience):
            verifier.verify(mint_token(audience="another-api"))
        assert verifier.health()["ok"] is True


def _run_health(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    from starlette.testclient import TestClient

    app = _run(block, issuer)["app"]
    with TestClient(app) as client:  # lifespan start-up: prefetch
        report = client.get("/ready")
        assert report.status_code == 200
        assert report.json() == {"ok": True, "issuers": {issuer.issuer: {"ready": True}}}
        assert client.get("/ready", headers=_bearer("not-a-token")).status_code == 200
        assert client.get("/elsewhere").status_code == 401


def _run_errors(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The error_handler of the README shapes every adapter's refusals, layer by layer."""
    from _adapter_apps import FRAMEWORKS, driver

    handler = _run(block, issuer)["problem_json"]
    verifier = TokenVerifier(issuer=issuer.issuer, audience=issuer.audience)
    for framework in FRAMEWORKS:
        app = driver(framework, verifier, error_handler=handler)
        for path, token, status, code in (
            ("/me", None, 401, "missing_token"),
            ("/me", mint_token(expires_in=-3600), 401, "expired"),
            ("/admin", mint_token(), 403, "insufficient_scope"),
            ("/open/admin", None, 401, "missing_token"),
        ):
            reply = app.get(path, None if token is None else f"Bearer {token}")
            assert reply.status == status, (framework, path)
            content_type = {k.lower(): v for k, v in reply.headers.items()}["content-type"]
            assert content_type == "application/problem+json", (framework, path)
            assert reply.json() == {
                "title": reply.json()["title"],
                "status": status,
                "code": code,
            }, (framework, path)


def _run_dpop(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The DPoP block: a bound token with fresh proofs passes, a replayed proof, a proof for
    another URL and the token as Bearer do not."""
    from starlette.testclient import TestClient

    from jwt_guard.testing.dpop import DPoPClient

    client = TestClient(_run(block, issuer)["app"])
    dpop = DPoPClient(issuer=issuer, public_url="https://api.example.com")
    token = dpop.mint(scopes=["read:items"])
    headers = dpop.headers("GET", "/items", token)
    reply = client.get("/items", headers=headers)
    assert (reply.status_code, reply.json()) == (200, {"items": ["apple"], "key": dpop.jkt})
    assert client.get("/items", headers=headers).status_code == 401  # replayed
    other_url = dpop.headers("GET", "https://api.example.org/items", token)
    assert client.get("/items", headers=other_url).status_code == 401
    assert client.get("/items", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    unscoped = dpop.mint()
    assert client.get("/items", headers=dpop.headers("GET", "/items", unscoped)).status_code == 403


def _run_mtls(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The mTLS block: the certificate the trusted proxy reports must be the token's."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    from _certs import client_certificate

    app = _run(block, issuer)["app"]
    cert, other = client_certificate("alice"), client_certificate("mallory")
    token = mint_token(certificate=cert)

    def get(certificate: Any, peer: str, token: str = token) -> tuple[int, Any]:
        header = ":" + base64.b64encode(certificate.public_bytes(Encoding.DER)).decode() + ":"
        response = app.test_client().get(
            "/me",
            headers={"Authorization": f"Bearer {token}", "Client-Cert": header},
            environ_base={"REMOTE_ADDR": peer},
        )
        return response.status_code, response.get_json()

    status, body = get(cert, "10.1.2.3")
    assert status == 200
    assert body["sub"] == "user-1"
    assert get(other, "10.1.2.3")[0] == 401  # another certificate
    assert get(cert, "192.0.2.1")[0] == 401  # the header straight from a client: not believed
    assert get(cert, "10.1.2.3", mint_token())[0] == 401  # mtls="required": unbound tokens too


def _run_env(
    block: Block, issuer: LocalIssuer, mint_token: MintToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_GUARD_ISSUER", issuer.issuer)
    monkeypatch.setenv("JWT_GUARD_AUDIENCE", PLACEHOLDER_AUDIENCE)
    _run_verifier(block, issuer, mint_token)


def _run_fleet(block: Block, issuer: LocalIssuer, mint_token: MintToken, **kw: Any) -> None:
    """The fleet example against a real redis-server: two workers built from the block, a
    revocation made through one refused by the other, a subject signed out everywhere."""
    from _redis import RedisServer

    placeholder = '"redis://redis.internal:6379/0"'
    assert block.code.count(placeholder) == 1
    kw["monkeypatch"].setenv("JWT_GUARD_FLEET_SECRET", "a-fleet-secret-of-at-least-32-bytes")
    server = RedisServer(kw["tmp_path"])
    server.start()
    workers: list[Any] = []
    try:
        code = block.code.replace(placeholder, repr(server.url))
        for _ in range(2):
            workers.append(_run(dataclasses.replace(block, code=code), issuer))
        first, second = (ns["verifier"] for ns in workers)
        assert issuer.jwks_requests == 1  # the second worker took the stored key set
        token, other = mint_token(subject="alice"), mint_token(subject="alice")
        claims = first.verify(token)
        assert second.verify(token).subject == "alice"
        workers[0]["sign_out"](claims)
        assert second.store.revocation.wait_for(lambda: _refused(second, token), 10.0)
        assert second.verify(other).subject == "alice"
        workers[1]["sign_out_everywhere"]("alice")
        assert first.store.revocation.wait_for(lambda: _refused(first, other), 10.0)
        with pytest.raises(RevokedToken):
            second.verify(other)
    finally:
        for namespace in workers:
            namespace["verifier"].store.close()
        server.stop()


def _refused(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except RevokedToken:
        return True
    return False


@dataclass(frozen=True)
class Recipe:
    """How to run a provider recipe against the local issuer with a token shaped like theirs."""

    urls: dict[str, str]  # literal in the block -> "issuer" or "jwks_url"
    audience: str | None
    claims: dict[str, Any]
    scopes: set[str]
    refused: dict[str, Any] = field(default_factory=dict)  # claims that make it fail
    also_issuer: str | None = None  # another iss the recipe trusts, keys from jwks_url


RECIPES = {
    "auth0": Recipe(
        {'"https://YOUR_TENANT.us.auth0.com/"': "issuer"},
        "https://api.example.com",
        {"scope": "openid read:items", "permissions": ["write:items"]},
        {"openid", "read:items", "write:items"},
    ),
    "entra": Recipe(
        {'f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"': "issuer"},
        "11111111-1111-1111-1111-111111111111",
        {"scp": "Items.Read Items.Write", "roles": ["Items.Admin"], "ver": "2.0"},
        {"Items.Read", "Items.Write", "Items.Admin"},
    ),
    "okta": Recipe(
        {'"https://YOUR_ORG.okta.com/oauth2/default"': "issuer"},
        "api://default",
        {"scp": ["openid", "items:read"], "cid": "0oa1"},
        {"openid", "items:read"},
    ),
    "keycloak": Recipe(
        {'"https://keycloak.example.com/realms/myrealm"': "issuer"},
        "my-api",
        {
            "scope": "profile email",
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my-api": {"roles": ["items:read"]}, "account": {"roles": ["x"]}},
        },
        {"profile", "email", "admin", "items:read"},
    ),
    "cognito": Recipe(
        {'"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE"': "issuer"},
        None,
        {
            "token_use": "access",
            "client_id": "YOUR_APP_CLIENT_ID",
            "scope": "items/read",
            "cognito:groups": ["admins"],
        },
        {"items/read", "admins"},
        refused={"client_id": "someone-elses-client"},
    ),
    "google": Recipe(
        {
            '"https://accounts.google.com"': "issuer",
            '"https://www.googleapis.com/oauth2/v3/certs"': "jwks_url",
        },
        "1234567890-abc.apps.googleusercontent.com",
        {"hd": "example.com", "email": "alice@example.com", "email_verified": True},
        set(),
        refused={"hd": "elsewhere.example"},
        also_issuer="accounts.google.com",
    ),
}


def _run_recipe(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    recipe = RECIPES[block.name]
    code = block.code
    for literal, what in recipe.urls.items():
        assert literal in code, f"the {block.name} recipe no longer holds {literal}"
        code = code.replace(literal, repr(getattr(issuer, what)))
    verifier = _run(dataclasses.replace(block, code=code), issuer)["verifier"]
    claims = verifier.verify(mint_token(recipe.claims, audience=recipe.audience))
    assert claims.scopes == recipe.scopes
    if recipe.also_issuer:
        token = mint_token(recipe.claims, audience=recipe.audience, issuer=recipe.also_issuer)
        assert verifier.verify(token).issuer == recipe.also_issuer
    if recipe.refused:
        with pytest.raises(InvalidClaim):
            verifier.verify(
                mint_token({**recipe.claims, **recipe.refused}, audience=recipe.audience)
            )
    if recipe.audience is not None:
        with pytest.raises(WrongAudience):
            verifier.verify(mint_token(recipe.claims, audience="another-api"))


def _run_metrics(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    namespace = _run(block, issuer)
    verifier, registry = namespace["verifier"], namespace["registry"]
    token = mint_token()
    verifier.verify(token)
    verifier.verify(token)
    with pytest.raises(WrongAudience):
        verifier.verify(mint_token(audience="another-api"))
    value = registry.get_sample_value
    assert value("jwt_verified_total", {"cached": "false"}) == 1
    assert value("jwt_verified_total", {"cached": "true"}) == 1
    assert value("jwt_rejected_total", {"code": "wrong_audience"}) == 1
    assert value("jwt_jwks_fetches_total", {"outcome": "ok"}) == 1


# -- multi-tenant recipes (IssuerTemplate): the templates stay as written (an iss is only text);
# the key URLs point at loopback servers holding the keys.

ENTRA_KEYS = '"https://login.microsoftonline.com/common/discovery/v2.0/keys"'
ENTRA_COMMON = '"https://login.microsoftonline.com/common/v2.0"'
CONTOSO = "3c5e8c4a-0f5b-4d2e-9a71-6b1f0e2d4c8a"
FABRIKAM = "9b2d7e61-4a3c-4f08-b5d9-1e7c3a6f2b40"
STRANGER = "e0f1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b"
ENTRA_API = "11111111-1111-1111-1111-111111111111"


class _EntraCommon(LocalIssuer):
    """Entra's ``common`` metadata: its ``issuer`` is the template, ``{tenantid}`` included."""

    def discovery(self) -> dict[str, Any]:
        return {
            **super().discovery(),
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        }


def _entra_token(issuer: LocalIssuer, tid: str, iss: str | None = None, **claims: Any) -> str:
    iss = iss or f"https://login.microsoftonline.com/{tid}/v2.0"
    payload = {"tid": tid, "scp": "Items.Read", "roles": ["Items.Admin"], **claims}
    return issuer.mint(payload, issuer=iss, audience=ENTRA_API)


def _check_entra(verifier: TokenVerifier, keys: LocalIssuer, any_tenant: bool) -> None:
    claims = verifier.verify(_entra_token(keys, CONTOSO))
    assert (claims.tenant, claims.scopes) == (CONTOSO, {"Items.Read", "Items.Admin"})
    if any_tenant:
        assert verifier.verify(_entra_token(keys, STRANGER)).tenant == STRANGER
    else:
        v1 = verifier.verify(_entra_token(keys, FABRIKAM, f"https://sts.windows.net/{FABRIKAM}/"))
        assert v1.tenant == FABRIKAM
        with pytest.raises(WrongIssuer):  # not a customer
            verifier.verify(_entra_token(keys, STRANGER))
    for bad in (
        _entra_token(keys, CONTOSO, f"https://login.microsoftonline.com/{FABRIKAM}/v2.0"),
        _entra_token(keys, "contoso", "https://login.microsoftonline.com/contoso/v2.0"),
        _entra_token(keys, CONTOSO.upper()),
    ):
        with pytest.raises(WrongIssuer):  # tid and iss disagree; not a GUID; not lower case
            verifier.verify(bad)
    with pytest.raises(WrongAudience):
        verifier.verify(
            keys.mint(
                {"tid": CONTOSO},
                issuer=f"https://login.microsoftonline.com/{CONTOSO}/v2.0",
                audience="other",
            )
        )


def _run_tenants(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    code = block.code
    if block.name == "entra-tenants":
        assert ENTRA_KEYS in code
        verifier = _run(
            dataclasses.replace(block, code=code.replace(ENTRA_KEYS, repr(issuer.jwks_url))), issuer
        )["verifier"]
        _check_entra(verifier, issuer, any_tenant=False)
    elif block.name == "entra-any-tenant":
        assert ENTRA_COMMON in code
        with _EntraCommon(keys=[shared_key()], path="/common/v2.0") as common:
            ns = _run(
                dataclasses.replace(block, code=code.replace(ENTRA_COMMON, repr(common.issuer))),
                issuer,
            )
            _check_entra(ns["verifier"], common, any_tenant=True)
            assert common.discovery_requests == 1
    elif block.name == "keycloak-realms":
        from _realms import realms

        with realms("acme", "globex", "initech") as kc:
            local = code.replace('"https://keycloak.example.com/', f'"{kc.base}/')
            verifier = _run(dataclasses.replace(block, code=local), issuer)["verifier"]
            claims = verifier.verify(kc.mint("acme", {"realm_access": {"roles": ["admin"]}}))
            assert (claims.tenant, claims.scopes) == ("acme", {"admin"})
            assert verifier.verify(kc.mint("globex")).tenant == "globex"
            with pytest.raises(WrongIssuer):
                verifier.verify(kc.mint("initech"))
            with pytest.raises(UnknownKey):  # each realm its own keys
                verifier.verify(kc.mint("acme", key="globex"))
    else:
        raise AssertionError(f"no test for the tenants block {block.name!r}")


def _run_mcp(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The MCP server of the README: metadata, the challenge, the audience, a tool call."""
    from starlette.testclient import TestClient

    resource = "http://127.0.0.1:8000/mcp"  # the MCP app only answers a loopback Host here
    code = block.code.replace('"https://mcp.example.com/mcp"', repr(resource))
    app = _run(dataclasses.replace(block, code=code), issuer)["app"]
    accept = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "readme", "version": "1"},
        },
    }
    metadata_url = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        refused = client.post("/mcp", json=init, headers=accept)
        assert refused.status_code == 401
        assert f'resource_metadata="{metadata_url}"' in refused.headers["www-authenticate"]
        document = client.get(metadata_url).json()
        assert document == {
            "resource": resource,
            "authorization_servers": [issuer.issuer],
            "scopes_supported": ["mcp:tools"],
            "resource_name": "My tools",
            "bearer_methods_supported": ["header"],
        }
        mine = {
            **accept,
            "Authorization": f"Bearer {mint_token(subject='alice', audience=resource)}",
        }
        assert client.post("/mcp", json=init, headers=mine).status_code == 200
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }
        answer = client.post(
            "/mcp", json=call, headers={**mine, "MCP-Protocol-Version": "2025-06-18"}
        )
        assert answer.status_code == 200
        assert '"alice"' in answer.text
        theirs = {
            **accept,
            "Authorization": f"Bearer {mint_token(audience='http://127.0.0.1:9/mcp')}",
        }
        assert client.post("/mcp", json=init, headers=theirs).status_code == 401


KINDS: dict[str, Callable[..., None]] = {
    "app": _run_app,
    "django": _run_django,
    "django-async": _run_django_async,
    "drf": _run_drf,
    "litestar": _run_litestar,
    "websocket": _run_websocket,
    "verifier": _run_verifier,
    "env": _run_env,
    "dpop": _run_dpop,
    "mtls": _run_mtls,
    "errors": _run_errors,
    "fleet": _run_fleet,
    "health": _run_health,
    "metrics": _run_metrics,
    "recipe": _run_recipe,
    "sources": _run_sources,
    "tenants": _run_tenants,
    "mcp": _run_mcp,
}


# Test modules of a user's suite: they run as the files of one pytest session, as a suite holds
# several (test_the_pytest_blocks_pass_in_one_session).
TOGETHER = {"pytest"}
ALONE = [b for b in PYTHON if b.kind not in TOGETHER]


def test_every_recipe_is_in_the_readme() -> None:
    assert {b.name for b in PYTHON if b.kind == "recipe"} == set(RECIPES)


@pytest.mark.parametrize("block", ALONE, ids=[f"line{b.line}-{b.kind}{b.name}" for b in ALONE])
def test_python_block_runs(
    block: Block,
    issuer_for_readme: LocalIssuer,
    mint_token: MintToken,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    kwargs: dict[str, Any] = {"tmp_path": tmp_path}
    if block.kind == "env":
        kwargs = {"monkeypatch": monkeypatch}
    elif block.kind == "fleet":
        kwargs = {"monkeypatch": monkeypatch, "tmp_path": tmp_path}
    KINDS[block.kind](block, issuer_for_readme, mint_token, **kwargs)


def test_the_pytest_blocks_pass_in_one_session(pytester: pytest.Pytester) -> None:
    """Each block a test module of its own (no conftest.py: the plugin's fixtures as installed),
    all in one session with the plugin's session issuer; every test in each of them passes."""
    blocks = [b for b in PYTHON if b.kind == "pytest"]
    assert blocks
    pytester.makepyfile(**{f"test_readme_line{b.line}": b.code for b in blocks})
    result = pytester.runpytest(*INNER_PYTEST, "-v")
    tests = [
        f"test_readme_line{b.line}.py::{name}"
        for b in blocks
        for name in re.findall(r"^def (test_\w+)", b.code, flags=re.MULTILINE)
    ]
    result.assert_outcomes(passed=len(tests))
    result.stdout.fnmatch_lines_random([f"*{test} PASSED*" for test in tests])


# -- the reference tables match the code


def _table(anchor: str) -> dict[str, list[str]]:
    """The first Markdown table after ``anchor``: first cell (backticks stripped) -> cells."""
    start = README.index(anchor)
    rows: dict[str, list[str]] = {}
    lines = iter(README[start:].splitlines())
    for line in lines:
        if line.startswith("| ---"):
            break
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    return rows


# Options whose default is None but which must be given one way or another.
REQUIRED_ANYWAY = {"issuer"}


def _documented_default(name: str, default: Any) -> str:
    if default in (inspect.Parameter.empty, dataclasses.MISSING) or (
        default is None and name in REQUIRED_ANYWAY
    ):
        return "required"
    if type(default).__name__ == "_Unset":
        return "required"
    if callable(default):
        return f"`{default.__module__}.{default.__qualname__}`"
    return "`" + repr(default).replace("'", '"') + "`"


def _parameters(func: Callable[..., Any]) -> Iterator[tuple[str, Any]]:
    for param in inspect.signature(func).parameters.values():
        if param.name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD:
            yield param.name, param.default


@pytest.mark.parametrize(
    ("anchor", "params"),
    [
        pytest.param("### `TokenVerifier(**options)`", TokenVerifier.__init__, id="TokenVerifier"),
        pytest.param(
            "### `JWKSOptions`",
            lambda: ((f.name, f.default) for f in dataclasses.fields(JWKSOptions)),
            id="JWKSOptions",
        ),
        pytest.param("### `JWTGuard(app", JWTGuard.__init__, id="JWTGuard"),
        pytest.param(
            "### `JWTGuard(app",
            lambda: [  # the table also lists the ASGI middleware's websocket options
                *_parameters(JWTGuardWSGI.__init__),
                *((n, d) for n, d in _parameters(JWTGuard.__init__) if n.startswith("websocket_")),
            ],
            id="JWTGuardWSGI",
        ),
        pytest.param("FastAPI's `JWTBearer`", JWTBearer.__init__, id="JWTBearer"),
        pytest.param(
            "### Sender-binding options",
            lambda: (
                (name, param.default)
                for name, param in inspect.signature(SenderConstraints).parameters.items()
                if name not in ("owner", "clock")  # set by the guard, not by users
            ),
            id="SenderConstraints",
        ),
        pytest.param(
            "### `Issuer(",
            lambda: ((f.name, f.default) for f in dataclasses.fields(Issuer)),
            id="Issuer",
        ),
        pytest.param(
            "### `IssuerTemplate(",
            lambda: ((f.name, f.default) for f in dataclasses.fields(IssuerTemplate)),
            id="IssuerTemplate",
        ),
    ],
)
def test_option_tables_name_every_option_with_its_default(
    anchor: str, params: Callable[..., Any]
) -> None:
    found = list(params()) if params.__name__ == "<lambda>" else list(_parameters(params))
    table = _table(anchor)
    assert set(table) == {name for name, _ in found}
    for name, default in found:
        assert table[name][1].startswith(_documented_default(name, default)), (name, table[name][1])
        assert len(table[name][2]) > 10, name


def test_environment_table_lists_every_variable() -> None:
    table = _table("### Environment variables")
    assert set(table) == {f"JWT_GUARD_{suffix}" for suffix in ENV_VARIABLES}
    for suffix, (_where, option, _parse, help_text) in ENV_VARIABLES.items():
        assert table[f"JWT_GUARD_{suffix}"][1].startswith(f"`{option}`")
        assert table[f"JWT_GUARD_{suffix}"][2] == help_text, suffix  # one text, not two


def test_the_audience_variable_documents_none() -> None:
    from jwt_guard.core._env import verifier_options_from_env

    row = _table("### Environment variables")["JWT_GUARD_AUDIENCE"]
    assert "'none'" in row[2]
    options = verifier_options_from_env(environ={"JWT_GUARD_AUDIENCE": "none"})
    assert options == {"audience": None}


def _loggers_in(path: Path) -> Iterator[str]:
    """The logger names ``path`` passes to ``logging.getLogger`` (``__name__`` resolved)."""
    module = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
    source = path.read_text(encoding="utf-8")
    if "getLogger" not in source:  # nothing to find: no need to parse it
        return
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "getLogger" or not node.args:  # getLogger(): the root, configured by the CLI
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Name) and arg.id == "__name__":
            yield module.removesuffix(".__init__")
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value
        else:
            yield f"<a logger name computed in {path.name}:{node.lineno}>"


def test_the_logger_table_names_every_logger_in_the_code() -> None:
    in_code = {
        name
        for path in (ROOT / "src" / "jwt_guard").rglob("*.py")
        for name in _loggers_in(path)
        if name != "jwt_guard"  # the parent, which the CLI configures
    }
    assert {"jwt_guard.keys", "jwt_guard.http", "jwt_guard.health"} <= in_code
    table = _table("Standard `logging`, under `jwt_guard`")
    assert set(table) == in_code
    assert all(len(cells[1]) > 10 for cells in table.values())


def test_the_error_prose_says_what_the_table_and_the_classes_say() -> None:
    """The sentence on subclasses names the table's rows and errors.py's values, not its own."""
    table = _table("## Errors")
    rows = list(table)
    match = re.search(
        r"Every subclass of `(\w+)` \(`(\w+)` to `(\w+)` in the table\) answers with\s+its "
        r"parent's status and challenge \((\d+), `error=\"(\w+)\"`\), and with the `code` and"
        r"\s+`error_description` of its own row; `except \1` catches them all \(`except (\w+)`"
        r"\s+the claim checks, `(\w+)` to `(\w+)`\)",
        _section("## Errors"),
    )
    assert match is not None, "the Errors prose no longer says how subclasses answer"
    parent, first, last, status, error, claims, claims_first, claims_last = match.groups()

    def span(start: str, stop: str) -> list[str]:
        return rows[rows.index(start) : rows.index(stop) + 1]

    def subclasses(name: str) -> list[str]:
        base = getattr(errors, name)
        return [n for n in rows if n != name and issubclass(getattr(errors, n), base)]

    base = getattr(errors, parent)
    assert span(first, last) == subclasses(parent)
    assert span(claims_first, claims_last) == subclasses(claims)
    assert (int(status), error) == (base.status, base.error)
    for name in subclasses(parent):
        cls = getattr(errors, name)
        assert (cls.status, cls.error) == (base.status, base.error), name


def test_error_table_matches_the_error_classes() -> None:
    table = _table("## Errors")
    classes = {
        name: getattr(errors, name)
        for name in errors.__all__
        if name not in ("JWTGuardError", "ConfigurationError")
    }
    assert set(table) == set(classes)
    for name, cls in classes.items():
        assert issubclass(cls, JWTGuardError)
        _, code, status, challenge, description = table[name]
        assert (code, status, description) == (f"`{cls.code}`", str(cls.status), cls.description)
        if cls.error is not None and cls.status != 503:
            assert f'`error="{cls.error}"`' in challenge


def test_the_sender_binding_options_are_the_guard_s() -> None:
    """What the table documents is what the middlewares route to ``SenderConstraints``."""
    table = _table("### Sender-binding options")
    assert tuple(table) == SENDER_OPTIONS
