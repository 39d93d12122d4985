"""A minimal Django project protected by jwt_guard (no database, no apps).

Run it from the ``examples/`` directory, with your identity provider's values::

    export JWT_GUARD_ISSUER=https://idp.example.com/ JWT_GUARD_AUDIENCE=my-api
    export JWT_GUARD_JWKS_URL=https://idp.example.com/.well-known/jwks.json
    python -m django runserver --settings=django_project.settings
"""
