"""Django REST framework: JWTGuardAuthentication and HasScopes through DRF's own test client,
alone and behind JWTGuardMiddleware; the browsable API; drf-spectacular's schema; the hostile
corpus through the DRF classes."""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Iterator
from typing import Any

import pytest

from _common import parse_challenge, shared_key, verifier_for
from _hostile import CORPUS, Answer, Hostile, Kit, assert_no_echo, make_kit, make_verifier
from _wsgi_helpers import ensure_django

ensure_django()

from django.test import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.permissions import IsAuthenticated  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.settings import api_settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from jwt_guard import TokenVerifier  # noqa: E402
from jwt_guard.decorators import require_scopes  # noqa: E402
from jwt_guard.drf import HasScopes, JWTGuardAuthentication  # noqa: E402
from jwt_guard.errors import InsufficientScope, InvalidRequest, KeysUnavailable  # noqa: E402
from jwt_guard.guard.middleware import challenge  # noqa: E402
from jwt_guard.testing import JWKSFault, LocalIssuer  # noqa: E402


def who(request: Request) -> dict[str, Any]:
    return {
        "user": type(request.user).__name__,
        "sub": request.user.get_username(),
        "scopes": sorted(request.auth.scopes),
    }


def make_urls() -> types.ModuleType:
    """The API's URL module, made under the test's settings. ``APIView`` took DRF's defaults
    when rest_framework was first imported (before these settings): ``Defaults`` reads them
    again, from ``REST_FRAMEWORK``, as a project's views get them."""

    class Defaults(APIView):
        authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
        permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES

    class Me(Defaults):
        permission_classes = (IsAuthenticated,)

        def get(self, request: Request) -> Response:
            return Response(who(request))

    class Items(Defaults):
        required_scopes = ("read:items",)  # HasScopes, the default permission, reads it

        def get(self, request: Request) -> Response:
            return Response({"items": ["apple", "pear"]})

    class AnyOf(Defaults):
        permission_classes = (HasScopes("admin", "ops", any_of=True),)

        def get(self, request: Request) -> Response:
            return Response(who(request))

    class Combined(Defaults):
        permission_classes = (IsAuthenticated & HasScopes("read:items"),)

        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    class Undeclared(Defaults):
        def get(self, request: Request) -> Response:  # pragma: no cover - always refused
            return Response({"ok": True})

    class Decorated(Defaults):
        permission_classes = (IsAuthenticated,)

        @require_scopes("read:items")  # the table-driven decorator, on a DRF view method
        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    class Admin(Defaults):
        required_scopes = ("admin",)

        def get(self, request: Request) -> Response:
            return Response({"admin": True})

    urlpatterns = [
        path("me", Me.as_view()),
        path("items", Items.as_view()),
        path("any", AnyOf.as_view()),
        path("combined", Combined.as_view()),
        path("undeclared", Undeclared.as_view()),
        path("admin", Admin.as_view()),
        path("decorated", Decorated.as_view()),
    ]

    urls = types.ModuleType("drf_test_urls")
    urls.urlpatterns = urlpatterns  # type: ignore[attr-defined]
    return urls


DRF_SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
    ],
    "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": ["jwt_guard.drf.JWTGuardAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["jwt_guard.drf.HasScopes"],
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    },
}


@contextlib.contextmanager
def drf_settings(verifier: TokenVerifier, middleware: bool = False) -> Iterator[types.ModuleType]:
    with override_settings(
        **DRF_SETTINGS,
        MIDDLEWARE=["jwt_guard.django.JWTGuardMiddleware"] if middleware else [],
        JWT_GUARD={"verifier": verifier},
    ):
        urls = make_urls()
        with override_settings(ROOT_URLCONF=urls):
            yield urls


@pytest.fixture(params=[False, True], ids=["drf-alone", "behind-middleware"])
def client(request: pytest.FixtureRequest, verifier: TokenVerifier) -> Iterator[APIClient]:
    with drf_settings(verifier, middleware=request.param):
        yield APIClient()


@pytest.fixture
def alone(verifier: TokenVerifier) -> Iterator[APIClient]:
    with drf_settings(verifier):
        yield APIClient()


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("path", "scopes", "status"),
    [
        pytest.param("/me", ["profile"], 200, id="me"),
        pytest.param("/items", ["read:items"], 200, id="required-scopes"),
        pytest.param("/items", ["profile"], 403, id="required-scopes-missing"),
        pytest.param("/any", ["ops"], 200, id="any-of"),
        pytest.param("/any", ["read:items"], 403, id="any-of-none"),
        pytest.param("/combined", ["read:items"], 200, id="combined"),
        pytest.param("/combined", [], 403, id="combined-missing"),
        pytest.param("/undeclared", ["read:items"], 403, id="undeclared-fails-closed"),
        pytest.param("/decorated", ["read:items"], 200, id="decorator"),
        pytest.param("/decorated", ["profile"], 403, id="decorator-missing"),
    ],
)
def test_scopes(
    path: str, scopes: list[str], status: int, client: APIClient, issuer: LocalIssuer
) -> None:
    response = client.get(path, **auth(issuer.mint(subject="dee", scopes=scopes)))
    assert response.status_code == status, response.content
    if path in ("/me", "/any") and status == 200:
        assert response.json() == {"user": "TokenUser", "sub": "dee", "scopes": sorted(scopes)}
    if status == 403 and path != "/undeclared":
        scheme, params = parse_challenge(response["WWW-Authenticate"])
        assert (scheme, params["error"]) == ("Bearer", "insufficient_scope")
        body = response.json()
        if path == "/decorated":  # the guard's own RFC 6750 body
            assert body["error"] == "insufficient_scope"
        else:
            assert body == {"detail": InsufficientScope.description}


