"""HTTP API views: authenticate, validate, then publish through the broker or answer from the state.

Views are async and never touch the ORM directly (credentials come from the runtime's cache).
Every failure is an ``ApiError`` rendered in ``api_view`` (a backend outage is a 503); nothing
else turns into a response (https://pusher.com/docs/channels/library_auth_reference/rest-api/).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..cluster.base import StateUnavailable
from ..credentials import AppCredentials
from ..protocol import frames
from ..protocol.names import channel_kind, channel_name_error, event_name_error
from ..protocol.socket_ids import is_valid_socket_id
from ..runtime import Runtime, changes, get_runtime
from ..runtime.addresslimits import API_REQUESTS
from .auth import authenticate
from .errors import ApiError, render

logger = logging.getLogger(__name__)

View = Callable[..., Awaitable[dict[str, Any]]]


# Metric label values must come from a bounded set: a client may send any method token.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _method_label(request: HttpRequest) -> str:
    method = request.method or "GET"
    return method if method in _METHODS else "other"


def _body_size(request: HttpRequest) -> int:
    # The declared length: reading the body again could raise (RequestDataTooBig).
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def api_view(endpoint: str, methods: tuple[str, ...], *, read: bool = False) -> Callable[[View], Any]:
    """Authenticate, rate-limit, run the view, render JSON or an ApiError, and count it.

    The view is called as ``view(runtime, request, app, **url_kwargs)`` and returns the JSON body.
    """

    def decorate(view: View) -> Any:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, app_id: str | None = None, **kwargs: Any) -> HttpResponse:
            started = time.perf_counter()
            runtime = get_runtime()
            stats = runtime.stats
            method = _method_label(request)
            app_label = ""
            try:
                if method not in methods:
                    raise ApiError(405, f"Method {method} not allowed")
                await runtime.start()
                limits = runtime.address_limits
                if limits.enabled(API_REQUESTS) and not await limits.check(
                    API_REQUESTS, limits.address_of_request(request.META)
                ):
                    message = "Too many requests from this address"
                    raise ApiError(429, message, retry_after=limits.retry_after())
                app = await authenticate(runtime.credentials, request, app_id)
                app_label = app.id
                limit = app.max_read_requests_per_second
                if read and not await _within_rate(runtime, app, "read_requests", limit, 1):
                    raise ApiError(429, "Too many read requests")
                response: HttpResponse = JsonResponse(await view(runtime, request, app, **kwargs))
            except StateUnavailable as exc:
                response = render(ApiError(503, exc.message))
            except RequestDataTooBig:
                response = render(ApiError(413, "Request body too large"))
            except (TooManyFieldsSent, SuspiciousOperation):
                response = render(ApiError(400, "Bad request"))
            except ApiError as error:
                if error.status == 401 or error.reason == "unknown_app":
                    stats.incr("api_authentication_failures", (error.app_id, error.reason))
                response = render(error)
            except Exception:
                runtime.errors.exception(logger, f"api:{endpoint}", "HTTP API error", endpoint=endpoint)
                stats.incr("errors", ("api",))
                response = render(ApiError(500, "Internal server error"))
            status = str(response.status_code)
            stats.incr("http_requests", (method, endpoint, status))
            if response.status_code >= 400:
                stats.incr("http_errors", (endpoint, status))
            stats.observe("http_request_duration", time.perf_counter() - started, (method, endpoint))
            stats.observe("http_response_size", len(response.content), (endpoint,), unit="bytes")
            if app_label:  # per app, for soketi's families (METRICS_COMPAT=soketi)
                stats.incr("http_calls_received", (app_label,))
                stats.incr("http_received_bytes", (app_label,), _body_size(request))
                stats.incr("http_transmitted_bytes", (app_label,), len(response.content))
            return response

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _json_body(request: HttpRequest) -> dict[str, Any]:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    try:
        # UTF-8 only (RFC 8259 §8.1); frames.loads turns deep nesting and lone surrogates into
        # ValueError, which would otherwise surface as a 500.
        body = frames.loads(request.body.decode())
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return body


def _info_attributes(raw: object) -> list[str]:
    if raw is None or raw == "":
        return []
    if not isinstance(raw, str):
        raise ApiError(400, "info must be a comma-separated string")
    return [attribute.strip() for attribute in raw.split(",") if attribute.strip()]


class _Event:
    __slots__ = ("channels", "data", "info", "name", "socket_id")

    def __init__(self, name: str, data: str, channels: list[str], socket_id: str | None, info: list[str]):
        self.name = name
        self.data = data
        self.channels = channels
        self.socket_id = socket_id
        self.info = info


def _validate_event(app: AppCredentials, body: dict[str, Any], *, batch: bool) -> _Event:
    name = body.get("name")
    if (reason := event_name_error(name)) is not None:
        raise ApiError(400, reason)
    data = body.get("data")
    if not isinstance(data, str):
        raise ApiError(400, "data must be a string")
    if len(data.encode()) > app.max_event_payload_kb * 1024:
        raise ApiError(413, f"Event data is larger than {app.max_event_payload_kb} KB")
    if "channels" in body and "channel" in body:
        raise ApiError(400, "Give either channel or channels, not both")
    channels = [body.get("channel")] if batch or "channel" in body else body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ApiError(400, "channels must be a non-empty list of channel names")
    if len(channels) > app.max_event_channels_at_once:
        raise ApiError(400, f"An event can be sent to at most {app.max_event_channels_at_once} channels")
    for channel in channels:
        if (reason := channel_name_error(channel, app.max_channel_name_length)) is not None:
            raise ApiError(400, f"{reason}: {str(channel)[:200]!r}")
    if len(channels) > 1 and any(channel_kind(c).encrypted for c in channels):
        raise ApiError(400, "Events to encrypted channels must go to exactly one channel")
    socket_id = body.get("socket_id")
    if socket_id is not None and not is_valid_socket_id(socket_id):
        raise ApiError(400, "socket_id is not a valid socket id")
    info = _info_attributes(body.get("info"))
    for attribute in info:
        _check_info_attribute(app, attribute, channels, allow_cache=False)
    return _Event(name, data, list(dict.fromkeys(channels)), socket_id, info)  # type: ignore[arg-type]


def _check_info_attribute(
    app: AppCredentials, attribute: str, channels: list[str], *, allow_cache: bool
) -> None:
    for channel in channels:
        kind = channel_kind(channel)
        if attribute == "user_count":
            if not kind.presence:
                raise ApiError(400, "user_count is only available for presence channels")
        elif attribute == "subscription_count":
            if kind.presence:
                raise ApiError(400, "subscription_count is not available for presence channels")
            if not app.enable_subscription_count:
                raise ApiError(
                    400, "subscription_count requires subscription counting to be enabled for the app"
                )
        elif attribute == "cache" and allow_cache:
            if not kind.cache:
                raise ApiError(400, "cache is only available for cache channels")
        else:
            raise ApiError(400, f"Unsupported info attribute: {attribute[:50]!r}")


async def _channel_info(
    runtime: Runtime, app: AppCredentials, channel: str, attributes: list[str]
) -> dict[str, Any]:
    state = runtime.state
    info: dict[str, Any] = {}
    for attribute in attributes:
        if attribute == "user_count":
            info["user_count"] = await state.member_count(app.id, channel)
        elif attribute == "subscription_count":
            info["subscription_count"] = await state.subscription_count(app.id, channel)
        elif attribute == "cache":
            cached = await state.cache_get(app.id, channel)
            info["cache"] = (
                {"data": json.loads(cached[0]).get("data"), "ttl": int(cached[1])} if cached else None
            )
    return info


async def _publish(runtime: Runtime, app: AppCredentials, event: _Event) -> dict[str, Any]:
    stats = runtime.stats
    started = time.perf_counter()
    for channel in event.channels:
        text = frames.encode_event(event.name, channel, event.data)
        await runtime.broker.publish(app.id, [channel], text, event.socket_id)
        stats.incr("broadcast_messages", (app.id, channel_kind(channel).label))
        runtime.console.record(app.id, "api_event", channel=channel, event=event.name, data=event.data)
        await changes.published(runtime, app, channel, text)
    stats.observe("message_processing_duration", time.perf_counter() - started, ("publish",))
    stats.observe("message_size", len(event.data), ("out",), unit="bytes")
    if not event.info:
        return {}
    return {channel: await _channel_info(runtime, app, channel, event.info) for channel in event.channels}


async def _within_rate(
    runtime: Runtime, app: AppCredentials, name: str, limit: int | None, cost: int
) -> bool:
    """Whether ``cost`` more operations of the app's limiter ``name`` fit ``limit`` per second (None:
    unlimited), cluster-wide; each decision is counted, a refusal as ``rate_limit_triggered`` too."""
    if limit is None:
        return True
    allowed = await runtime.state.allow_rate(app.id, name, limit, cost)
    stats = runtime.stats
    stats.incr("rate_limit_checks", (app.id, name, "allowed" if allowed else "rejected"))
    if not allowed:
        stats.incr("rate_limit_triggered", (app.id, name))
    return allowed


async def _backend_quota(runtime: Runtime, app: AppCredentials, cost: int) -> None:
    if not await _within_rate(runtime, app, "backend_events", app.max_backend_events_per_second, cost):
        raise ApiError(429, "Too many events: the app's backend event rate limit was reached")


@api_view("events", ("POST",))
async def trigger_event(runtime: Runtime, request: HttpRequest, app: AppCredentials) -> dict[str, Any]:
    """``POST /apps/{id}/events``: one event to 1-100 channels."""
    return await publish_event(runtime, app, _json_body(request))


async def publish_event(runtime: Runtime, app: AppCredentials, body: dict[str, Any]) -> dict[str, Any]:
    """Publish one event as ``POST /apps/{id}/events`` does (the admin console's test events take
    this path too): ``body`` is the endpoint's JSON (``name``, ``channel`` or ``channels``, ``data``,
    optional ``socket_id`` and ``info``); validated, counted against the app's backend event
    limit, published. Returns the endpoint's answer; raises ``ApiError`` (4xx) as the endpoint
    answers it, ``StateUnavailable`` when Redis is down.
    """
    event = _validate_event(app, body, batch=False)
    # With info the request counts as two messages
    # (https://pusher.com/docs/channels/library_auth_reference/rest-api/#post-event-trigger-an-event).
    await _backend_quota(runtime, app, 2 if event.info else 1)
    info = await _publish(runtime, app, event)
    return {"channels": info} if info else {}


@api_view("batch_events", ("POST",))
async def trigger_batch(runtime: Runtime, request: HttpRequest, app: AppCredentials) -> dict[str, Any]:
    """``POST /apps/{id}/batch_events``: up to the app's batch size of events."""
    body = _json_body(request)
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        raise ApiError(400, "batch must be a non-empty list of events")
    if len(batch) > app.max_event_batch_size:
        raise ApiError(400, f"A batch holds at most {app.max_event_batch_size} events")
    if not all(isinstance(item, dict) for item in batch):
        raise ApiError(400, "Every batch item must be an event object")
    validated = [_validate_event(app, item, batch=True) for item in batch]
    await _backend_quota(runtime, app, sum(2 if e.info else 1 for e in validated))
    results = [await _publish(runtime, app, event) for event in validated]
    if not any(event.info for event in validated):
        return {}
    return {
        "batch": [info.get(event.channels[0], {}) for event, info in zip(validated, results, strict=True)]
    }


