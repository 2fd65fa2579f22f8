from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<int:pk>/", views.conversation_detail, name="conversation"),
    path("c/<int:pk>/earlier/", views.conversation_earlier, name="conversation_earlier"),
    path("c/<int:pk>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<int:pk>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<int:pk>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<int:pk>/send/", views.message_send, name="message_send"),
    path("c/<int:pk>/attachments/", views.attachment_upload, name="attachment_upload"),
    path("a/<int:pk>/", views.attachment_file, name="attachment"),
    path("a/<int:pk>/remove/", views.attachment_discard, name="attachment_discard"),
    path("m/<int:pk>/stop/", views.reply_stop_view, name="reply_stop"),
    path("m/<int:pk>/retry/", views.reply_retry_view, name="reply_retry"),
    path("m/<int:pk>/continue/", views.reply_continue_view, name="reply_continue"),
    path("m/<int:pk>/edit/", views.message_edit, name="message_edit"),
    path("m/<int:pk>/branch/", views.message_branch_view, name="message_branch"),
    path("m/<int:pk>/delete-version/", views.message_delete_version_view, name="message_delete_version"),
]