def test_a_view_without_required_scopes_is_refused_and_logged(
    alone: APIClient, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    assert alone.get("/undeclared", **auth(issuer.mint())).status_code == 403
    assert "HasScopes() on Undeclared without scopes" in caplog.text


@pytest.mark.parametrize(
    ("headers", "status", "error", "detail"),
    [
        pytest.param({}, 401, None, "Authentication credentials were not provided.", id="none"),
        pytest.param(
            {"HTTP_AUTHORIZATION": "Basic dXNlcjpwdw=="},
            401,
            None,
            "Authentication credentials were not provided.",
            id="another-scheme",
        ),
        pytest.param(
            {"HTTP_AUTHORIZATION": "Bearer"}, 400, "invalid_request", InvalidRequest.description,
            id="malformed",
        ),
        pytest.param(
            "expired", 401, "invalid_token", "The access token expired", id="expired"
        ),
    ],
)  # fmt: skip
def test_drf_answers_refusals_with_the_rfc6750_challenge(
    headers: Any, status: int, error: str | None, detail: str, alone: APIClient, issuer: LocalIssuer
) -> None:
    if headers == "expired":
        headers = auth(issuer.mint(expires_in=-3600))
    response = alone.get("/items", **headers)
    assert response.status_code == status
    params = parse_challenge(response["WWW-Authenticate"])[1]
    assert (params["realm"], params.get("error")) == ("api", error)
    assert response.json() == {"detail": detail}


def test_behind_the_middleware_refusals_are_the_middlewares(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    with drf_settings(verifier, middleware=True):
        response = APIClient().get("/items", **auth(issuer.mint(expires_in=-3600)))
    assert response.status_code == 401
    assert json.loads(response.content)["error"] == "invalid_token"  # the guard's own body


def test_keys_unavailable_is_a_503_with_retry_after() -> None:
    with (
        LocalIssuer(keys=[shared_key()]) as down,
        verifier_for(down) as verifier,
        drf_settings(verifier),
    ):
        down.set_fault(JWKSFault.ERROR_500)
        response = APIClient().get("/items", **auth(down.mint(scopes=["read:items"])))
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert response.json() == {"detail": KeysUnavailable.description}
    assert "WWW-Authenticate" not in response


def test_the_browsable_api(alone: APIClient, issuer: LocalIssuer) -> None:
    html = {"HTTP_ACCEPT": "text/html"}
    ok = alone.get("/me", **html, **auth(issuer.mint(subject="browser-user")))
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/html")
    assert b"browser-user" in ok.content
    refused = alone.get("/items", **html)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="api"'


def test_drf_spectacular_documents_the_bearer_scheme(verifier: TokenVerifier) -> None:
    from drf_spectacular.generators import SchemaGenerator

    with drf_settings(verifier) as urls:
        generator = SchemaGenerator(patterns=urls.urlpatterns)  # type: ignore[attr-defined]
        schema = generator.get_schema(request=None, public=True)
    assert schema["components"]["securitySchemes"] == {
        "JWTGuard": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    assert schema["paths"]["/items"]["get"]["security"] == [{"JWTGuard": []}]


def test_has_scopes_refuses_bad_scope_names() -> None:
    from jwt_guard import ConfigurationError

    with pytest.raises(ConfigurationError, match="HasScopes"):
        HasScopes("read items")
    assert repr(HasScopes("a", "b", any_of=True)) == "HasScopes('a', 'b', any_of=True)"
    assert JWTGuardAuthentication().authenticate_header  # the 401 needs it


# -- the hostile corpus through the DRF classes --------------------------------------------------


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    with make_kit() as started:
        yield started


@pytest.fixture(scope="module")
def corpus_client(kit: Kit) -> Iterator[APIClient]:
    with make_verifier(kit) as verifier, drf_settings(verifier):
        yield APIClient()


@pytest.mark.parametrize("hostile", CORPUS)
def test_hostile_corpus(hostile: Hostile, kit: Kit, corpus_client: APIClient) -> None:
    """Each case (header lines joined as a WSGI server joins them) gets DRF's answer with the
    exact status and RFC 6750 challenge of its refusal; nothing of the input comes back."""
    lines = hostile.lines(kit)
    extra = {"HTTP_AUTHORIZATION": ",".join(v.decode("latin-1") for v in lines)} if lines else {}
    response = corpus_client.get(hostile.path, **extra)
    refusal = hostile.refusal
    assert response.status_code == refusal.status, response.content
    expected = InsufficientScope(scopes=("admin",)) if refusal is InsufficientScope else refusal()
    assert response["WWW-Authenticate"] == challenge(expected)
    if refusal.error is not None:
        assert response.json() == {"detail": refusal.description}
    headers = [(k.lower(), v) for k, v in response.items()]
    assert_no_echo(Answer(response.status_code, headers, response.content, False), lines)
