from __future__ import annotations

from django.urls import path

from .replies.consumer import ChatConsumer

websocket_urlpatterns = [path("ws/chat/<int:conversation_id>/", ChatConsumer.as_asgi())]
