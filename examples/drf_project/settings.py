"""Settings: ``JWTGuardMiddleware`` in front, DRF's defaults set to jwt_guard's classes."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "drf_project.urls"
ASGI_APPLICATION = "drf_project.asgi.application"
WSGI_APPLICATION = "drf_project.wsgi.application"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

JWT_GUARD = {
    "issuer": os.environ.get("JWT_GUARD_ISSUER", "https://idp.example.com/"),
    "audience": os.environ.get("JWT_GUARD_AUDIENCE", "my-api"),
    "jwks_url": os.environ.get("JWT_GUARD_JWKS_URL"),  # None: OpenID discovery from the issuer
    "exclude_paths": ["/health"],
}

# Async capable: under ASGI Django calls it on the event loop, without a thread hop.
MIDDLEWARE = ["jwt_guard.django.JWTGuardMiddleware"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["jwt_guard.drf.JWTGuardAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["jwt_guard.drf.HasScopes"],  # each view's required_scopes
}
