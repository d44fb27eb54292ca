"""Drop cached credentials whenever an app or one of its webhooks changes."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .credentials import credentials
from .models import App, Webhook


@receiver([post_save, post_delete], sender=App)
@receiver([post_save, post_delete], sender=Webhook)
def invalidate_credentials(**kwargs: Any) -> None:
    credentials.invalidate()
