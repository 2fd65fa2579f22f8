"""Response headers Django has no setting for."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin


class PermissionsPolicyMiddleware(MiddlewareMixin):
    """Adds the Permissions-Policy header of settings.PERMISSIONS_POLICY.

    The setting maps a feature to the origins allowed to use it: `{"camera": []}` denies the camera to
    every origin (`camera=()`), `{"fullscreen": ["self"]}` allows it to the site only.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if settings.PERMISSIONS_POLICY and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = ", ".join(
                f"{feature}=({' '.join(origins)})" for feature, origins in settings.PERMISSIONS_POLICY.items()
            )
        return response
