"""The app of the multi-process fleet test (tests/test_e2e_fleet.py), run by uvicorn workers.

Configured from ``JWT_GUARD_*`` (the issuer, and the fleet's store: ``JWT_GUARD_STORE_URL``,
``JWT_GUARD_FLEET_SECRET``, ``JWT_GUARD_STORE_NAMESPACE``), keys fetched and the deny-list
loaded at start-up (``prefetch=True``); DPoP-bound tokens are accepted with a proof, whose
``jti`` the workers remember in the shared store. Every answer, refusals included, names the worker
(``x-worker``: its pid); ``/fleet`` (open) reports the worker's store.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwt_guard import ErrorResponse, JWTGuard, JWTGuardError, TokenVerifier

WORKER = str(os.getpid())
PUBLIC_URL = "https://fleet.test"  # what DPoP proofs name (htu): configuration, never Host
verifier = TokenVerifier.from_env()


async def me(request: Request) -> JSONResponse:
    claims = request.scope["jwt_guard.claims"]
    return JSONResponse({"sub": claims["sub"]}, headers={"x-worker": WORKER})


async def fleet(request: Request) -> JSONResponse:
    return JSONResponse({"store": verifier.health().get("store")}, headers={"x-worker": WORKER})


def named(exc: JWTGuardError, response: ErrorResponse) -> ErrorResponse:
    return ErrorResponse(response.status, [*response.headers, ("x-worker", WORKER)], response.body)


app: Any = JWTGuard(
    Starlette(routes=[Route("/me", me), Route("/fleet", fleet)]),
    verifier=verifier,
    exclude_paths=["/fleet"],
    prefetch=True,
    error_handler=named,
    dpop="allowed",  # proofs are remembered in the fleet's store (JWT_GUARD_STORE_URL)
    public_url=PUBLIC_URL,
)
