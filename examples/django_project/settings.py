"""Settings: ``JWTGuardMiddleware`` checks every request, configured by ``JWT_GUARD``."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "django_project.urls"
WSGI_APPLICATION = "django_project.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

JWT_GUARD = {
    "issuer": os.environ.get("JWT_GUARD_ISSUER", "https://idp.example.com/"),
    "audience": os.environ.get("JWT_GUARD_AUDIENCE", "my-api"),
    "jwks_url": os.environ.get("JWT_GUARD_JWKS_URL"),  # None: OpenID discovery from the issuer
    "exclude_paths": ["/health"],
}

# Guard inside Django (what Django's test Client exercises) or, with JWT_GUARD_AT_WSGI=1, in
# wsgi.py around the whole application. One or the other, never both.
GUARD_AT_WSGI = os.environ.get("JWT_GUARD_AT_WSGI") == "1"
MIDDLEWARE = [] if GUARD_AT_WSGI else ["jwt_guard.django.JWTGuardMiddleware"]