@api_view("channels", ("GET",), read=True)
async def channels(runtime: Runtime, request: HttpRequest, app: AppCredentials) -> dict[str, Any]:
    """``GET /apps/{id}/channels``: occupied channels, by prefix, with presence user counts."""
    prefix = request.GET.get("filter_by_prefix", "")
    info = _info_attributes(request.GET.get("info"))
    for attribute in info:
        if attribute != "user_count":
            raise ApiError(400, f"Unsupported info attribute for channel lists: {attribute[:50]!r}")
        if not prefix.startswith("presence-"):
            raise ApiError(400, "info=user_count requires filter_by_prefix=presence-")
    state = runtime.state
    occupied = await state.channels(app.id, prefix)
    result: dict[str, Any] = {}
    for channel in sorted(occupied):
        if channel_kind(channel).user:
            continue
        result[channel] = {"user_count": await state.member_count(app.id, channel)} if info else {}
    return {"channels": result}


@api_view("channel", ("GET",), read=True)
async def channel(
    runtime: Runtime, request: HttpRequest, app: AppCredentials, channel_name: str
) -> dict[str, Any]:
    """``GET /apps/{id}/channels/{name}``: whether it is occupied, and the info asked for."""
    if (reason := channel_name_error(channel_name, app.max_channel_name_length)) is not None:
        raise ApiError(400, reason)
    info = _info_attributes(request.GET.get("info"))
    for attribute in info:
        _check_info_attribute(app, attribute, [channel_name], allow_cache=True)
    count = await runtime.state.subscription_count(app.id, channel_name)
    return {"occupied": count > 0, **await _channel_info(runtime, app, channel_name, info)}


