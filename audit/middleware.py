"""Remember the request while it is handled, so audit entries name its user as the actor."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .services import acting_request


class AuditActorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        with acting_request(request):
            return self.get_response(request)

    async def _acall(self, request):
        with acting_request(request):
            return await self.get_response(request)
