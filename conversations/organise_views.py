"""Pages and form posts for finding and keeping conversations: search, the sidebar's pages, pin and
archive, presets, export and import, read-only share links. Thin, like views.py: authorize, validate,
call a service or a read, render. Each works as a plain form post or link; htmx makes some better."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.db import OperationalError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit.services import audit_record

from . import inputs, services, transfer
from . import search as search_module
from .models import Conversation, Preset, ShareLink, share_token_hash
from .sidebar import current_conversation, sidebar_page

SIDEBAR = "conversations/_sidebar_list.html"
SIDEBAR_HITS = 20  # messages the sidebar lists while its box filters (the search page lists more)


def _owned(request: HttpRequest, pk: int) -> Conversation:
    return get_object_or_404(Conversation.objects.owned_by(request.user), pk=pk)


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Redirect to the form's `next` (a path on this site) or to `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def _sidebar_fragment(request: HttpRequest, current: Conversation | None) -> HttpResponse:
    return render(request, SIDEBAR, {"sidebar": sidebar_page(request.user), "conversation": current})


def from_header(request: HttpRequest) -> bool:
    """Whether an htmx action came from the open conversation's header (its tools answer) rather than
    from the sidebar."""
    return bool(request.htmx) and request.POST.get("place") == "header"


def header_tools(request: HttpRequest, conversation: Conversation, **extra) -> HttpResponse:
    """The header's tools after one of their actions, with the page's heading, tab title and sidebar
    out of band (all from the page's own partials)."""
    context = {
        "conversation": conversation,
        "sharing": settings.CHAT_SHARING,
        "sidebar": sidebar_page(request.user),
        "oob": True,
        **extra,
    }
    return render(request, "conversations/conversation.html#header_tools", context)


def _list_page(request: HttpRequest, *, archived: bool) -> HttpResponse:
    page = sidebar_page(request.user, after=request.GET.get("after"), archived=archived)
    if request.htmx and not archived:
        return render(request, f"{SIDEBAR}#sidebar_page", {"sidebar": page})
    return render(
        request,
        "conversations/conversation_list.html",
        {"page": page, "archived": archived, "after": request.GET.get("after", "")},
    )


@login_required
@require_GET
def sidebar_more(request: HttpRequest) -> HttpResponse:
    """The sidebar's next page: list items for htmx (loaded as the sidebar scrolls), else a page."""
    return _list_page(request, archived=False)


@login_required
@require_GET
def archived_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, archived=True)