@api_view("channel_users", ("GET",), read=True)
async def channel_users(
    runtime: Runtime, request: HttpRequest, app: AppCredentials, channel_name: str
) -> dict[str, Any]:
    """``GET /apps/{id}/channels/{name}/users``: a presence channel's members."""
    if (reason := channel_name_error(channel_name, app.max_channel_name_length)) is not None:
        raise ApiError(400, reason)
    if not channel_kind(channel_name).presence:
        raise ApiError(400, "Users can only be listed for presence channels")
    members = await runtime.state.members(app.id, channel_name)
    return {"users": [{"id": user_id} for user_id in members]}


@api_view("terminate_connections", ("POST",))
async def terminate_connections(
    runtime: Runtime, request: HttpRequest, app: AppCredentials, user_id: str
) -> dict[str, Any]:
    """``POST /apps/{id}/users/{user_id}/terminate_connections``: close the user's sockets (4009)."""
    await runtime.broker.terminate_user(app.id, user_id)
    return {}


@csrf_exempt
async def not_found(request: HttpRequest) -> HttpResponse:
    """Any other path under the API's prefixes: JSON like every API answer, not Django's HTML page."""
    stats = get_runtime().stats
    stats.incr("http_requests", (_method_label(request), "not_found", "404"))
    stats.incr("http_errors", ("not_found", "404"))
    return render(ApiError(404, "Not found"))
