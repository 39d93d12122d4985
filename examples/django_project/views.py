"""Views: one public, one needing ``read:items`` (class-based), one reading the claims."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View

from jwt_guard.decorators import require_scopes
from jwt_guard.django import get_claims


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@method_decorator(require_scopes("read:items"), name="dispatch")
class ItemsView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"items": ["apple", "pear"]})


def me(request: HttpRequest) -> JsonResponse:
    claims = get_claims(request)  # None only on excluded paths (or with "optional": True)
    if claims is None:
        return JsonResponse({"authenticated": False})
    return JsonResponse(
        {"authenticated": True, "sub": claims.subject, "scopes": sorted(claims.scopes)}
    )
