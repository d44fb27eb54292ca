"""Apps and webhooks in the Django admin. A secret is shown once, when made, and masked afterwards."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import LIMIT_FIELDS, App, Webhook


class WebhookInline(admin.TabularInline):
    """An app's webhooks, edited on the app's page (URLs without a scheme get https)."""

    model = Webhook
    extra = 0
    # Without assume_scheme Django 5.2 warns (RemovedInDjango60Warning) on every form build,
    # and a scheme-less URL typed into the admin should be https anyway.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ("url", "event_types", "headers", "filter_prefix", "filter_suffix")


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
        "enable_user_authentication",
        "enable_subscription_count",
        "max_connections",
    )
    list_filter = (
        "enabled",
        "enable_client_messages",
        "enable_user_authentication",
        "enable_subscription_count",
        "enable_watchlist_events",
    )
    search_fields = ("id", "key", "name")
    readonly_fields = ("masked_secret", "created", "updated")
    actions = ("regenerate_secret",)
    inlines = (WebhookInline,)
    fieldsets = (
        (None, {"fields": ("name", "id", "key", "masked_secret", "enabled")}),
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
            {"fields": LIMIT_FIELDS},
        ),
        ("History", {"fields": ("created", "updated"), "classes": ("collapse",)}),
    )

    @admin.display(description="secret")
    def masked_secret(self, app: App) -> str:
        """The secret as 12 bullets and its last 4 characters, or a note while the app is not saved yet."""
        if not app.secret or app._state.adding:
            return "generated when saved, shown once"
        return f"{'•' * 12}{app.secret[-4:]}"

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

    @admin.action(description="Regenerate the secret of the selected apps")
    def regenerate_secret(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        """Admin action: give each selected app a new secret, shown once in a warning message."""
        for app in queryset:
            secret = app.regenerate_secret()
            messages.warning(
                request, f"New secret for app {app.id}: {secret} — copy it now, it is not shown again."
            )
