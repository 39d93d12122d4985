"""Flask through its own test client: JWTGuardWSGI on wsgi_app, current_claims, require_claims."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from _wsgi_helpers import CASES, OPTIONS, Answer, Case, check, check_refusal, tamper
from jwt_guard import JWTGuardWSGI, TokenVerifier
from jwt_guard.decorators import require_scopes
from jwt_guard.flask import current_claims, require_claims
from jwt_guard.testing import LocalIssuer


def _sub() -> dict[str, Any]:
    claims = current_claims()
    return {"sub": None if claims is None else claims.subject}


def make_app(verifier: TokenVerifier | None, **options: Any) -> Flask:
    """The Flask app of the case table; guarded when ``verifier`` is given."""
    app = Flask(__name__)
    if verifier is not None:
        app.wsgi_app = JWTGuardWSGI(  # type: ignore[method-assign]
            app.wsgi_app, verifier=verifier, **options
        )
    # OPTIONS listed explicitly so a preflight reaches the view (no automatic answer)
    app.add_url_rule("/me", "me", _sub, methods=["GET", "OPTIONS"])
    app.add_url_rule("/items", "items", require_scopes("read:items")(_sub))
    app.add_url_rule("/public/items", "public_items", require_scopes("read:items")(_sub))
    any_of = require_scopes("read:items", "admin", any_of=True)(_sub)
    app.add_url_rule("/any", "any", any_of)
    app.add_url_rule("/<path:rest>", "echo", lambda rest: _sub())

    @app.get("/strict")
    def strict() -> dict[str, Any]:
        claims = require_claims()
        return {"sub": claims.subject, "scopes": sorted(claims.scopes)}

    return app


@pytest.fixture(scope="module")
def client(verifier: TokenVerifier) -> FlaskClient:
    return make_app(verifier, **OPTIONS).test_client()


def call(client: FlaskClient, path: str, auth: Sequence[str] = (), **kwargs: Any) -> Answer:
    headers = [("Authorization", value) for value in auth]
    headers += list(kwargs.pop("headers", {}).items())
    with client.open(path, headers=headers, **kwargs) as response:
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )


@pytest.mark.parametrize("case", CASES)
def test_case_table(case: Case, issuer: LocalIssuer, client: FlaskClient) -> None:
    answer = call(client, case.path, case.auth(issuer), method=case.method, headers=case.headers)
    check(case, answer)


def test_require_claims_returns_the_claims(issuer: LocalIssuer, client: FlaskClient) -> None:
    token = issuer.mint(subject="erin", scopes=["b", "a"])
    answer = call(client, "/strict", [f"Bearer {token}"])
    assert answer.json() == {"sub": "erin", "scopes": ["a", "b"]}


@pytest.mark.parametrize(
    ("options", "realm"),
    [
        pytest.param({"optional": True, "realm": "shop"}, "shop", id="optional-mode"),
        pytest.param({"exclude_paths": ["/strict", "/me"]}, "api", id="excluded-path"),
    ],
)
def test_require_claims_without_claims_is_401(
    options: dict[str, Any], realm: str, verifier: TokenVerifier
) -> None:
    client = make_app(verifier, **options).test_client()
    check_refusal(call(client, "/strict"), 401, None, realm=realm)
    assert call(client, "/me").json() == {"sub": None}


def test_unguarded_app_has_no_claims_and_still_answers_rfc6750() -> None:
    client = make_app(None).test_client()
    assert call(client, "/me").json() == {"sub": None}
    check_refusal(call(client, "/strict"), 401, None)
    check_refusal(call(client, "/items"), 401, None)


def test_optional_mode_still_refuses_a_bad_token(
    issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    client = make_app(verifier, optional=True).test_client()
    check_refusal(call(client, "/me", ["Bearer x.y.z"]), 401, "invalid_token")
    answer = call(client, "/me", [f"Bearer {issuer.mint(subject='fay')}"])
    assert answer.json() == {"sub": "fay"}


def test_the_shared_claims_are_read_only(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    """The claims of a token are shared by every request carrying it (the verified-token
    cache): a view that alters them must fail, and a later request must see the token as is."""
    app = make_app(verifier, **OPTIONS)
    outcomes: list[list[str]] = []

    @app.get("/tamper")
    def tamper_view() -> dict[str, Any]:
        outcomes.append(tamper(require_claims()))
        return {"tried": True}

    @app.get("/admin")
    @require_scopes("admin")
    def admin() -> dict[str, Any]:
        return {"admin": True}

    client = app.test_client()
    token = [f"Bearer {issuer.mint(scopes=['read'], claims={'realm_access': {'roles': []}})}"]
    for _ in range(2):  # the first request verifies, the second is answered from the cache
        assert call(client, "/tamper", token).json() == {"tried": True}
    check_refusal(call(client, "/admin", token), 403, "insufficient_scope", "admin")
    assert call(client, "/strict", token).json()["scopes"] == ["read"]
    assert outcomes
    assert all("changed" not in seen for seen in outcomes), outcomes
