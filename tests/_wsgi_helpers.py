"""Shared by the WSGI, Flask and Django tests: a verifier bound to a LocalIssuer, the table of
request cases every adapter must answer alike, the check of one answer, and Django settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from _common import parse_challenge
from jwt_guard.testing import LocalIssuer

OPTIONS: dict[str, Any] = {"exclude_paths": ["/health"], "exclude_prefixes": ["/public"]}
"""The guard options of the apps under test (besides the verifier)."""

ATTACK = '"evil<script>\\'
"""Bytes an attacker sends; no answer may carry them."""


@dataclass(frozen=True)
class Answer:
    """One response, whatever client produced it (header names lower-cased)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _bearer(**mint: Any) -> Callable[[LocalIssuer], list[str]]:
    return lambda issuer: [f"Bearer {issuer.mint(**mint)}"]


def _forged(issuer: LocalIssuer) -> list[str]:
    head, payload, _ = issuer.mint(subject="alice").split(".")
    return [f"Bearer {head}.{payload}.{issuer.mint(subject='mallory').split('.')[2]}"]


def _none(issuer: LocalIssuer) -> list[str]:
    return []


@dataclass(frozen=True)
class Case:
    """A request to the app under test and what must come back.

    The app serves ``/me``, ``/items`` (``read:items``), ``/any`` (``read:items`` or
    ``admin``), ``/health`` (excluded), ``/public/<rest>`` (excluded prefix) and
    ``/public/items`` (excluded, but decorated with ``read:items``); each answers
    ``{"sub": <claims.subject or None>}``.
    """

    path: str
    auth: Callable[[LocalIssuer], list[str]] = _none
    status: int = 200
    error: str | None = None  # the challenge's error=, for a 4xx
    sub: str | None = None  # the sub the app saw, for a 200
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    scope: str | None = None  # the challenge's scope=, for a 403


PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}

CASES = [
    pytest.param(Case("/me", _bearer(subject="alice"), sub="alice"), id="valid"),
    pytest.param(
        Case("/me", lambda i: [f"bearer {i.mint(subject='al')}"], sub="al"), id="scheme-lowercase"
    ),
    pytest.param(Case("/me", status=401), id="no-token"),
    pytest.param(Case("/me", lambda i: ["Bearer t\u00f6ken"], 400, "invalid_request"), id="latin1"),
    pytest.param(Case("/me", lambda i: ["Basic dXNlcjpwYXNz"], 401), id="basic"),
    pytest.param(
        Case("/me", lambda i: [f"Basic x, Bearer {i.mint()}"], 400, "invalid_request"),
        id="basic-and-bearer-joined",
    ),
    pytest.param(Case("/me", lambda i: ["Bearer"], 400, "invalid_request"), id="bearer-empty"),
    pytest.param(Case("/me", lambda i: ["Bearer a.b.c d.e.f"], 400, "invalid_request"), id="two"),
    pytest.param(Case("/me", lambda i: [f"Bearer {ATTACK}"], 400, "invalid_request"), id="non68"),
    pytest.param(
        Case("/me", lambda i: [f"Bearer {i.mint()}", f"Bearer {i.mint()}"], 400, "invalid_request"),
        id="repeated-headers",
    ),
    pytest.param(Case("/me", lambda i: ["Bearer abc.def.ghi"], 401, "invalid_token"), id="junk"),
    pytest.param(Case("/me", _bearer(expires_in=-3600), 401, "invalid_token"), id="expired"),
    pytest.param(
        Case("/me", _bearer(audience="https://other.test"), 401, "invalid_token"), id="wrong-aud"
    ),
    pytest.param(Case("/me", _forged, 401, "invalid_token"), id="forged-signature"),
    pytest.param(
        Case("/me", _bearer(headers={"kid": ATTACK}), 401, "invalid_token"), id="attack-kid"
    ),
    pytest.param(
        Case("/me", _bearer(headers={"alg": "none"}), 401, "invalid_token"), id="alg-none"
    ),
    pytest.param(
        Case("/items", _bearer(scopes=["read:items"], subject="bob"), sub="bob"), id="scope-ok"
    ),
    pytest.param(
        Case(
            "/items", _bearer(scopes=["write:items"]), 403, "insufficient_scope", scope="read:items"
        ),
        id="scope-missing",
    ),
    pytest.param(Case("/any", _bearer(scopes=["admin"], subject="root"), sub="root"), id="any-of"),
    pytest.param(
        Case(
            "/any", _bearer(scopes=["other"]), 403, "insufficient_scope", scope="read:items admin"
        ),
        id="any-of-none",
    ),
    pytest.param(Case("/health"), id="excluded"),
    pytest.param(Case("/health", lambda i: ["Bearer junk"]), id="excluded-ignores-token"),
    pytest.param(Case("/public/page"), id="excluded-prefix"),
    pytest.param(Case("/healthz", status=401), id="not-excluded-healthz"),
    pytest.param(Case("/health/../admin", status=401), id="not-excluded-dotdot"),
    pytest.param(Case("/publicity", status=401), id="not-excluded-prefix-lookalike"),
    pytest.param(Case("/public/items", status=401), id="decorated-open-path-401"),
    pytest.param(Case("/me", status=401, method="OPTIONS", headers=PREFLIGHT), id="preflight"),
    pytest.param(Case("/me", status=401, method="OPTIONS"), id="options-not-preflight"),
]


