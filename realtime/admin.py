"""Apps, webhooks and the webhook delivery log in the Django admin, and each app's live console.

A secret is shown once, when made, and masked afterwards. The delivery log is read-only: rows are
viewed, deleted, or (failed ones) redelivered, never edited. The console (``admin_console``) is a
page per app linked from the app list and the app's page.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from . import admin_console
from .cluster.base import StateUnavailable
from .conf import get_settings
from .models import LIMIT_FIELDS, App, AppKey, Webhook, WebhookDelivery, revoke_key
from .runtime import get_runtime
from .webhooks import store

# The URL name of an app's console page (its endpoints add _stream, _publish, _channels).
CONSOLE = "realtime_app_console"


def _count_deliveries(status: str) -> Coalesce:
    """An ``annotate`` expression for apps: how many of the app's deliveries have ``status``."""
    counted = (
        WebhookDelivery.objects.filter(app=OuterRef("pk"), status=status)
        .order_by()
        .values("app")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


class WebhookInline(admin.TabularInline):
    """An app's webhooks, edited on the app's page (URLs without a scheme get https)."""

    model = Webhook
    extra = 0
    # Without assume_scheme Django 5.2 warns (RemovedInDjango60Warning) on every form build,
    # and a scheme-less URL typed into the admin should be https anyway.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ("url", "event_types", "headers", "filter_prefix", "filter_suffix")


def _masked(secret: str) -> str:
    return f"{'•' * 12}{secret[-4:]}"


class AppKeyInline(admin.TabularInline):
    """An app's additional key pairs, revoked by deleting them (the app list's "Add a key pair"
    action adds one and shows its secret once)."""

    model = AppKey
    extra = 0
    fields = ("key", "masked_secret", "created")
    readonly_fields = ("key", "masked_secret", "created")
    verbose_name_plural = "additional keys (valid alongside the app's key; delete one to revoke it)"

    @admin.display(description="secret")
    def masked_secret(self, pair: AppKey) -> str:
        """The secret masked."""
        return _masked(pair.secret)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # added by the action, which shows the secret once

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a pair is added or revoked, never edited


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    """Apps in the admin: a secret is shown once in a message, when the app is created or its
    secret regenerated, and masked everywhere else; the id cannot change once the app exists.
    """

    list_display = (
        "__str__",
        "id",
        "key",
        "enabled",
        "enable_client_messages",
        "live_connections",
        "max_connections",
        "deliveries_link",
        "console_link",
    )
    list_filter = (
        "enabled",
        "enable_client_messages",
        "enable_user_authentication",
        "enable_subscription_count",
        "enable_watchlist_events",
    )
    search_fields = ("id", "key", "name")
    readonly_fields = ("masked_secret", "console_link", "delivery_summary", "created", "updated")
    actions = ("regenerate_secret", "add_key", "retire_main_key")
    inlines = (AppKeyInline, WebhookInline)
    fieldsets = (
        (
            None,
            {"fields": ("name", "id", "key", "masked_secret", "enabled", "console_link", "delivery_summary")},
        ),
        (
            "Features",
            {
                "fields": (
                    "enable_client_messages",
                    "enable_user_authentication",
                    "user_authentication_timeout",
                    "enable_subscription_count",
                    "enable_watchlist_events",
                    "enable_cache_channels",
                    "allowed_origins",
                )
            },
        ),
        (
            "Limits",
            {"fields": (*LIMIT_FIELDS, "user_connections_policy")},
        ),
        ("History", {"fields": ("created", "updated"), "classes": ("collapse",)}),
    )

    # The console

    def get_urls(self) -> list[URLPattern]:
        """The app admin's URLs and the console's: its page, stream, test events and inspector."""
        views = {
            "stream": admin_console.stream,
            "publish": admin_console.publish,
            "channels": admin_console.channels,
        }
        console = [
            path("<path:object_id>/console/", self.admin_site.admin_view(self.console_view), name=CONSOLE)
        ]
        # Async views: each checks the staff user itself (admin_view wraps sync views only).
        console += [
            path(f"<path:object_id>/console/{name}/", view, name=f"{CONSOLE}_{name}")
            for name, view in views.items()
        ]
        return console + super().get_urls()

    def console_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The console page of app ``object_id`` (404 when there is none, 403 without view access)."""
        app = self.get_object(request, object_id)
        if app is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, app):
            raise PermissionDenied
        urls = {
            name: reverse(
                f"admin:realtime_app_console_{name}", args=[app.pk], current_app=self.admin_site.name
            )
            for name in ("stream", "publish", "channels")
        }
        context = {
            **self.admin_site.each_context(request),
            "title": f"Console: {app}",
            "subtitle": None,
            "opts": self.opts,
            "original": app,
            "app": app,
            "urls": urls,
            "can_publish": self.has_change_permission(request, app),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/realtime/app/console.html", context)

    @admin.display(description="console")
    def console_link(self, app: App) -> SafeString | str:
        """A link to the app's console (nothing while the app is not saved yet)."""
        if app._state.adding:
            return "once saved"
        url = reverse(f"admin:{CONSOLE}", args=[app.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">open console</a>', url)

    @admin.display(description="connections")
    def live_connections(self, app: App) -> str:
        """The app's open connections now (the whole cluster's with Redis); "—" when not known."""
        try:
            return str(async_to_sync(get_runtime().state.connection_count)(app.pk))
        except (StateUnavailable, RuntimeError):
            return "—"

    @admin.display(description="secret")
    def masked_secret(self, app: App) -> str:
        """The secret as 12 bullets and its last 4 characters, or a note while the app is not saved yet."""
        if not app.secret or app._state.adding:
            return "generated when saved, shown once"
        return _masked(app.secret)

    def get_queryset(self, request: HttpRequest) -> QuerySet[App]:
        """The apps, each annotated with ``pending_deliveries`` and ``failed_deliveries`` (ints)."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_deliveries=_count_deliveries(WebhookDelivery.PENDING),
                failed_deliveries=_count_deliveries(WebhookDelivery.FAILED),
            )
        )

    def _deliveries_url(self, app: App, **filters: str) -> str:
        changelist = reverse("admin:realtime_webhookdelivery_changelist", current_app=self.admin_site.name)
        return f"{changelist}?{urlencode({'app__id__exact': app.pk, **filters})}"

    @admin.display(description="webhook deliveries")
    def deliveries_link(self, app: App) -> SafeString:
        """A link to the app's delivery log, saying how many deliveries failed or are pending, if any."""
        counts = [
            f"{count} {label}"
            for count, label in ((app.failed_deliveries, "failed"), (app.pending_deliveries, "pending"))
            if count
        ]
        return format_html('<a href="{}">{}</a>', self._deliveries_url(app), ", ".join(counts) or "log")

    @admin.display(description="webhook deliveries")
    def delivery_summary(self, app: App) -> str:
        """How many of the app's deliveries are pending and failed, with links to the log (all of it,
        and the failed ones); a note while the app is not saved yet."""
        if app._state.adding:
            return "none yet"
        return format_html(
            '{} pending, <a href="{}">{} failed</a> — <a href="{}">the delivery log</a>',
            app.pending_deliveries,
            self._deliveries_url(app, status__exact=WebhookDelivery.FAILED),
            app.failed_deliveries,
            self._deliveries_url(app),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: App | None = None) -> Any:
        """``readonly_fields``, plus ``id`` when ``obj`` is an existing app."""
        # The id is the app's identity in every client and signature: fixed once created.
        if obj is not None:
            return (*self.readonly_fields, "id")
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: App, form: Any, change: bool) -> None:
        """Save ``obj``; when it is new, show its secret once in a warning message."""
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                f"App {obj.id} created. Its secret is {obj.secret} — copy it now, it is not shown again.",
            )

    @admin.action(description="Add a key pair to the selected apps (the old pairs stay valid)")
    def add_key(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        """Admin action: a new key pair per selected app, its secret shown once in a message."""
        for app in queryset:
            pair = app.add_key()
            messages.warning(
                request,
                f"Key {pair.key} added to app {app.id}. Its secret is {pair.secret} — copy it now, it "
                "is not shown again.",
            )

    @admin.action(
        description="Revoke the main key of the selected apps (their newest additional key takes its place)"
    )
    def retire_main_key(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        """Admin action: revoke each selected app's own key; its newest additional pair replaces it."""
        for app in queryset:
            old = app.key
            try:
                revoke_key(app, old)
            except ValueError as exc:
                messages.error(request, str(exc))
                continue
            messages.success(request, f"Key {old} of app {app.id} revoked; its key is now {app.key}.")

    @admin.action(description="Regenerate the secret of the selected apps")
    def regenerate_secret(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        """Admin action: give each selected app a new secret, shown once in a warning message."""
        for app in queryset:
            secret = app.regenerate_secret()
            messages.warning(
                request, f"New secret for app {app.id}: {secret} — copy it now, it is not shown again."
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The webhook delivery log, per app: view, search, delete, and redeliver failed deliveries.

    Never editable or added by hand (the worker writes it). Shown are the request's body (events,
    no secret) and its outcome, never what signs or authorises it: the app's secret, the signature
    and the webhook's extra headers (which may carry credentials).
    """

    list_display = (
        "created",
        "app",
        "event_names",
        "url",
        "status",
        "attempts",
        "last_result",
        "delivered",
    )
    list_filter = ("status", "app", "created")
    list_select_related = ("app",)
    search_fields = ("event_names", "url", "id")
    date_hierarchy = "created"
    actions = ("redeliver",)
    fieldsets = (
        (
            None,
            {"fields": ("id", "app", "url", "status", "event_names", "event_count", "created", "delivered")},
        ),
        (
            "Attempts",
            {
                "fields": (
                    "attempts",
                    "last_status",
                    "last_error",
                    "next_attempt",
                    "retry_until",
                    "lease_owner",
                    "lease_until",
                )
            },
        ),
        ("Body", {"fields": ("pretty_body",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    @admin.display(description="last result")
    def last_result(self, delivery: WebhookDelivery) -> str | None:
        """The last attempt's error (which names a non-2xx status), else its HTTP status; None
        (shown as "-") before any attempt."""
        if delivery.last_error:
            return delivery.last_error
        return f"HTTP {delivery.last_status}" if delivery.last_status is not None else None

    @admin.display(description="body")
    def pretty_body(self, delivery: WebhookDelivery) -> str:
        """The JSON body as sent (``{"time_ms", "events"}``), indented, in a ``<pre>``."""
        return format_html(
            "<pre>{}</pre>", json.dumps(json.loads(delivery.body), indent=2, ensure_ascii=False)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        """False: deliveries are made by the webhook outbox only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        """False: the log records what was sent; its rows are not edited (redelivery is an action)."""
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        """Whether the user holds the model's change permission ("Can change webhook delivery"),
        which here means: may redeliver (``has_change_permission`` is False for the form only)."""
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")

    @admin.action(description="Redeliver the selected failed deliveries", permissions=("redeliver",))
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        """Admin action: make the failed ones of ``queryset`` pending again, due now, with a fresh
        ``WEBHOOK_RETRY_SECONDS`` to succeed; the others are left as they are."""
        selected = queryset.count()
        count = store.redeliver(queryset, get_settings().WEBHOOK_RETRY_SECONDS)
        noun = "delivery" if count == 1 else "deliveries"
        skipped = selected - count
        note = f"; {skipped} selected not failed, left as they are" if skipped else ""
        messages.add_message(
            request,
            messages.SUCCESS if count else messages.WARNING,
            f"{count} failed {noun} queued for redelivery (only failed deliveries are redelivered{note}).",
        )
