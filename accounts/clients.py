"""Who is asking: the client's network address, as far as a request lets it be trusted (behind the
proxies the operator declared). Used by the login throttle and the sign-up mail limits."""

from __future__ import annotations

from ipaddress import ip_address

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the client's address, as far as it can be trusted.

    Without proxies, the TCP peer's. Behind CHAT_TRUSTED_PROXY_COUNT proxies that each append the address
    they received from to X-Forwarded-For, the one the outermost proxy saw: that many entries from the
    right. Entries further left were sent by the client and prove nothing. A request that did not come
    through every proxy, or an entry that is not an address, gives the peer's (the proxy's) address.
    """
    peer = request.META.get("REMOTE_ADDR") or None
    count = settings.CHAT_TRUSTED_PROXY_COUNT
    if count <= 0:
        return peer
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < count:
        return peer
    try:
        return str(ip_address(forwarded[-count]))
    except ValueError:
        return peer
