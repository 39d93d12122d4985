"""The app the end-to-end binding tests run in a real server: one route behind a guard built
from ``JWT_GUARD_*`` variables (``JWTGuard.from_env``), answering with the token's subject and
its confirmation."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwt_guard import JWTGuard


async def me(request: Request) -> JSONResponse:
    claims = request.user.claims
    cnf = claims.confirmation
    return JSONResponse({"sub": claims.subject, "cnf": None if cnf is None else cnf.to_dict()})


app = JWTGuard.from_env(Starlette(routes=[Route("/me", me)]))
