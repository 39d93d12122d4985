"""Django through its own test Client: JWTGuardMiddleware, get_claims, require_scopes on views."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from _common import verifier_for
from _wsgi_helpers import (
    CASES,
    OPTIONS,
    Answer,
    Case,
    check,
    check_refusal,
    ensure_django,
    tamper,
)

ensure_django()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from django.utils.decorators import method_decorator  # noqa: E402
from django.views import View  # noqa: E402

from jwt_guard import TokenVerifier  # noqa: E402
from jwt_guard.decorators import require_scopes  # noqa: E402
from jwt_guard.django import JWTGuardMiddleware, get_claims  # noqa: E402
from jwt_guard.errors import JWTGuardError  # noqa: E402
from jwt_guard.guard.middleware import CLAIMS_KEY, GUARD_KEY, ErrorResponse  # noqa: E402
from jwt_guard.testing import JWKSFault, LocalIssuer  # noqa: E402


def sub(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    claims = get_claims(request)
    return JsonResponse({"sub": None if claims is None else claims.subject})


@method_decorator(require_scopes("read:items"), name="dispatch")
class ItemsView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return sub(request)


def meta(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "same": request.META[CLAIMS_KEY] is get_claims(request),
            "guard": type(request.META[GUARD_KEY]).__name__,
        }
    )


urlpatterns = [
    path("items", require_scopes("read:items")(sub)),
    path("public/items", require_scopes("read:items")(sub)),
    path("any", require_scopes("read:items", "admin", any_of=True)(sub)),
    path("cbv", ItemsView.as_view()),
    path("meta", meta),
    re_path(r"^.*$", sub),
]

MIDDLEWARE = ["jwt_guard.django.JWTGuardMiddleware"]


def shape(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
    return ErrorResponse(response.status, [("x-error-code", exc.code)], b"{}")


def guarded(verifier: TokenVerifier, **options: Any) -> override_settings:
    return override_settings(
        ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, JWT_GUARD={"verifier": verifier, **options}
    )


@pytest.fixture(scope="module")
def client(verifier: TokenVerifier) -> Iterator[Client]:
    with guarded(verifier, **OPTIONS):
        yield Client()


def call(client: Client, path: str, auth: Sequence[str] = (), **kwargs: Any) -> Answer:
    extra = {"HTTP_AUTHORIZATION": ", ".join(auth)} if auth else {}  # as a server joins them
    method = kwargs.pop("method", "GET")
    response: HttpResponse = client.generic(
        method, path, headers=kwargs.pop("headers", {}), **extra
    )
    return Answer(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.content,
    )


@pytest.mark.parametrize("case", CASES)
def test_case_table(case: Case, issuer: LocalIssuer, client: Client) -> None:
    answer = call(client, case.path, case.auth(issuer), method=case.method, headers=case.headers)
    check(case, answer)


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        pytest.param(["read:items"], 200, id="granted"),
        pytest.param(["write:items"], 403, id="missing-scope"),
        pytest.param(None, 401, id="no-token"),
    ],
)
def test_class_based_view_with_method_decorator(
    scopes: list[str] | None, status: int, issuer: LocalIssuer, client: Client
) -> None:
    auth = [] if scopes is None else [f"Bearer {issuer.mint(subject='gus', scopes=scopes)}"]
    answer = call(client, "/cbv", auth)
    assert answer.status == status
    if status == 200:
        assert answer.json() == {"sub": "gus"}
    elif status == 403:
        check_refusal(answer, 403, "insufficient_scope", "read:items")
    else:
        check_refusal(answer, 401, None)


def test_claims_and_guard_in_request_meta(issuer: LocalIssuer, client: Client) -> None:
    answer = call(client, "/meta", [f"Bearer {issuer.mint()}"])
    assert answer.json() == {"same": True, "guard": "Guard"}


def test_optional_mode(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    with guarded(verifier, optional=True):
        client = Client()
        assert call(client, "/me").json() == {"sub": None}
        check_refusal(call(client, "/items"), 401, None)
        check_refusal(call(client, "/me", ["Bearer x.y.z"]), 401, "invalid_token")
        assert call(client, "/me", [f"Bearer {issuer.mint(subject='hal')}"]).json() == {
            "sub": "hal"
        }


def test_error_handler_as_dotted_path(verifier: TokenVerifier) -> None:
    with guarded(verifier, error_handler=f"{__name__}.shape"):
        answer = call(Client(), "/me", ["Bearer x.y.z"])
    assert (answer.status, answer.body, answer.headers["x-error-code"]) == (401, b"{}", "malformed")


def broken(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
    if exc.status == 400:
        return ErrorResponse(400, [("x-evil", "a\r\nset-cookie: x=1")], b"")
    raise RuntimeError("handler bug")


@pytest.mark.parametrize(
    ("auth", "status", "error"),
    [
        pytest.param(["Bearer a b"], 400, "invalid_request", id="handler-returns-a-split-header"),
        pytest.param(["Bearer x.y.z"], 401, "invalid_token", id="handler-raises"),
    ],
)
def test_broken_error_handler_falls_back(
    verifier: TokenVerifier, auth: list[str], status: int, error: str
) -> None:
    with guarded(verifier, error_handler=f"{__name__}.broken"):
        answer = call(Client(), "/me", auth)
    check_refusal(answer, status, error)
    assert "x-evil" not in answer.headers


def test_keys_unavailable_is_503() -> None:
    with LocalIssuer() as down, verifier_for(down) as verifier, guarded(verifier):
        token = down.mint()
        down.set_fault(JWKSFault.DOWN)
        answer = call(Client(), "/me", [f"Bearer {token}"])
        down.set_fault(None)
    assert answer.status == 503
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["error"] == "temporarily_unavailable"


async def _async_hook(claims: Any) -> bool:  # verify() cannot await it: every request was a 500
    return False


@pytest.mark.parametrize(
    ("jwt_guard", "message"),
    [
        pytest.param(None, "needs settings.JWT_GUARD", id="missing"),
        pytest.param({}, "pass verifier=", id="empty"),
        pytest.param(
            {"issuer": "https://i.test/", "audiense": "x"},
            r"settings\.JWT_GUARD\['audiense'\]: no such option; did you mean 'audience'\?",
            id="typo",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "exclude_path": ["/h"]},
            r"settings\.JWT_GUARD\['exclude_path'\]: no such option; did you mean 'exclude_paths'",
            id="typo-middleware-option",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "exclude_paths": "/health"},
            r"settings\.JWT_GUARD\['exclude_paths'\]: give a list of paths",
            id="paths-as-a-string",
        ),
        pytest.param(
            {"issuer": "", "audience": "x"},
            r"settings\.JWT_GUARD\['issuer'\]: must be the exact 'iss'",
            id="empty-issuer",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "optional": "false"},
            r"settings\.JWT_GUARD\['optional'\]: must be True or False",
            id="optional-as-a-string",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "prefetch": "yes"},
            r"settings\.JWT_GUARD\['prefetch'\]: must be True or False",
            id="prefetch-as-a-string",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "error_handler": "no.such.handler"},
            r"settings\.JWT_GUARD\['error_handler'\]: cannot import 'no\.such\.handler'",
            id="handler-not-importable",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "exclude_paths": ["h"]},
            "must start with '/'",
            id="relative-path",
        ),
        pytest.param(
            {"issuer": "https://i.test/", "audience": "x", "is_revoked": _async_hook},
            "ASGI middleware",
            id="async-hook",
        ),
        pytest.param(
            {
                "issuer": "http://127.0.0.1:9/",
                "audience": "x",
                "jwks_url": "http://127.0.0.1:9/jwks.json",  # discard port: nothing listens
                "prefetch": True,
            },
            "could not fetch signing keys",
            id="prefetch-wrong-jwks-url",
        ),
    ],
)
def test_bad_settings_raise_improperly_configured(
    jwt_guard: dict[str, Any] | None, message: str
) -> None:
    with override_settings(JWT_GUARD=jwt_guard), pytest.raises(ImproperlyConfigured, match=message):
        JWTGuardMiddleware(sub)


TAMPERED: list[list[str]] = []


def tamper_view(request: HttpRequest) -> JsonResponse:
    TAMPERED.append(tamper(get_claims(request)))
    request.META[CLAIMS_KEY] = None  # this request's own META: nothing shared
    return JsonResponse({"tried": True})


def test_the_shared_claims_are_read_only(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    """The claims in ``request.META`` are shared by every request with the same token: a view
    that alters them must fail, and a later request must see the token as it is."""
    TAMPERED.clear()
    urls = type(
        "urls",
        (),
        {"urlpatterns": [path("tamper", tamper_view), path("items", require_scopes("admin")(sub))]},
    )
    token = [f"Bearer {issuer.mint(scopes=['read'], claims={'realm_access': {'roles': []}})}"]
    with guarded(verifier), override_settings(ROOT_URLCONF=urls):
        client = Client()
        for _ in range(2):  # verified, then answered from the cache
            assert call(client, "/tamper", token).json() == {"tried": True}
        check_refusal(call(client, "/items", token), 403, "insufficient_scope", "admin")
    assert len(TAMPERED) == 2
    assert all("changed" not in seen for seen in TAMPERED), TAMPERED


def test_a_refusal_is_not_logged_again_by_django(
    issuer: LocalIssuer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Django logs every 4xx as ``WARNING django.request``; a refusal jwt_guard already logged
    (once, at INFO) is marked as logged so Django does not repeat it. Django's own 4xx stay."""
    with caplog.at_level(logging.INFO):
        assert call(client, "/me").status == 401
        assert call(client, "/items", [f"Bearer {issuer.mint()}"]).status == 403
        assert call(client, "/cbv").status == 401
    assert [r.name for r in caplog.records if r.getMessage().startswith("rejected ")] == [
        "jwt_guard.verifier"
    ] * 3
    assert not [r for r in caplog.records if r.name == "django.request"]
    with (
        override_settings(ROOT_URLCONF=type("urls", (), {"urlpatterns": []})),
        caplog.at_level(logging.INFO),
    ):
        assert call(client, "/nowhere", [f"Bearer {issuer.mint()}"]).status == 404
    assert [r.levelname for r in caplog.records if r.name == "django.request"] == ["WARNING"]