@login_required
@require_POST
def conversation_pin(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned(request, pk)
    services.conversation_pin(conversation=conversation, pinned=request.POST.get("pinned") == "1")
    if from_header(request):
        return header_tools(request, conversation)
    if request.htmx:
        return _sidebar_fragment(request, current_conversation(request))
    return _back(request, conversation.get_absolute_url())


@login_required
@require_POST
def conversation_archive(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned(request, pk)
    archived = request.POST.get("archived") == "1"
    services.conversation_archive(conversation=conversation, archived=archived)
    flash.success(
        request,
        f"Archived “{conversation.display_title}”."
        if archived
        else f"“{conversation.display_title}” is back in the sidebar.",
    )
    if from_header(request):
        return header_tools(request, conversation)
    if request.htmx:
        return _sidebar_fragment(request, current_conversation(request))
    return _back(request, conversation.get_absolute_url())


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    in_sidebar = bool(request.htmx) and request.htmx.target == "conversation-list"
    if in_sidebar and not query.strip():  # the box emptied: the sidebar's own list again
        context = {"sidebar": sidebar_page(request.user), "conversation": current_conversation(request)}
        return render(request, f"{SIDEBAR}#sidebar_entries", context)
    context: dict = {"query": query, "results": None, "error": ""}
    if query.strip():
        try:
            limit = SIDEBAR_HITS if in_sidebar else search_module.RESULTS
            context["results"] = search_module.search(user=request.user, query=query, limit=limit)
        except search_module.SearchError as exc:
            context["error"] = str(exc)
    if in_sidebar:
        context["conversation"] = current_conversation(request)
        return render(request, "conversations/search.html#sidebar_results", context)
    if request.htmx:
        return render(request, "conversations/search.html#results", context)
    context["sidebar"] = sidebar_page(request.user)
    return render(request, "conversations/search.html", context)


# Export and import


@login_required
@require_GET
def conversation_export(request: HttpRequest, pk: int, extension: str) -> HttpResponse:
    conversation = _owned(request, pk)
    if extension == "json":
        body, content_type = transfer.conversation_json_text(conversation), "application/json; charset=utf-8"
    else:
        body, content_type = transfer.conversation_markdown(conversation), "text/markdown; charset=utf-8"
    audit_record(
        action="export.conversation",
        obj=conversation,
        object_label=f"conversation #{conversation.pk}",  # not its title: the log keeps entries for good
        after={"format": extension},
    )
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = (
        f'attachment; filename="{transfer.conversation_filename(conversation, extension)}"'
    )
    return response


@login_required
@require_GET
def export_all(request: HttpRequest) -> FileResponse:
    archive = transfer.user_archive(request.user)
    audit_record(action="export.all", obj=request.user, after={"format": "zip"})
    name = f"teamchat-{request.user.get_username()}.zip"
    return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")


@login_required
def conversation_import(request: HttpRequest) -> HttpResponse:
    """A page to upload a JSON export; the upload becomes a new conversation of the person's."""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            error = "Choose a conversation file (.json) to import."
        elif upload.size > settings.CHAT_IMPORT_MAX_BYTES:
            error = (
                f"The file is too large to import (the limit is {settings.CHAT_IMPORT_MAX_BYTES:,} bytes)."
            )
        else:
            try:
                conversation = transfer.conversation_import(owner=request.user, data=upload.read())
            except inputs.InvalidInput as exc:
                error = str(exc)
            except OperationalError:  # the database stayed locked or unreachable: nothing was written
                error = "The server is busy right now: nothing was imported. Try again in a moment."
            else:
                flash.success(request, f"Imported “{conversation.display_title}”.")
                return redirect(conversation)
        return render(request, "conversations/import.html", {"error": error}, status=400)
    return render(request, "conversations/import.html", {})


# Presets


@login_required
def presets(request: HttpRequest) -> HttpResponse:
    """The person's own presets (create, delete) and the site-wide ones staff published."""
    context: dict = {}
    status = 200
    if request.method == "POST":
        try:
            services.preset_create(
                owner=request.user,
                name=inputs.clean_preset_name(request.POST.get("name")),
                system_prompt=inputs.clean_preset_prompt(request.POST.get("system_prompt")),
            )
        except inputs.InvalidInput as exc:
            context |= {
                "error": str(exc),
                "name": request.POST.get("name", ""),
                "prompt": request.POST.get("system_prompt", ""),
            }
            status = 400
        else:
            flash.success(request, "Preset saved. Pick it when you start a conversation.")
            return redirect("presets")
    context |= {
        "own": Preset.objects.filter(owner=request.user).order_by("name", "id"),
        "site_wide": Preset.objects.filter(owner__isnull=True, published=True).order_by("name", "id"),
        "max_system_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
    }
    return render(request, "conversations/presets.html", context, status=status)


@login_required
@require_POST
def preset_delete(request: HttpRequest, pk: int) -> HttpResponse:
    preset = get_object_or_404(Preset, pk=pk, owner=request.user)
    services.preset_delete(preset=preset)
    flash.success(request, f"Deleted the preset “{preset.name}”.")
    return redirect("presets")


# Read-only share links


def _share_response(request: HttpRequest, conversation: Conversation, **context) -> HttpResponse:
    context |= {"conversation": conversation, "sharing": settings.CHAT_SHARING}
    if request.htmx:
        return render(request, "conversations/_share.html", context)
    return render(
        request, "conversations/share.html", context, status=400 if context.get("share_error") else 200
    )


@login_required
@require_POST
def share_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Make (or remake) the conversation's read-only link and show it, once."""
    conversation = _owned(request, pk)
    try:
        token = services.share_create(conversation=conversation)
    except inputs.InvalidInput as exc:
        return _share_response(request, conversation, share_error=str(exc))
    url = request.build_absolute_uri(f"/s/{token}/")
    return _share_response(request, conversation, share_url=url)


@login_required
@require_POST
def share_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _owned(request, pk)
    services.share_revoke(conversation=conversation)
    return _share_response(request, conversation, share_revoked=True)


@never_cache
@require_GET
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only page of a shared conversation: no login, its messages only (no costs, no
    receipts, nothing of the owner's other conversations)."""
    if not settings.CHAT_SHARING or len(token) > 100:
        raise Http404
    link = ShareLink.objects.select_related("conversation").filter(token_hash=share_token_hash(token)).first()
    if link is None:
        raise Http404
    conversation = link.conversation
    before = request.GET.get("before", "")
    before_id = int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None
    chat_messages, earlier_before = conversation.messages.page(before=before_id)
    response = render(
        request,
        "conversations/shared.html",
        {"conversation": conversation, "chat_messages": chat_messages, "earlier_before": earlier_before},
    )
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
