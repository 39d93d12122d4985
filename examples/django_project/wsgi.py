"""WSGI entry point, e.g. ``gunicorn django_project.wsgi`` from the ``examples/`` directory.

Two ways to guard the project; use one, not both:

* ``JWTGuardMiddleware`` in ``settings.MIDDLEWARE`` (the default here): checks run inside
  Django, so Django's test Client sees them too;
* ``JWTGuardWSGI`` around the whole application (below, when ``JWT_GUARD_AT_WSGI=1``, which
  also takes the middleware out of the settings): the same checks, with the same options,
  before Django is reached.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from jwt_guard import JWTGuardWSGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

application = get_wsgi_application()
if settings.GUARD_AT_WSGI:
    application = JWTGuardWSGI(application, **settings.JWT_GUARD)
