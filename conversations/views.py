"""Pages and form posts. Thin: authorize, validate, call a service, render. Everything works without JS;
htmx and the websocket make it better."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from billing.services import SpendRefused, budget_status

from . import attachments, fragments, inputs, search, services, web
from .catalog import EFFORTS, model_info, takes_effort
from .meters import meter_for
from .models import Attachment, Conversation, Message, Preset
from .organise_views import from_header, header_tools
from .replies import intents, price
from .replies.claude import ClaudeError
from .sidebar import current_conversation, sidebar_page

EMPTY_MESSAGE = "Type a message first."


def _before(request: HttpRequest) -> int | None:
    return inputs.parse_int(request.GET.get("before"))


def _page_context(
    request: HttpRequest,
    conversation: Conversation | None,
    *,
    models: inputs.ModelChoice | None = None,
    **extra,
) -> dict:
    """The page's context; `models` is the user's model choice when the caller read it already."""
    chat_messages, earlier_before = (
        conversation.messages.page(before=_before(request)) if conversation else ([], None)
    )
    models = models or inputs.model_choice(request.user.pk)
    # A conversation on a model the owner's team no longer allows replies on their default next
    # (`store.reply_model`): the picker shows that one already.
    model = models.allowed_or_default(conversation.model) if conversation else models.default
    return {
        "conversation": conversation,
        "sidebar": sidebar_page(request.user),
        "presets": Preset.objects.offered_to(request.user) if conversation is None else (),
        "sharing": settings.CHAT_SHARING,
        "chat_messages": chat_messages,
        "earlier_before": earlier_before,
        "latest_id": chat_messages[-1].pk if chat_messages and not _before(request) else -1,
        "context_from": conversation.context_from if conversation else 0,
        "meter": meter_for(conversation) if conversation else None,
        "busy": bool(conversation) and conversation.messages.filter(status=Message.Status.STREAMING).exists(),
        "budget_exhausted": budget_status(request.user).state == "exhausted",
        "models": models.offered,
        "default_model": models.default,
        "conversation_model": model,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "max_system_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        "stop_sequences_text": inputs.stop_sequences_text(conversation.stop_sequences)
        if conversation
        else "",
        "max_stop_sequences": inputs.MAX_STOP_SEQUENCES,
        # The Web switch is shown (and a new conversation may start with it on) where it is offered.
        "web_offered": web.web_offered(request.user.pk),
        "effort_choices": EFFORTS if conversation and takes_effort(model) else (),
        "effort_default": model_info(model).default_effort if conversation else "",
        "attachment_limits": {
            "files": settings.CHAT_MAX_ATTACHMENTS,
            "image_bytes": settings.CHAT_MAX_IMAGE_BYTES,
            "pdf_bytes": settings.CHAT_MAX_PDF_BYTES,
            "text_bytes": settings.CHAT_MAX_TEXT_BYTES,
            "accept": attachments.ACCEPT,
        },
        # Uploaded but not sent yet (e.g. the page was reloaded): still in the composer. The home page's
        # are those uploaded there (no conversation yet).
        "pending_attachments": Attachment.objects.filter(
            owner=request.user, conversation=conversation, message__isnull=True
        ),
        **extra,
    }


def _owned_conversation(request: HttpRequest, pk: int) -> Conversation:
    return get_object_or_404(Conversation.objects.owned_by(request.user), pk=pk)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/conversation.html", _page_context(request, None))


@login_required
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    # Opened from a search hit in another version (`message_show`): say which version is shown.
    version, found = inputs.parse_int(request.GET.get("version")), inputs.parse_int(request.GET.get("found"))
    note = (
        search.version_note(conversation=conversation, version_id=version, found_id=found) if version else ""
    )
    return render(
        request, "conversations/conversation.html", _page_context(request, conversation, found_note=note)
    )


@login_required
@require_POST
async def message_show(request: HttpRequest, pk: int) -> HttpResponse:
    """Open a search hit: the conversation at one of the user's messages, switched to the branch it is
    on when it is another version (as "<" ">" would), the page saying so and the hit highlighted."""
    user = await request.auser()
    try:
        message, switched = await intents.reveal(user=user, message_id=pk)
    except inputs.NotFound:
        raise Http404 from None
    except inputs.InvalidInput as exc:
        flash.error(request, str(exc))
        message = await Message.objects.owned_by(user).aget(pk=pk)
        return redirect(message.conversation)
    return redirect(
        search.hit_url(
            conversation_id=message.conversation_id,
            message_id=message.pk,
            query=request.POST.get("q", ""),
            version_id=switched.pk if switched else None,
        )
    )


@login_required
@require_GET
def message_source(request: HttpRequest, pk: int) -> HttpResponse:
    """The markdown a message was written in, as plain text: what a reply's Copy puts on the clipboard
    (fences, tables and emphasis kept), for a reloaded page and a reply that streamed in alike."""
    message = get_object_or_404(Message.objects.owned_by(request.user), pk=pk)
    response = HttpResponse(message.content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"  # a reply still written, or retried in place, changes
    return response


@login_required
def conversation_earlier(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Show earlier": the messages before `?before=`, with a link to the ones before those (htmx);
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


def _conversation_create(user, model: object, preset_id: object, web_on: bool) -> Conversation:
    """An empty conversation from the home page's choices (checked here, at the edge: the model among
    the ones the user's team allows)."""
    preset = services.preset_offered(user=user, preset_id=preset_id)
    models = inputs.model_choice(user.pk)
    with transaction.atomic():  # refused (the web not offered): no conversation either
        return services.conversation_create(
            owner=user, model=models.clean_optional(model) or models.default, preset=preset, web=web_on
        )