def check(case: Case, answer: Answer) -> None:
    """Assert ``answer`` is what ``case`` expects, and that no attacker bytes came back."""
    assert answer.status == case.status, answer.body
    raw = answer.body.decode("latin-1") + "".join(answer.headers.values())
    assert "<script>" not in raw
    assert "evil" not in raw
    if case.status == 200:
        assert answer.json() == {"sub": case.sub}
        return
    check_refusal(answer, case.status, case.error, case.scope)


def check_refusal(
    answer: Answer, status: int, error: str | None, scope: str | None = None, realm: str = "api"
) -> None:
    """Assert ``answer`` is the RFC 6750 refusal: challenge, JSON body, no-store."""
    assert answer.status == status
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] == "application/json"
    scheme, params = parse_challenge(answer.headers["www-authenticate"])
    assert scheme == "Bearer"
    assert params.get("realm") == realm
    assert params.get("error") == error
    assert params.get("scope") == scope
    body = answer.json()
    assert body["error_description"]
    if error is None:
        assert set(params) == {"realm"}
        assert body["error"] == "unauthorized"
    else:
        assert params["error_description"] == body["error_description"]
        assert body["error"] == error


_BASE_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]


def ensure_django() -> None:
    """Configure Django once for the whole test session (tests override what they need)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="tests-only",
            DEBUG=False,
            ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"],
            # What any test may install, registered once: an override that adds an app whose
            # models another override already loaded reloads them (a RuntimeWarning).
            INSTALLED_APPS=_BASE_APPS,
            DATABASES={},
            MIDDLEWARE=[],
            USE_TZ=True,
            ROOT_URLCONF=None,
        )
        django.setup()


def tamper(claims: Any) -> list[str]:
    """What a careless view might try on the claims shared by every request with the same
    token: the exception type of each attempt, or "changed" when one succeeds."""
    attempts = [
        lambda: claims.__setitem__("scope", "admin"),
        lambda: claims.__delitem__("sub"),
        lambda: setattr(claims, "scopes", frozenset({"admin"})),
        lambda: setattr(claims, "granted", True),
        lambda: claims["realm_access"].__setitem__("roles", ["admin"]),
        lambda: claims["realm_access"]["roles"].append("admin"),
    ]
    outcomes = []
    for attempt in attempts:
        try:
            attempt()
        except (AttributeError, TypeError) as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append("changed")
    return outcomes
