"""Create an app from the command line and print its credentials once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from realtime.models import CLOSE_OLDEST, LIMIT_FIELDS, REFUSE_NEWEST, App, AppKey
from realtime.provisioning import sync_app

_FLAGS = (
    "enable_client_messages",
    "enable_user_authentication",
    "enable_subscription_count",
    "enable_watchlist_events",
)
_LIMITS = ("user_authentication_timeout", *LIMIT_FIELDS)


class Command(BaseCommand):
    """``realtime_createapp``: create an app from the options (``--id``, ``--key``, ``--secret``, feature
    flags, limits with -1 for unlimited; random credentials by default) and print its id, key and
    secret once. Raises ``CommandError`` when the id or key is taken or a value is invalid.
    """

    help = "Create a Realtime app and print its id, key and secret (the secret is shown only now)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--id", help="App id (default: random digits).")
        parser.add_argument("--key", help="App key (default: random).")
        parser.add_argument("--secret", help="App secret (default: random).")
        parser.add_argument("--name", default="")
        parser.add_argument("--disabled", action="store_true")
        parser.add_argument("--allowed-origin", action="append", default=[], dest="allowed_origins")
        for flag in _FLAGS:
            parser.add_argument(f"--{flag.replace('_', '-')}", action="store_true", dest=flag)
        parser.add_argument(
            "--disable-cache-channels", action="store_false", dest="enable_cache_channels", default=True
        )
        parser.add_argument(
            "--user-connections-policy",
            choices=(REFUSE_NEWEST, CLOSE_OLDEST),
            help="Past --max-connections-per-user: refuse the new connection (default) or close the oldest.",
        )
        for limit in _LIMITS:
            parser.add_argument(
                f"--{limit.replace('_', '-')}",
                type=int,
                dest=limit,
                help="-1 for unlimited" if limit.startswith("max_") else None,
            )

    def handle(self, *args: Any, **options: Any) -> None:
        config: dict[str, Any] = {
            "id": options["id"] or App._meta.get_field("id").get_default(),
            "key": options["key"],
            "secret": options["secret"],
            "name": options["name"],
            "enabled": not options["disabled"],
            "allowed_origins": "\n".join(options["allowed_origins"]),
            "enable_cache_channels": options["enable_cache_channels"],
        }
        for flag in _FLAGS:
            config[flag] = options[flag]
        if options["user_connections_policy"]:
            config["user_connections_policy"] = options["user_connections_policy"]
        for limit in _LIMITS:
            if options[limit] is not None:
                config[limit] = None if options[limit] < 0 else options[limit]
        if App.objects.filter(id=config["id"]).exists():
            raise CommandError(f"An app with id {config['id']} already exists.")
        key = config["key"]
        if key and (App.objects.filter(key=key).exists() or AppKey.objects.filter(key=key).exists()):
            raise CommandError("An app with that key already exists.")
        try:
            app = sync_app(config)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(f"app id: {app.id}\nkey:    {app.key}\nsecret: {app.secret}\n")
        self.stdout.write("Store the secret now: it is not shown again.\n")
