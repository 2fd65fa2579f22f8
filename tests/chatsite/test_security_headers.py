"""Every page is served under a strict Content-Security-Policy and a Permissions-Policy, and carries no
inline script, style or event handler the policy would refuse (the browser test watches it run)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from conversations.rendering import render_markdown
from tests.billing.billing_factories import record_call
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    directives = (part.split() for part in response["Content-Security-Policy"].split(";"))
    return {name: values for name, *values in directives}


class InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' refuses: inline scripts and styles lacking the
    response's nonce, style attributes and on* handler attributes."""

    def __init__(self, nonce: str):
        super().__init__()
        self.nonce = nonce
        self.refused: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in attributes:
            if name == "style" or name.startswith("on"):
                self.refused.append(f"<{tag} {name}=…>")
        executable = tag == "script" and attributes.get("type", "text/javascript") in (
            "text/javascript",
            "module",
        )
        inline = (tag == "script" and "src" not in attributes and executable) or tag == "style"
        if inline and attributes.get("nonce") != self.nonce:
            self.refused.append(f"<{tag}> without the nonce")


def refused_inline_code(response) -> list[str]:
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    parser = InlineCode(nonce.group(1) if nonce else "")
    parser.feed(response.content.decode())
    return parser.refused


def test_responses_carry_a_strict_csp_and_a_permissions_policy(client):
    response = client.get("/accounts/login/")
    csp = policy(response)
    assert csp["default-src"] == ["'self'"]
    for kind in ("script-src", "style-src"):
        assert csp[kind][0] == "'self'" and csp[kind][1].startswith("'nonce-") and len(csp[kind]) == 2
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert "unsafe" not in response["Content-Security-Policy"]

    features = dict(item.split("=") for item in response["Permissions-Policy"].split(", "))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert features[feature] == "()"
    # A fresh nonce per response.
    assert policy(client.get("/accounts/login/"))["script-src"] != csp["script-src"]


def test_htmx_is_set_up_to_need_no_eval_and_inject_no_style(client):
    page = client.get("/accounts/login/").content.decode()
    config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1)
    assert '"allowEval": false' in config and '"includeIndicatorStyles": false' in config
    assert '"allowScriptTags": false' in config
    assert "inlineScriptNonce" not in config  # it would hand the nonce to scripts in swapped HTML
    assert page.index('name="htmx-config"') < page.index("htmx-2")


def test_no_page_carries_inline_code_the_policy_refuses(client):
    staff = make_user("boss", is_staff=True, is_superuser=True)
    chat = make_conversation(staff, title="A chat")
    make_message(chat, role="user", content="| a | b |\n|:-|-:|\n| 1 | 2 |")
    reply = make_message(
        chat, role="assistant", content="| a | b |\n|:-|-:|\n| 1 | 2 |\n\n```python\nx = 1\n```"
    )
    record_call(staff, conversation=chat, message=reply, input_tokens=10, output_tokens=5)
    pages = [
        "/accounts/login/",
        "/admin/login/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert refused_inline_code(response) == [], url

    client.force_login(staff)
    pages = [
        "/",
        chat.get_absolute_url(),
        "/usage/",
        f"/usage/receipt/{reply.pk}/",
        "/accounts/password/",
        "/admin/",
        "/admin/billing/usagerecord/",
        "/admin/billing/usagerecord/dashboard/",
        f"/admin/billing/usagerecord/dashboard/user/{staff.pk}/",
        "/admin/billing/modelprice/add/",
        f"/admin/auth/user/{staff.pk}/change/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert refused_inline_code(response) == [], url


def test_markdown_table_alignment_is_a_class_not_an_inline_style():
    html = render_markdown("| a | b | c |\n|:-|:-:|-:|\n| 1 | 2 | 3 |")
    assert "style=" not in html
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">3</td>' in html
    assert '<td class="align-center">2</td>' in html
