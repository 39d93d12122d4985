"""The Flask example and the Django example project, imported and exercised against LocalIssuer."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from werkzeug.test import Client as WSGIClient

from _common import verifier_for
from _wsgi_helpers import Answer, check_refusal, ensure_django
from jwt_guard import ConfigurationError, JWTGuardWSGI
from jwt_guard.testing import LocalIssuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Call = Callable[..., Answer]


@pytest.fixture(scope="module")
def env(issuer: LocalIssuer) -> Iterator[pytest.MonkeyPatch]:
    """``examples/`` importable and the JWT_GUARD_* variables pointing at ``issuer``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLES))
        patch.setenv("JWT_GUARD_ISSUER", issuer.issuer)
        patch.setenv("JWT_GUARD_AUDIENCE", issuer.audience)
        patch.setenv("JWT_GUARD_JWKS_URL", issuer.jwks_url)
        patch.delenv("JWT_GUARD_AT_WSGI", raising=False)
        yield patch


def fresh(name: str) -> ModuleType:
    """Import ``name`` anew, so module-level code runs under the current environment."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def wsgi_caller(app: Any) -> Call:
    def call(path: str, token: str | None = None) -> Answer:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        with WSGIClient(app).get(path, headers=headers) as response:
            return Answer(
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                response.get_data(),
            )

    return call


def exercise(call: Call, issuer: LocalIssuer) -> None:
    """The same walk through both examples: public, scoped, claims, refused."""
    assert call("/health").json() == {"status": "ok"}
    check_refusal(call("/me"), 401, None)
    check_refusal(call("/items", "not.a.token"), 401, "invalid_token")
    check_refusal(call("/items", issuer.mint()), 403, "insufficient_scope", "read:items")
    reader = issuer.mint(subject="ivy", scopes=["read:items", "profile"])
    assert call("/items", reader).json() == {"items": ["apple", "pear"]}
    assert call("/me", reader).json() == {
        "authenticated": True,
        "sub": "ivy",
        "scopes": ["profile", "read:items"],
    }


def test_flask_example_create_app(env: pytest.MonkeyPatch, issuer: LocalIssuer) -> None:
    flask_app = fresh("flask_app")
    with verifier_for(issuer) as verifier:
        app = flask_app.create_app(verifier)
        assert isinstance(app.wsgi_app, JWTGuardWSGI)
        client = app.test_client()

        def call(path: str, token: str | None = None) -> Answer:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            with client.get(path, headers=headers) as response:
                return Answer(
                    response.status_code,
                    {k.lower(): v for k, v in response.headers.items()},
                    response.get_data(),
                )

        exercise(call, issuer)


def test_flask_example_module_app_from_env(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch, issuer: LocalIssuer
) -> None:
    exercise(wsgi_caller(fresh("flask_app").app), issuer)
    monkeypatch.delenv("JWT_GUARD_JWKS_URL")  # the issuer and audience alone: discovery
    issuer.reset_counts()
    exercise(wsgi_caller(fresh("flask_app").create_app()), issuer)  # what `flask --app` calls
    assert issuer.discovery_requests == 1
    monkeypatch.delenv("JWT_GUARD_AUDIENCE")
    with pytest.raises(ConfigurationError, match="set JWT_GUARD_AUDIENCE"):
        fresh("flask_app").app  # noqa: B018


@pytest.fixture
def django_example(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], ModuleType]]:
    """Apply the example's settings (read from the environment at call time) to Django."""
    ensure_django()
    from django.test import override_settings

    monkeypatch.setenv(
        "DJANGO_SETTINGS_MODULE", "django_project.settings"
    )  # what wsgi.py would set
    applied: list[Any] = []

    def apply() -> ModuleType:
        settings = fresh("django_project.settings")
        names = ("ROOT_URLCONF", "MIDDLEWARE", "JWT_GUARD", "GUARD_AT_WSGI")
        override = override_settings(
            **{name: getattr(settings, name) for name in names},
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
        )
        override.enable()
        applied.append(override)
        return settings

    yield apply
    for override in reversed(applied):
        override.disable()


def test_django_example_with_middleware(
    django_example: Callable[[], ModuleType], issuer: LocalIssuer
) -> None:
    from django.test import Client

    settings = django_example()
    assert settings.MIDDLEWARE == ["jwt_guard.django.JWTGuardMiddleware"]
    client = Client()

    def call(path: str, token: str | None = None) -> Answer:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = client.get(path, headers=headers)
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    exercise(call, issuer)
    # wsgi.py serves the same project, guarded by the middleware alone
    application = fresh("django_project.wsgi").application
    assert not isinstance(application, JWTGuardWSGI)
    exercise(wsgi_caller(application), issuer)


def test_django_example_guarded_in_wsgi_py(
    django_example: Callable[[], ModuleType], monkeypatch: pytest.MonkeyPatch, issuer: LocalIssuer
) -> None:
    monkeypatch.setenv("JWT_GUARD_AT_WSGI", "1")
    settings = django_example()
    assert settings.MIDDLEWARE == []
    application = fresh("django_project.wsgi").application
    assert isinstance(application, JWTGuardWSGI)
    exercise(wsgi_caller(application), issuer)


def test_django_example_with_the_issuer_and_audience_alone(
    django_example: Callable[[], ModuleType], monkeypatch: pytest.MonkeyPatch, issuer: LocalIssuer
) -> None:
    monkeypatch.delenv("JWT_GUARD_JWKS_URL")
    monkeypatch.setenv("JWT_GUARD_AT_WSGI", "1")
    settings = django_example()
    assert settings.JWT_GUARD["jwks_url"] is None
    issuer.reset_counts()
    exercise(wsgi_caller(fresh("django_project.wsgi").application), issuer)
    assert issuer.discovery_requests == 1
