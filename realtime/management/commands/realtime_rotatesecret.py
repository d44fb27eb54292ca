"""Rotate an app's credentials without downtime: add a key pair, later revoke the old one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from realtime.models import App, revoke_key


class Command(BaseCommand):
    """``realtime_rotatesecret APP_ID``: add a new key and secret to the app (printed once), valid
    alongside the old pair; ``--revoke KEY`` revokes a pair; ``--list`` lists the keys. Raises
    ``CommandError`` for an unknown app or key, or when revoking the app's only pair."""

    help = (
        "Add a key pair to an app (both pairs work until the old one is revoked), revoke one with "
        "--revoke KEY, or list the keys with --list."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("app_id")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--revoke", metavar="KEY", help="Revoke the pair with this key.")
        group.add_argument("--list", action="store_true", help="List the app's keys (no secrets).")

    def handle(self, *args: Any, **options: Any) -> None:
        app = App.objects.filter(id=options["app_id"]).first()
        if app is None:
            raise CommandError(f"No app with id {options['app_id']}.")
        if options["list"]:
            self.stdout.write(f"{app.key} (created {app.created:%Y-%m-%d %H:%M})\n")
            for pair in app.extra_keys.all():
                self.stdout.write(f"{pair.key} (added {pair.created:%Y-%m-%d %H:%M})\n")
            return
        if options["revoke"]:
            try:
                revoke_key(app, options["revoke"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Revoked {options['revoke']}; sockets that connected with it reconnect.\n")
            return
        pair = app.add_key()
        self.stdout.write(f"app id: {app.id}\nkey:    {pair.key}\nsecret: {pair.secret}\n")
        self.stdout.write(
            f"Both this pair and {app.key} work until you revoke the old one "
            f"(realtime_rotatesecret {app.id} --revoke {app.key}). Webhooks are signed with this one "
            "from now on. Store the secret now: it is not shown again.\n"
        )
