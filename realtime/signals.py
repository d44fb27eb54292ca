"""Drop cached credentials whenever an app or one of its webhooks changes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .conf import get_settings
from .credentials import credentials
from .models import App, Webhook


@receiver([post_save, post_delete], sender=App)
@receiver([post_save, post_delete], sender=Webhook)
def invalidate_credentials(**kwargs: Any) -> None:
    credentials.invalidate()
    if get_settings().STATE_BACKEND == "redis":
        from .redis_backend import broadcast_invalidation

        # Every node caches credentials: tell them all, once the change is visible to their reads.
        transaction.on_commit(broadcast_invalidation)
