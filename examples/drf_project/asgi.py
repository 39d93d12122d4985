"""ASGI entry point: ``uvicorn drf_project.asgi:application`` from the ``examples/`` directory."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drf_project.settings")

application = get_asgi_application()
