"""WSGI entry point: ``gunicorn drf_project.wsgi:application`` from the ``examples/`` directory."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drf_project.settings")

application = get_wsgi_application()