@login_required
@require_POST
async def conversation_create(request: HttpRequest) -> HttpResponse:
    """Create a conversation from the home page's composer, with its first message if one was typed or
    files go with it (uploaded from the home page's composer, or posted with the form without JS)."""
    user = await request.auser()
    text = request.POST.get("message", "")
    has_files = bool(request.POST.getlist("attachments") or request.FILES.getlist("files"))
    if text and not text.strip() and not has_files:
        # Only spaces: nothing to send, and no empty conversation made for it.
        return await sync_to_async(_render_page_with_error)(request, None, EMPTY_MESSAGE, text)
    model, preset = request.POST.get("model"), request.POST.get("preset")
    web_on = request.POST.get("web") == "1"
    stored: list[Attachment] = []
    try:
        if (
            text.strip() or has_files
        ):  # the conversation and its first message are stored together, or neither
            stored = await _store_posted_files(request, user, None)
            ids = request.POST.getlist("attachments") + [a.pk for a in stored]
            reply = await intents.start_conversation(
                owner=user, text=text, model=model, preset_id=preset, attachment_ids=ids, web=web_on
            )
            return redirect(reply.conversation)
        conversation = await sync_to_async(_conversation_create)(user, model, preset, web_on)
    except (inputs.InvalidInput, SpendRefused, attachments.AttachmentError) as exc:
        for attachment in stored:
            await sync_to_async(attachment.delete)()
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
    conversation = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    text = request.POST.get("message", "")
    stored: list[Attachment] = []
    try:
        # Files posted with the form (no JavaScript): all checked before any is stored.
        stored = await _store_posted_files(request, user, conversation)
        ids = request.POST.getlist("attachments") + [a.pk for a in stored]
        await intents.send(conversation=conversation, text=text, attachment_ids=ids)
    except (inputs.InvalidInput, SpendRefused, attachments.AttachmentError) as exc:
        for attachment in stored:
            await sync_to_async(attachment.delete)()
        return await sync_to_async(_render_page_with_error)(request, conversation, str(exc), text)
    return redirect(conversation)


# Decoding and scaling an image takes a fraction of a second of CPU (bench/attachments.py): it runs in
# a thread of its own, not the one thread every synchronous view of this worker shares.
_check_upload = sync_to_async(attachments.check_upload, thread_sensitive=False)


async def _store_posted_files(
    request: HttpRequest, user, conversation: Conversation | None
) -> list[Attachment]:
    """The files posted with the composer (no JavaScript): all checked before any is stored, then stored
    as uploads are (within the person's quota of files not sent yet); none stays when one is refused.
    None: the home page's composer (the conversation is made with the message)."""
    uploads = request.FILES.getlist("files")
    if len(uploads) + len(request.POST.getlist("attachments")) > settings.CHAT_MAX_ATTACHMENTS:
        raise attachments.AttachmentError(
            f"At most {settings.CHAT_MAX_ATTACHMENTS} files can be attached to a message."
        )
    checked = [await _check_upload(upload) for upload in uploads]
    add = sync_to_async(attachments.attachment_add)
    stored: list[Attachment] = []
    try:
        for upload in checked:
            stored.append(await add(owner=user, conversation=conversation, checked=upload))
    except attachments.AttachmentError:
        for attachment in stored:
            await sync_to_async(attachment.delete)()
        raise
    return stored


@login_required
@require_POST
async def attachment_upload(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """One file from the composer (picker, drop or paste): its chip, or the reason it was refused (400).
    Without `pk`, from the home page's composer: pending until the first message makes a conversation."""
    user = await request.auser()
    conversation = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk) if pk else None
    upload = request.FILES.get("file")
    if upload is None:
        return HttpResponse("Choose a file to attach.", status=400, content_type="text/plain; charset=utf-8")
    try:
        checked = await _check_upload(upload)
        attachment = await sync_to_async(attachments.attachment_add)(
            owner=user, conversation=conversation, checked=checked
        )
    except attachments.AttachmentError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    return HttpResponse(fragments.attachment_chip(attachment))


