"""Views: an async Django view reading the token user, and two DRF views needing scopes."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jwt_guard.drf import HasScopes


async def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def me(request: HttpRequest) -> JsonResponse:
    # request.user: a jwt_guard.django.TokenUser; request.auth: the verified Claims
    return JsonResponse(
        {
            "sub": request.user.get_username(),
            "scopes": sorted(request.auth.scopes),  # type: ignore[attr-defined]
            "can_read_items": await request.user.ahas_perm("read:items"),
        }
    )


class ItemList(APIView):
    required_scopes = ("read:items",)  # checked by HasScopes, the default permission

    def get(self, request: Request) -> Response:
        return Response({"items": ["apple", "pear"], "user": str(request.user)})


class Admin(APIView):
    permission_classes = (HasScopes("admin", "ops", any_of=True),)

    def get(self, request: Request) -> Response:
        return Response({"admin": True})
