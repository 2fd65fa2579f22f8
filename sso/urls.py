from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("start/", views.SsoStart.as_view(), name="sso_start"),
    path("callback/", views.callback, name="sso_callback"),
]
