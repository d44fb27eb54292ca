"""Creating apps outside the admin: the ``realtime_createapp`` command and the default app from settings."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .models import App, Webhook


@transaction.atomic
def sync_app(config: dict[str, Any]) -> App:
    """Create or update the app ``config["id"]`` with the given fields; webhooks are replaced."""
    fields = {k: v for k, v in config.items() if k not in {"id", "webhooks"}}
    for generated in ("key", "secret"):
        if not fields.get(generated):
            fields.pop(generated, None)
    app = App.objects.filter(id=config["id"]).first()
    if app is None:
        app = App(id=config["id"])
    for name, value in fields.items():
        setattr(app, name, value)
    app.full_clean()
    app.save()
    if "webhooks" in config:
        app.webhooks.all().delete()
        for hook in config["webhooks"] or []:
            webhook = Webhook(
                app=app,
                url=hook["url"],
                event_types=hook.get("event_types", []),
                headers=hook.get("headers", {}),
                filter_prefix=(hook.get("filter") or {}).get("channel_name_starts_with", ""),
                filter_suffix=(hook.get("filter") or {}).get("channel_name_ends_with", ""),
            )
            webhook.full_clean()
            webhook.save()
    return app


def ensure_demo_app() -> App:
    app = App.objects.filter(name="demo").first()
    if app is None:
        app = App.objects.create(name="demo", enable_client_messages=True, enable_subscription_count=True)
    return app
