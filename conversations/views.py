"""Pages and form posts. Thin: authorize, validate, call a service, render. Everything works without JS;
htmx and the websocket make it better."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from billing.services import SpendRefused

from . import replies, services
from .meters import meter_for
from .models import Conversation, Message


def _before(request: HttpRequest) -> int | None:
    value = request.GET.get("before", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def _page_context(request: HttpRequest, conversation: Conversation | None, **extra) -> dict:
    chat_messages, earlier_before = (
        conversation.messages.page(before=_before(request)) if conversation else ([], None)
    )
    return {
        "conversation": conversation,
        "conversations": Conversation.objects.owned_by(request.user)[:200],
        "chat_messages": chat_messages,
        "earlier_before": earlier_before,
        "latest_id": chat_messages[-1].pk if chat_messages and not _before(request) else -1,
        "context_from": conversation.context_from if conversation else 0,
        "meter": meter_for(conversation) if conversation else None,
        "busy": bool(conversation) and conversation.messages.filter(status=Message.Status.STREAMING).exists(),
        "models": settings.CHAT_MODELS,
        "default_model": settings.CHAT_DEFAULT_MODEL,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "max_system_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        "stop_sequences_text": services.stop_sequences_text(conversation.stop_sequences) if conversation else "",
        "max_stop_sequences": services.MAX_STOP_SEQUENCES,
        **extra,
    }


def _owned_conversation(request: HttpRequest, pk: int) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, owner=request.user)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/conversation.html", _page_context(request, None))


@login_required
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    return render(request, "conversations/conversation.html", _page_context(request, conversation))


@login_required
def conversation_earlier(request: HttpRequest, pk: int) -> HttpResponse:
    """"Show earlier": the messages before `?before=`, with a link to the ones before those (htmx);
    without htmx, the whole page showing them."""
    conversation = _owned_conversation(request, pk)
    if not request.htmx:
        return redirect(f"{conversation.get_absolute_url()}?before={_before(request) or ''}#messages")
    chat_messages, earlier_before = conversation.messages.page(before=_before(request))
    context = {
        "conversation": conversation,
        "chat_messages": chat_messages,
        "earlier_before": earlier_before,
        "latest_id": -1,  # earlier messages are never the latest
        "context_from": conversation.context_from,
    }
    return render(request, "conversations/conversation.html#message_list", context)


@login_required
@require_POST
async def conversation_create(request: HttpRequest) -> HttpResponse:
    """Create a conversation from the home page's composer, with its first message if one was typed."""
    user = await request.auser()
    text = request.POST.get("message", "")
    try:
        conversation = await sync_to_async(services.conversation_create)(
            owner=user, model=request.POST.get("model")
        )
    except services.InvalidInput as exc:
        return await sync_to_async(_render_page_with_error)(request, None, str(exc), text)
    if text.strip():
        try:
            await replies.send(conversation=conversation, text=text)
        except (services.InvalidInput, SpendRefused) as exc:
            await sync_to_async(services.conversation_delete)(conversation=conversation)
            return await sync_to_async(_render_page_with_error)(request, None, str(exc), text)
    return redirect(conversation)


def _render_page_with_error(
    request: HttpRequest, conversation: Conversation | None, error: str, draft: str
) -> HttpResponse:
    """The page again with the error shown and what the person typed kept in the composer."""
    context = _page_context(request, conversation, error=error, draft=draft)
    return render(request, "conversations/conversation.html", context, status=400)


@login_required
@require_POST
async def message_send(request: HttpRequest, pk: int) -> HttpResponse:
    """The composer without JavaScript (with JS it goes over the websocket)."""
    user = await request.auser()
    conversation = await Conversation.objects.filter(pk=pk, owner=user).afirst()
    if conversation is None:
        raise Http404
    text = request.POST.get("message", "")
    try:
        await replies.send(conversation=conversation, text=text)
    except (services.InvalidInput, SpendRefused) as exc:
        return await sync_to_async(_render_page_with_error)(request, conversation, str(exc), text)
    return redirect(conversation)


def _reply_action_view(intent, *fields: str):
    """A form-post view running one of `replies`' intents (stop, regenerate, continue, branch) on one
    of the user's messages, with the named form `fields` as keyword arguments."""

    @login_required
    @require_POST
    async def view(request: HttpRequest, pk: int) -> HttpResponse:
        user = await request.auser()
        try:
            message = await intent(user=user, message_id=pk, **{f: request.POST.get(f) for f in fields})
        except services.NotFound:
            raise Http404 from None
        except (services.InvalidInput, SpendRefused) as exc:
            flash.error(request, str(exc))
            message = await Message.objects.select_related("conversation").aget(
                pk=pk, conversation__owner=user
            )
        return redirect(message.conversation)

    return view


reply_stop_view = _reply_action_view(replies.stop)
reply_retry_view = _reply_action_view(replies.regenerate)
reply_continue_view = _reply_action_view(replies.continue_reply)
message_branch_view = _reply_action_view(replies.branch, "index")
message_delete_version_view = _reply_action_view(replies.delete_version)


@login_required
async def message_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit one of the user's messages: GET shows the form (in place with htmx, else as a page of its
    own), POST sends the edited version (a new branch) without JavaScript. On an error the form comes
    back with what was typed in it."""
    user = await request.auser()
    message = await Message.objects.select_related("conversation").filter(
        pk=pk, conversation__owner=user, role=Message.Role.USER
    ).afirst()
    if message is None:
        raise Http404
    if request.method != "POST":
        return await sync_to_async(_render_edit)(request, message, message.content)
    text = request.POST.get("message", "")
    try:
        await replies.edit(user=user, message_id=pk, text=text)
    except services.NotFound:
        raise Http404 from None
    except (services.InvalidInput, SpendRefused) as exc:
        return await sync_to_async(_render_edit)(request, message, text, error=str(exc), status=400)
    return redirect(message.conversation)


def _render_edit(request: HttpRequest, message: Message, draft: str, *, error: str = "", status: int = 200):
    context = {
        "conversation": message.conversation,
        "message": message,
        "edit_draft": draft,
        "error": error,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }
    if request.htmx:
        return render(request, "conversations/conversation.html#edit_form", context, status=status)
    return render(request, "conversations/message_edit.html", context, status=status)


@login_required
@require_POST
def conversation_settings(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    extra: dict = {}
    try:
        services.conversation_update_settings(
            conversation=conversation,
            model=request.POST.get("model"),
            system_prompt=request.POST.get("system_prompt", ""),
            stop_sequences=request.POST.get("stop_sequences"),
        )
        extra["settings_saved"] = True
    except services.InvalidInput as exc:
        extra["settings_error"] = str(exc)
    if request.htmx:
        context = _page_context(request, conversation, settings_open=True, **extra)
        return render(request, "conversations/conversation.html#settings", context)
    if "settings_error" in extra:
        flash.error(request, extra["settings_error"])
    return redirect(conversation)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except services.InvalidInput as exc:
        if request.htmx:
            return HttpResponse(str(exc), status=400)
        flash.error(request, str(exc))
    if request.htmx:
        return render(request, "conversations/conversation.html#sidebar_item", {"item": conversation})
    return redirect(conversation)


@login_required
def conversation_delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    if request.method == "POST":
        services.conversation_delete(conversation=conversation)
        flash.success(request, f"Deleted “{conversation.display_title}”.")
        return redirect("home")
    return render(request, "conversations/conversation_confirm_delete.html", {"conversation": conversation})
