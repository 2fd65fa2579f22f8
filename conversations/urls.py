from __future__ import annotations

from django.urls import path

from . import organise_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<int:pk>/", views.conversation_detail, name="conversation"),
    path("c/<int:pk>/earlier/", views.conversation_earlier, name="conversation_earlier"),
    path("c/<int:pk>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<int:pk>/web/", views.conversation_web, name="conversation_web"),
    path("c/<int:pk>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<int:pk>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<int:pk>/send/", views.message_send, name="message_send"),
    path("c/<int:pk>/pin/", organise_views.conversation_pin, name="conversation_pin"),
    path("c/<int:pk>/archive/", organise_views.conversation_archive, name="conversation_archive"),
    path("c/<int:pk>/export.md", organise_views.conversation_export, {"extension": "md"}, name="export_md"),
    path(
        "c/<int:pk>/export.json",
        organise_views.conversation_export,
        {"extension": "json"},
        name="export_json",
    ),
    path("c/<int:pk>/share/", organise_views.share_create, name="share_create"),
    path("c/<int:pk>/share/revoke/", organise_views.share_revoke, name="share_revoke"),
    path("s/<str:token>/", organise_views.shared_conversation, name="shared_conversation"),
    path("search/", organise_views.search, name="search"),
    path("conversations/", organise_views.sidebar_more, name="sidebar_more"),
    path("archived/", organise_views.archived_list, name="archived"),
    path("export/", organise_views.export_all, name="export_all"),
    path("import/", organise_views.conversation_import, name="conversation_import"),
    path("presets/", organise_views.presets, name="presets"),
    path("presets/<int:pk>/delete/", organise_views.preset_delete, name="preset_delete"),
    path("c/<int:pk>/attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/", views.attachment_upload, name="attachment_upload_new"),
    path("c/<int:pk>/price/", views.price_line, name="price_line"),
    path("a/<int:pk>/", views.attachment_file, name="attachment"),
    path("a/<int:pk>/remove/", views.attachment_discard, name="attachment_discard"),
    path("m/<int:pk>/stop/", views.reply_stop_view, name="reply_stop"),
    path("m/<int:pk>/retry/", views.reply_retry_view, name="reply_retry"),
    path("m/<int:pk>/continue/", views.reply_continue_view, name="reply_continue"),
    path("m/<int:pk>/source/", views.message_source, name="message_source"),
    path("m/<int:pk>/show/", views.message_show, name="message_show"),
    path("m/<int:pk>/edit/", views.message_edit, name="message_edit"),
    path("m/<int:pk>/branch/", views.message_branch_view, name="message_branch"),
    path("m/<int:pk>/delete-version/", views.message_delete_version_view, name="message_delete_version"),
]
