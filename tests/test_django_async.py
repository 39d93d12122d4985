"""Django under ASGI: JWTGuardMiddleware on an async chain (AsyncClient), and ``request.user``
/ ``request.auth`` on both chains."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from _common import verifier_for
from _wsgi_helpers import ensure_django

ensure_django()

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.contrib.auth.decorators import permission_required  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from jwt_guard import TokenVerifier  # noqa: E402
from jwt_guard.django import ANONYMOUS, JWTGuardMiddleware, TokenUser  # noqa: E402
from jwt_guard.testing import LocalIssuer  # noqa: E402


def describe(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    auth = request.auth  # type: ignore[attr-defined]
    return {
        "user": type(user).__name__,
        "authenticated": user.is_authenticated,
        "username": user.get_username(),
        "can_read": user.has_perm("read:items"),
        "scopes": None if auth is None else sorted(auth.scopes),
    }


async def async_me(request: HttpRequest) -> JsonResponse:
    data = describe(request)
    data["ahas_perm"] = await request.user.ahas_perm("read:items")  # type: ignore[union-attr]
    return JsonResponse(data)


def sync_me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@permission_required("read:items", raise_exception=True)
def permitted(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("async/me", async_me),
    path("sync/me", sync_me),
    path("open/me", sync_me),
    path("permitted", permitted),
]


def guarded(verifier: TokenVerifier, **options: Any) -> override_settings:
    return override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["jwt_guard.django.JWTGuardMiddleware"],
        JWT_GUARD={"verifier": verifier, "exclude_prefixes": ["/open"], **options},
    )


@pytest.fixture
def settings_guarded(verifier: TokenVerifier) -> Iterator[None]:
    with guarded(verifier):
        yield


def bearer(token: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


async def test_the_middleware_is_a_coroutine_on_an_async_chain(verifier: TokenVerifier) -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    with guarded(verifier):
        assert JWTGuardMiddleware.async_capable
        assert JWTGuardMiddleware.sync_capable
        assert iscoroutinefunction(JWTGuardMiddleware(handler))
        assert not iscoroutinefunction(JWTGuardMiddleware(lambda request: HttpResponse()))


@pytest.mark.usefixtures("settings_guarded")
async def test_async_views_get_the_token_user(issuer: LocalIssuer) -> None:
    client = AsyncClient()
    token = issuer.mint(subject="ada", scopes=["read:items", "profile"])
    response = await client.get("/async/me", **bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "user": "TokenUser",
        "authenticated": True,
        "username": "ada",
        "can_read": True,
        "scopes": ["profile", "read:items"],
        "ahas_perm": True,
    }
    refused = await client.get("/async/me", **bearer(issuer.mint(expires_in=-3600)))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert (await client.get("/async/me")).status_code == 401


async def test_the_async_path_verifies_on_the_event_loop(issuer: LocalIssuer) -> None:
    """An async revocation hook runs (only ``averify`` can await it), on the loop's thread:
    no thread hop per request."""
    seen: list[tuple[int, bool]] = []

    async def is_revoked(claims: Any) -> bool:
        seen.append((threading.get_ident(), asyncio.current_task() is not None))
        return claims.token_id == "revoked"

    with verifier_for(issuer, is_revoked=is_revoked) as verifier, guarded(verifier):
        client = AsyncClient()
        ok = await client.get("/async/me", **bearer(issuer.mint(claims={"jti": "fine"})))
        gone = await client.get("/async/me", **bearer(issuer.mint(claims={"jti": "revoked"})))
    assert (ok.status_code, gone.status_code) == (200, 401)
    assert seen == [(threading.get_ident(), True)] * 2


def test_async_hooks_are_refused_on_a_sync_chain(issuer: LocalIssuer) -> None:
    async def is_revoked(claims: Any) -> bool:
        return False

    with (
        verifier_for(issuer, is_revoked=is_revoked) as verifier,
        guarded(verifier),
        pytest.raises(ImproperlyConfigured, match="async"),
    ):
        Client().get("/sync/me")


@pytest.mark.usefixtures("settings_guarded")
def test_sync_views_get_the_token_user(issuer: LocalIssuer) -> None:
    client = Client()
    token = issuer.mint(subject="bo", scopes=["profile"])
    assert client.get("/sync/me", **bearer(token)).json() == {
        "user": "TokenUser",
        "authenticated": True,
        "username": "bo",
        "can_read": False,
        "scopes": ["profile"],
    }
    assert client.get("/open/me").json() == {
        "user": "AnonymousTokenUser",
        "authenticated": False,
        "username": "",
        "can_read": False,
        "scopes": None,
    }


@pytest.mark.usefixtures("settings_guarded")
@pytest.mark.parametrize(("scopes", "status"), [(["read:items"], 200), (["profile"], 403)])
def test_permission_required_checks_a_scope(
    scopes: list[str], status: int, issuer: LocalIssuer
) -> None:
    response = Client().get("/permitted", **bearer(issuer.mint(scopes=scopes)))
    assert response.status_code == status


def test_the_token_user(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    claims = verifier.verify(issuer.mint(subject="cy", scopes=["billing.view", "read:items"]))
    user = TokenUser(claims)
    assert (user.pk, user.id, user.is_active, user.is_staff, user.is_superuser) == (
        None,
        None,
        True,
        False,
        False,
    )
    assert (user.is_authenticated, user.is_anonymous, str(user)) == (True, False, "cy")
    assert user.has_perms(["read:items", "billing.view"])
    assert not user.has_perms(["read:items", "admin"])
    assert not user.has_perm("read:items", obj=object())  # no object permissions
    assert user.has_module_perms("billing")
    assert not user.has_module_perms("read")
    assert user.get_all_permissions() == {"billing.view", "read:items"}
    assert user.get_group_permissions() == set()
    with pytest.raises(AttributeError, match="read-only"):
        user.is_staff = True  # type: ignore[misc]
    with pytest.raises(NotImplementedError):
        user.save()
    assert not ANONYMOUS.is_authenticated
    assert not ANONYMOUS.has_perm("read:items")


@pytest.mark.usefixtures("settings_guarded")
async def test_a_dpop_bound_token_sent_as_bearer_is_refused_on_the_async_path(
    issuer: LocalIssuer,
) -> None:
    """The async chain applies the sender checks like the sync one: with DPoP off (the
    default), a token bound to a key (``cnf.jkt``) is no bearer token (found at the merge of the
    DPoP and Django-async work: the async path skipped the check)."""
    from jwt_guard.testing.dpop import DPoPKey

    bound = issuer.mint(subject="ada", dpop_key=DPoPKey.generate("ES256"))
    refused = await AsyncClient().get("/async/me", **bearer(bound))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    plain = await AsyncClient().get("/async/me", **bearer(issuer.mint(subject="ada")))
    assert plain.status_code == 200
