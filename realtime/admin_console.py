"""The admin's live console for one app: its page, its event stream, test events, channels.

The page is an ordinary admin view. The rest are async views under the same admin URLs, each
checking the staff user itself (``AdminSite.admin_view`` wraps sync views only): the stream is
server-sent events (one long response: the app's records as they happen, its figures every
``FIGURES_SECONDS``), test events go through the HTTP API's own publish, and the inspector reads
the shared state. No secret, key pair or auth signature is ever part of an answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from .api.errors import ApiError
from .api.views import publish_event
from .cluster.base import StateUnavailable
from .credentials import AppCredentials
from .models import WebhookDelivery
from .protocol.names import channel_kind
from .runtime import Runtime, get_runtime
from .runtime.console import STATS_SECONDS, Watcher

# How often the stream sends the app's figures, in seconds.
FIGURES_SECONDS = 2.0
# Presence channels whose members are counted for the figures (the first ones by name).
MAX_PRESENCE_COUNTED = 50
# How long the stream lets records gather before it sends them, in seconds.
BATCH_SECONDS = 0.25
# A stream ends after this long; the browser reconnects by itself (``retry``), and the session
# and permissions are checked again. Neither a revoked login nor a server that waits for open
# responses on shutdown (uvicorn) keeps one going for longer.
MAX_STREAM_SECONDS = 300.0
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0


async def _allowed(request: HttpRequest, change: bool = False) -> bool:
    """Whether the request's user may read the console (view or change apps, as the admin's own
    view permission), or with ``change`` publish from it."""
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return False
    permissions = ("realtime.change_app",) if change else ("realtime.view_app", "realtime.change_app")
    return any([await sync_to_async(user.has_perm)(permission) for permission in permissions])


def _refused() -> JsonResponse:
    return JsonResponse({"error": "Staff members with access to apps only"}, status=403)


async def _app(runtime: Runtime, app_id: str) -> AppCredentials | None:
    await runtime.start()
    return await runtime.credentials.by_id(app_id)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _delivery_counts(app_id: str) -> tuple[int, int]:
    deliveries = WebhookDelivery.objects.filter(app_id=app_id)
    return (
        deliveries.filter(status=WebhookDelivery.PENDING).count(),
        deliveries.filter(status=WebhookDelivery.FAILED).count(),
    )


_shared: dict[str, tuple[float, dict[str, Any]]] = {}


async def figures(runtime: Runtime, app_id: str, watcher: Watcher | None = None) -> dict[str, Any]:
    """The app's live figures, cluster-wide with Redis: ``connections``, ``channels`` by type,
    presence ``members``, ``messages_in``/``messages_out`` per second (every node's last report),
    webhook deliveries ``pending`` and ``failed``. The state's figures are read once per
    ``FIGURES_SECONDS`` and app on this node, however many consoles show them."""
    now = time.monotonic()
    read_at, shared = _shared.get(app_id, (0.0, {}))
    if now - read_at >= FIGURES_SECONDS * 0.9:
        shared = await _state_figures(runtime, app_id)
        _shared[app_id] = (now, shared)
        for stale in [key for key, (at, _) in _shared.items() if now - at > 10 * FIGURES_SECONDS]:
            del _shared[stale]
    fresh = now - 3 * STATS_SECONDS
    rates = [rate for rate in (watcher.rates.values() if watcher else ()) if rate[2] >= fresh]
    return {
        **shared,
        "messages_in": round(sum(rate[0] for rate in rates), 1),
        "messages_out": round(sum(rate[1] for rate in rates), 1),
        "nodes": len(rates),
    }


async def _state_figures(runtime: Runtime, app_id: str) -> dict[str, Any]:
    state = runtime.state
    channels = await state.channels(app_id)
    by_type = Counter(channel_kind(name).label for name in channels)
    presence = sorted(name for name in channels if channel_kind(name).presence)[:MAX_PRESENCE_COUNTED]
    members = 0
    for name in presence:
        members += await state.member_count(app_id, name)
    pending, failed = await sync_to_async(_delivery_counts)(app_id)
    return {
        "connections": await state.connection_count(app_id),
        "channels": dict(by_type),
        "members": members,
        "pending": pending,
        "failed": failed,
    }


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(runtime: Runtime, app_id: str) -> AsyncIterator[str]:
    console = runtime.console
    watcher = console.watch(app_id)
    # Read before the first await: a record arriving meanwhile is in the queue, not also here.
    backlog = console.recent(app_id)
    try:
        yield (
            "retry: 2000\n"
            + "".join(_event("record", record) for record in backlog)
            + _event("hello", {"app": app_id})
        )
        next_figures = 0.0
        next_keepalive = time.monotonic() + KEEPALIVE_SECONDS
        while True:
            now = time.monotonic()
            if now >= next_figures:
                next_figures = now + FIGURES_SECONDS
                try:
                    yield _event("figures", await figures(runtime, app_id, watcher))
                except StateUnavailable:
                    yield _event("figures", {"unavailable": True})
            records = watcher.take()
            if records:
                yield "".join(_event("record", record) for record in records)
                next_keepalive = now + KEEPALIVE_SECONDS
            elif now >= next_keepalive:
                yield ": keep-alive\n\n"
                next_keepalive = now + KEEPALIVE_SECONDS
            try:
                await asyncio.wait_for(watcher.ready.wait(), max(0.05, next_figures - time.monotonic()))
            except TimeoutError:
                pass
            else:
                # Records come in bursts: one write per burst, not one per record.
                await asyncio.sleep(BATCH_SECONDS)
    finally:
        console.unwatch(watcher)


async def stream(request: HttpRequest, object_id: str) -> HttpResponse:
    """``GET .../console/stream/``: the app's records and figures as server-sent events."""
    if not await _allowed(request):
        return _refused()
    runtime = get_runtime()
    if await _app(runtime, object_id) is None:
        return JsonResponse({"error": "No such app"}, status=404)
    response = StreamingHttpResponse(_stream(runtime, object_id), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return _no_store(response)


async def publish(request: HttpRequest, object_id: str) -> HttpResponse:
    """``POST .../console/publish/`` with ``{"channel", "event", "data"}`` (JSON): a test event
    through the HTTP API's publish; answers what the API would (its JSON, or its error)."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    if not await _allowed(request, change=True):
        return _refused()
    runtime = get_runtime()
    app = await _app(runtime, object_id)
    if app is None:
        return JsonResponse({"error": "No such app"}, status=404)
    try:
        form = json.loads(request.body)
        body = {"name": form["event"], "channel": form["channel"], "data": form["data"]}
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "Give channel, event and data"}, status=400)
    try:
        answer = await publish_event(runtime, app, body)
    except ApiError as error:
        return JsonResponse({"error": error.message}, status=error.status)
    except StateUnavailable as exc:
        return JsonResponse({"error": exc.message}, status=503)
    return _no_store(JsonResponse({"published": True, "answer": answer}))


async def channels(request: HttpRequest, object_id: str) -> HttpResponse:
    """``GET .../console/channels/``: occupied channels with their subscription counts; with
    ``?channel=presence-...``, that channel's members."""
    if not await _allowed(request):
        return _refused()
    runtime = get_runtime()
    if await _app(runtime, object_id) is None:
        return JsonResponse({"error": "No such app"}, status=404)
    try:
        channel = request.GET.get("channel")
        if channel:
            if not channel_kind(channel).presence:
                return JsonResponse({"error": "Members are listed for presence channels only"}, status=400)
            members = await runtime.state.members(object_id, channel)
            return _no_store(JsonResponse({"channel": channel, "members": members}))
        occupied = await runtime.state.channels(object_id)
    except StateUnavailable as exc:
        return JsonResponse({"error": exc.message}, status=503)
    listed = {
        name: {"type": channel_kind(name).label, "subscription_count": n} for name, n in occupied.items()
    }
    return _no_store(JsonResponse({"channels": dict(sorted(listed.items()))}))
