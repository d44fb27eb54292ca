"""Health endpoints: ``/health`` while the process runs, ``/ready`` while it accepts traffic."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .node import get_node


async def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def ready(request: HttpRequest) -> JsonResponse:
    node = get_node()
    problem = await node.readiness_problem()
    if problem is not None:
        return JsonResponse({"status": "unavailable", "reason": problem}, status=503)
    return JsonResponse({"status": "ready"})
