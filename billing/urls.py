from __future__ import annotations

from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.my_usage, name="my_usage"),
    path("cap/", views.personal_cap, name="personal_cap"),
    path("receipt/<int:message_pk>/", views.receipt, name="receipt"),
]
