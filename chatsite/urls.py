from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("conversations.account_urls")),
    path("usage/", include("billing.urls")),
    path("", include("conversations.urls")),
]
