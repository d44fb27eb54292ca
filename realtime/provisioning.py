"""Creating apps outside the admin: ``realtime_createapp``, the demo app, the default app from settings."""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction

from .models import App, Webhook

# Several nodes starting at once on one SQLite file write the same default app: SQLite answers
# "database is locked" to all but one writer, so the others wait and try again.
DEFAULT_APP_ATTEMPTS = 10
# Fields a default app always states: the model's default where the settings give none, so that
# removing a variable from the environment resets the field instead of keeping an old value.
_DECLARED = frozenset(
    f.name
    for f in App._meta.get_fields()
    if getattr(f, "editable", False) and f.concrete and f.name not in {"id", "key", "secret"}
) - {"created", "updated"}


@transaction.atomic
def sync_app(config: dict[str, Any]) -> App:
    """Create or update the app ``config["id"]`` with the given fields; its webhooks become exactly
    the given ones (kept rows matched by URL, so their deliveries stay).

    ``config`` maps App field names to values, plus ``"webhooks"``: a list of
    ``{"url", "event_types", "headers", "filter": {"channel_name_starts_with", ...}}``. An empty
    or missing key or secret keeps the app's own (a new app gets a random one). Raises
    ``ValidationError`` when a field or webhook is invalid; nothing is saved then.
    """
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
        # Updated in place, matched by URL: a webhook's row carries its deliveries (pending ones
        # and the log), which a restart with the same DEFAULT_APP_WEBHOOKS must keep.
        existing = list(app.webhooks.order_by("pk"))
        for hook in config["webhooks"] or []:
            webhook = next((w for w in existing if w.url == hook["url"]), None)
            if webhook is None:
                webhook = Webhook(app=app, url=hook["url"])
            else:
                existing.remove(webhook)
            webhook.event_types = hook.get("event_types", [])
            webhook.headers = hook.get("headers", {})
            webhook.filter_prefix = (hook.get("filter") or {}).get("channel_name_starts_with", "")
            webhook.filter_suffix = (hook.get("filter") or {}).get("channel_name_ends_with", "")
            webhook.full_clean()
            webhook.save()
        for webhook in existing:
            webhook.delete()
    return app


def apply_default_app(config: dict[str, Any]) -> App:
    """Create or update the default app (``REALTIME["DEFAULT_APP"]``) with every field stated.

    Fields ``config`` leaves out take the model's defaults; webhooks default to none. Raises
    ``ValueError`` naming each invalid field; retries while SQLite reports the database locked.
    """
    full = {name: App._meta.get_field(name).get_default() for name in _DECLARED}
    full["webhooks"] = []
    full.update(config)
    attempt = 0
    while True:
        try:
            return sync_app(full)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise ValueError(f"The default app (DEFAULT_APP_*) is invalid: {problems}") from exc
        except OperationalError:
            attempt += 1
            if attempt >= DEFAULT_APP_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)


def ensure_demo_app() -> App:
    """The app named "demo" (client events and subscription counting on), created if missing."""
    app = App.objects.filter(name="demo").first()
    if app is None:
        app = App.objects.create(name="demo", enable_client_messages=True, enable_subscription_count=True)
    return app
