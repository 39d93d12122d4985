"""A Django project with Django REST framework, guarded by jwt_guard, for ASGI and WSGI servers.

Run it from the ``examples/`` directory, with your identity provider's values::

    export JWT_GUARD_ISSUER=https://idp.example.com/ JWT_GUARD_AUDIENCE=my-api
    uvicorn drf_project.asgi:application        # ASGI: the middleware runs on the event loop
    gunicorn drf_project.wsgi:application       # WSGI: the same project, synchronously

No database: the users are the tokens (``jwt_guard.django.TokenUser``).
"""
