from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health),
    path("me", views.me),
    path("api/items", views.ItemList.as_view()),
    path("api/admin", views.Admin.as_view()),
]