@login_required
@require_POST
async def price_line(request: HttpRequest, pk: int) -> HttpResponse:
    """The line under the box: the price of sending the draft (`message`, with the pending `attachments`)
    now. POST with the CSRF token (the draft may be long); counting is free and bills nothing."""
    user = await request.auser()
    conversation = await aget_object_or_404(
        Conversation.objects.owned_by(user).select_related("owner"), pk=pk
    )
    text = request.POST.get("message", "")
    context: dict = {"parts": [], "token": ""}
    try:
        ids = attachments.clean_ids(request.POST.getlist("attachments"))
    except attachments.AttachmentError as exc:
        ids, context["parts"] = [], [str(exc)]
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        context["parts"] = [
            f"The message is too long to send (the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,} characters)."
        ]
    elif (text.strip() or ids) and not context["parts"] and not price.ask_allowed(user.pk):
        context["parts"] = ["The price line pauses for a moment: many drafts were priced this minute."]
    elif (text.strip() or ids) and not context["parts"]:
        try:
            estimate = await price.estimate(conversation, text, ids)
        except ClaudeError as exc:
            context["parts"] = [f"No price estimate now: {exc.user_message}"]
        else:
            context.update(parts=price.line(estimate), token=estimate.token, near=estimate.near_budget)
    return render(request, "conversations/conversation.html#price_line", context)


@login_required
@require_POST
def attachment_discard(request: HttpRequest, pk: int) -> HttpResponse:
    """A chip's remove button (htmx deletes the chip on this empty 200): the pending attachment and its
    file are deleted."""
    if not attachments.attachment_discard(owner=request.user, attachment_id=pk):
        raise Http404
    return HttpResponse()


@login_required
def attachment_file(request: HttpRequest, pk: int) -> FileResponse:
    """An attachment's file, to its owner only (anyone else: 404), never cached by shared caches."""
    attachment = get_object_or_404(Attachment, pk=pk, owner=request.user)
    response = FileResponse(attachment.file.open("rb"), content_type=attachment.media_type)
    # Images show inline (the page's thumbnails); a PDF downloads: no viewer of the browser's runs it
    # on this origin.
    disposition = "inline" if attachment.kind == Attachment.Kind.IMAGE else "attachment"
    suffix = attachment.file.name[attachment.file.name.rfind(".") :]
    response["Content-Disposition"] = f'{disposition}; filename="{attachment.pk}{suffix}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _intent_view(action: str):
    """A form-post view running one intent of `intents.INTENTS` (stop, retry, continue, branch, delete
    version) on one of the user's messages, with the intent's form fields."""
    intent = intents.INTENTS[action]

    @login_required
    @require_POST
    async def view(request: HttpRequest, pk: int) -> HttpResponse:
        user = await request.auser()
        try:
            message = await intent.run(user=user, message_id=pk, **intent.arguments(request.POST))
        except inputs.NotFound:
            raise Http404 from None
        except (inputs.InvalidInput, SpendRefused) as exc:
            flash.error(request, str(exc))
            message = await Message.objects.owned_by(user).aget(pk=pk)
        return redirect(message.conversation)

    return view


reply_stop_view = _intent_view("stop")
reply_retry_view = _intent_view("retry")
reply_continue_view = _intent_view("continue")
message_branch_view = _intent_view("branch")
message_delete_version_view = _intent_view("delete_version")


