"""A minimal Django project protected by jwt_guard (no database, no apps).

Run it from the ``examples/`` directory, with your identity provider's values::

    export JWT_GUARD_ISSUER=https://idp.example.com/ JWT_GUARD_AUDIENCE=my-api
    python -m django runserver --settings=django_project.settings

The keys are found through OpenID discovery (``JWT_GUARD_JWKS_URL`` names a JWKS instead).
"""
