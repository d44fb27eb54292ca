"""Drop cached credentials whenever an app or one of its webhooks changes, on every node, and
apply the change to open sockets."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import App, AppKey, Webhook
from .runtime import get_runtime


@receiver([post_save, post_delete], sender=App)
@receiver([post_save, post_delete], sender=AppKey)
@receiver([post_save, post_delete], sender=Webhook)
def invalidate_credentials(**kwargs: Any) -> None:
    """This process' cache now; every other node's once the change is visible to their reads."""
    # Also in a process that serves nothing (a command, a shell): the nodes must still hear of it.
    runtime = get_runtime()
    # After the commit, so that a reload reads the change.
    transaction.on_commit(runtime.apps_changed)
    runtime.credentials.invalidate()
    transaction.on_commit(runtime.cluster.invalidate_credentials)