@login_required
async def message_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit one of the user's messages: GET shows the form (in place with htmx, else as a page of its
    own) with the message's files, POST sends the edited version (a new branch) without JavaScript,
    carrying the files the form shows. On an error the form comes back as it was sent, files included."""
    user = await request.auser()
    message = await aget_object_or_404(
        Message.objects.owned_by(user).select_related("conversation"), pk=pk, role=Message.Role.USER
    )
    if request.method != "POST":
        return await sync_to_async(_render_edit)(request, message, message.content)
    text = request.POST.get("message", "")
    keep, added = request.POST.getlist("keep"), request.POST.getlist("attachments")
    if "drop" in request.POST:  # a file's remove button, without JavaScript: the form again without it
        keep = [kept for kept in keep if kept != request.POST["drop"]]
        return await sync_to_async(_render_edit)(request, message, text, keep=keep, added=added)
    try:
        # Files chosen in the form (no JavaScript) are stored first: after a refusal they stay as chips.
        added += [str(a.pk) for a in await _store_posted_files(request, user, message.conversation)]
        await intents.edit(user=user, message_id=pk, text=text, keep_ids=keep, attachment_ids=added)
    except inputs.NotFound:
        raise Http404 from None
    except (inputs.InvalidInput, SpendRefused, attachments.AttachmentError) as exc:
        context = {"keep": keep, "added": added, "error": str(exc), "status": 400}
        return await sync_to_async(_render_edit)(request, message, text, **context)
    return redirect(message.conversation)


def _render_edit(
    request: HttpRequest,
    message: Message,
    draft: str,
    *,
    keep: list[str] | None = None,
    added: list[str] = (),
    error: str = "",
    status: int = 200,
):
    """The edit form with `draft` and the files it carries: the message's own that are kept (all of
    them when `keep` is None) and the person's pending uploads `added` (ids nobody may use are left out)."""
    kept = message.attachments.all()
    if keep is not None:
        kept = kept.filter(pk__in=_ids(keep))
    pending = Attachment.objects.filter(
        owner=request.user, conversation=message.conversation, message__isnull=True, pk__in=_ids(added)
    )
    context = {
        "conversation": message.conversation,
        "message": message,
        "edit_draft": draft,
        "edit_kept": kept,
        "edit_added": pending,
        "error": error,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "attachment_limits": {"files": settings.CHAT_MAX_ATTACHMENTS},
    }
    if request.htmx:
        return render(request, "conversations/conversation.html#edit_form", context, status=status)
    return render(request, "conversations/message_edit.html", context, status=status)


def _ids(values: list[str]) -> list[int]:
    return [n for n in (inputs.parse_int(v) for v in values) if n is not None]


@login_required
@require_POST
def conversation_settings(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    models = inputs.model_choice(request.user.pk)  # the owner's: the conversation is theirs
    extra: dict = {}
    try:
        services.conversation_update_settings(
            conversation=conversation, **inputs.clean_settings(request.POST, models)
        )
        extra["settings_saved"] = True
    except inputs.InvalidInput as exc:
        extra["settings_error"] = str(exc)
    if request.htmx:
        # Saved: the panel closes (its summary says so); refused: it stays open with the error.
        open_ = "settings_error" in extra
        context = _page_context(request, conversation, models=models, settings_open=open_, **extra)
        return render(request, "conversations/conversation.html#settings", context)
    if "settings_error" in extra:
        flash.error(request, extra["settings_error"])
    return redirect(conversation)


@login_required
@require_POST
def conversation_web(request: HttpRequest, pk: int) -> HttpResponse:
    """The Web switch (`web` = "1" or "0"), for the conversation's next messages. With htmx the answer is
    the switch itself (with the reason when turning it on was refused); without, back to the page."""
    conversation = _owned_conversation(request, pk)
    error = ""
    try:
        conversation = web.conversation_web_set(conversation=conversation, on=request.POST.get("web") == "1")
    except inputs.InvalidInput as exc:
        error = str(exc)
    if request.htmx:
        context = {
            "conversation": conversation,
            "web_offered": web.web_offered(request.user.pk),
            "web_error": error,
        }
        return render(
            request, "conversations/conversation.html#web_switch", context, status=400 if error else 200
        )
    if error:
        flash.error(request, error)
    return redirect(conversation)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename from the sidebar. With htmx the answer is the sidebar item (still highlighted if it is
    the open conversation), plus that page's heading and tab title; a bad title is an error inside
    the item, with what was typed kept. Without htmx: back to the page, or the page with the error."""
    conversation = _owned_conversation(request, pk)
    title = request.POST.get("title", "")
    try:
        services.conversation_rename(conversation=conversation, title=inputs.clean_title(title))
    except inputs.InvalidInput as exc:
        if from_header(request):
            return header_tools(
                request, conversation, header_rename_error=str(exc), header_rename_value=title
            )
        error = {"rename_error": str(exc), "rename_pk": conversation.pk, "rename_value": title}
        if request.htmx:
            context = {"item": conversation, "conversation": current_conversation(request), **error}
            return render(request, "conversations/_sidebar_list.html#sidebar_item", context)
        current = current_conversation(request)
        context = _page_context(request, current, **error)
        return render(request, "conversations/conversation.html", context, status=400)
    if from_header(request):
        return header_tools(request, conversation)
    if request.htmx:
        current = current_conversation(request)
        renamed = conversation if current is not None and current.pk == conversation.pk else None
        return render(
            request,
            "conversations/conversation.html#renamed",
            {"item": conversation, "conversation": renamed, "oob": True},
        )
    return redirect(conversation)


@login_required
def conversation_delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned_conversation(request, pk)
    if request.method == "POST":
        services.conversation_delete(conversation=conversation)
        flash.success(request, f"Deleted “{conversation.display_title}”.")
        return redirect("home")
    return render(request, "conversations/conversation_confirm_delete.html", {"conversation": conversation})
