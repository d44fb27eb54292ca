"""``realtime_createapp``, the default app from the environment, and migrations in step with the models."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from realtime.models import LIMIT_FIELDS, App, Webhook, WebhookDelivery
from realtime.provisioning import apply_default_app, sync_app

from ..conftest import PYTHON, ROOT, _base_env
from .api_client import Api


def createapp(*args: str) -> tuple[str, dict[str, str]]:
    out = io.StringIO()
    call_command("realtime_createapp", *args, stdout=out)
    text = out.getvalue()
    return text, dict(re.findall(r"^(app id|key|secret):\s+(\S+)$", text, re.MULTILINE))


# --- realtime_createapp --------------------------------------------------------------------------


@pytest.mark.django_db
def test_createapp_prints_the_credentials_once() -> None:
    text, found = createapp("--name", "shop")
    app = App.objects.get(id=found["app id"])
    assert (found["key"], found["secret"]) == (app.key, app.secret)
    assert text.count(app.secret) == 1
    assert "not shown again" in text
    assert app.name == "shop" and app.enabled
    assert re.fullmatch(r"[0-9]{9}", app.id)
    assert len(app.secret) == 32 and len(app.key) == 20


@pytest.mark.django_db
def test_createapp_with_given_credentials_and_flags() -> None:
    _, found = createapp(
        "--id",
        "shop-1",
        "--key",
        "shop-key",
        "--secret",
        "shop-secret",
        "--disabled",
        "--enable-client-messages",
        "--enable-user-authentication",
        "--enable-subscription-count",
        "--enable-watchlist-events",
        "--disable-cache-channels",
        "--allowed-origin",
        "https://a.example",
        "--allowed-origin",
        "*.b.example",
    )
    assert found == {"app id": "shop-1", "key": "shop-key", "secret": "shop-secret"}
    app = App.objects.get(id="shop-1")
    assert not app.enabled and not app.enable_cache_channels
    assert app.enable_client_messages and app.enable_user_authentication
    assert app.enable_subscription_count and app.enable_watchlist_events
    assert app.allowed_origins.splitlines() == ["https://a.example", "*.b.example"]


@pytest.mark.django_db
def test_createapp_limits() -> None:
    createapp(
        "--id",
        "limited",
        "--max-connections",
        "5000",
        "--max-event-payload-kb",
        "64",
        "--max-client-events-per-second",
        "-1",
        "--max-backend-events-per-second",
        "100",
        "--max-channel-name-length",
        "164",
        "--user-authentication-timeout",
        "15",
    )
    app = App.objects.get(id="limited")
    assert app.max_connections == 5000
    assert app.max_event_payload_kb == 64
    assert app.max_client_events_per_second is None  # -1: unlimited
    assert app.max_backend_events_per_second == 100
    assert app.max_channel_name_length == 164
    assert app.user_authentication_timeout == 15
    # Untouched limits keep Pusher's defaults.
    assert (
        app.max_event_batch_size,
        app.max_event_channels_at_once,
        app.max_presence_members_per_channel,
    ) == (
        10,
        100,
        100,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ("--max-event-payload-kb", "-1"),  # cannot be unlimited
        ("--max-event-payload-kb", "0"),
        ("--max-connections", "0"),
        ("--id", "has space"),
        ("--key", "bad/key"),
    ],
)
def test_createapp_rejects_bad_values(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        createapp(*args)
    assert not App.objects.exists()


@pytest.mark.django_db
def test_createapp_duplicate_id_or_key_fails() -> None:
    _, found = createapp("--id", "dup", "--key", "dup-key")
    with pytest.raises(CommandError, match="already exists"):
        createapp("--id", "dup")
    with pytest.raises(CommandError, match="already exists"):
        createapp("--key", "dup-key")
    assert App.objects.get(id="dup").secret == found["secret"]  # untouched


def test_createapp_in_a_subprocess_exits_non_zero_on_duplicates(tmp_path, migrated_db) -> None:
    shutil.copy(migrated_db, tmp_path / "db.sqlite3")
    env = _base_env(tmp_path)
    command = [PYTHON, "manage.py", "realtime_createapp", "--id", "twice"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert "already exists" in second.stderr
    assert "Traceback" not in second.stderr


# --- the default app from the environment --------------------------------------------------------


@pytest.fixture
def default_app_env(monkeypatch: pytest.MonkeyPatch):
    """Evaluate ``project.settings._default_app`` under a given environment."""
    import project.settings

    def evaluate(**env: str) -> dict[str, Any] | None:
        for name in [n for n in os.environ if n.startswith("DEFAULT_APP_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return project.settings._default_app()

    return evaluate


def test_no_default_app_without_an_id(default_app_env) -> None:
    assert default_app_env() is None
    assert default_app_env(DEFAULT_APP_KEY="k") is None


def test_the_environment_states_only_what_it_sets(default_app_env) -> None:
    assert default_app_env(DEFAULT_APP_ID="1") == {"id": "1"}
    assert default_app_env(DEFAULT_APP_ID="1", DEFAULT_APP_MAX_CONNECTIONS="-1") == {
        "id": "1",
        "max_connections": None,
    }


@pytest.mark.django_db
def test_defaults_agree_everywhere(admin_client) -> None:
    """The model holds each default once: the default app, the command and the admin agree."""
    fields = [
        field.name
        for field in App._meta.concrete_fields
        if field.editable and field.name not in {"id", "key", "secret"}
    ]
    assert set(LIMIT_FIELDS) <= set(fields)
    from_default_app = apply_default_app({"id": "1"})
    _, found = createapp("--id", "2")
    from_command = App.objects.get(id=found["app id"])
    form = admin_client.get("/admin/realtime/app/add/").context["adminform"].form
    for name in fields:
        expected = App._meta.get_field(name).get_default()
        assert getattr(from_default_app, name) == expected, name
        assert getattr(from_command, name) == expected, name
        if App._meta.get_field(name).has_default():  # else the form starts empty, as the model
            assert form[name].initial == expected, name
    assert from_default_app.user_authentication_timeout == 30
    assert list(from_default_app.webhooks.all()) == []


def test_default_app_from_every_variable(default_app_env) -> None:
    hooks = [
        {
            "url": "https://hooks.example/a",
            "event_types": ["channel_occupied"],
            "headers": {"X-A": "1"},
            "filter": {"channel_name_starts_with": "presence-", "channel_name_ends_with": "-x"},
        }
    ]
    config = default_app_env(
        DEFAULT_APP_ID="7",
        DEFAULT_APP_KEY="seven",
        DEFAULT_APP_SECRET="s7",
        DEFAULT_APP_NAME="Seven",
        DEFAULT_APP_ENABLED="false",
        DEFAULT_APP_ENABLE_CLIENT_MESSAGES="yes",
        DEFAULT_APP_ENABLE_USER_AUTHENTICATION="1",
        DEFAULT_APP_USER_AUTHENTICATION_TIMEOUT="12",
        DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT="on",
        DEFAULT_APP_ENABLE_WATCHLIST_EVENTS="TRUE",
        DEFAULT_APP_ENABLE_CACHE_CHANNELS="0",
        DEFAULT_APP_ALLOWED_ORIGINS="https://a.example, *.b.example,",
        DEFAULT_APP_WEBHOOKS=json.dumps(hooks),
        DEFAULT_APP_MAX_CONNECTIONS="5000",
        DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND="100",
        DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND="-1",
        DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND="0",
        DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL="50",
        DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_KB="1",
        DEFAULT_APP_MAX_EVENT_PAYLOAD_KB="64",
        DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE="20",
        DEFAULT_APP_MAX_EVENT_BATCH_SIZE="5",
        DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH="164",
    )
    assert config is not None
    assert (config["key"], config["secret"], config["name"], config["enabled"]) == (
        "seven",
        "s7",
        "Seven",
        False,
    )
    assert config["enable_client_messages"] and config["enable_user_authentication"]
    assert config["enable_subscription_count"] and config["enable_watchlist_events"]
    assert not config["enable_cache_channels"]
    assert config["user_authentication_timeout"] == 12
    assert config["allowed_origins"] == "https://a.example\n*.b.example"
    assert config["webhooks"] == hooks
    assert config["max_connections"] == 5000
    assert config["max_backend_events_per_second"] == 100
    assert config["max_client_events_per_second"] is None  # -1: unlimited
    assert config["max_read_requests_per_second"] is None  # 0: unlimited
    assert config["max_presence_members_per_channel"] == 50
    assert config["max_presence_member_size_kb"] == 1
    assert config["max_event_payload_kb"] == 64
    assert config["max_event_channels_at_once"] == 20
    assert config["max_event_batch_size"] == 5
    assert config["max_channel_name_length"] == 164


def test_soketi_aliases_and_precedence(default_app_env) -> None:
    config = default_app_env(
        DEFAULT_APP_ID="1",
        DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC="5",
        DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC="6",
        DEFAULT_APP_MAX_READ_REQ_PER_SEC="7",
        DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB="3",
        DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB="20",
    )
    assert config is not None
    assert config["max_backend_events_per_second"] == 5
    assert config["max_client_events_per_second"] == 6
    assert config["max_read_requests_per_second"] == 7
    assert config["max_presence_member_size_kb"] == 3
    assert config["max_event_payload_kb"] == 20
    both = default_app_env(
        DEFAULT_APP_ID="1", DEFAULT_APP_MAX_EVENT_PAYLOAD_KB="30", DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB="20"
    )
    assert both is not None and both["max_event_payload_kb"] == 30


@pytest.mark.parametrize(
    "env",
    [
        {"DEFAULT_APP_ENABLED": "maybe"},
        {"DEFAULT_APP_MAX_CONNECTIONS": "lots"},
        {"DEFAULT_APP_MAX_EVENT_PAYLOAD_KB": "0"},  # cannot be unlimited
        {"DEFAULT_APP_MAX_EVENT_BATCH_SIZE": "-1"},
        {"DEFAULT_APP_WEBHOOKS": "not json"},
        {"DEFAULT_APP_WEBHOOKS": '{"url": "https://a.example"}'},  # an object, not a list
        {"DEFAULT_APP_WEBHOOKS": '[{"event_types": ["channel_occupied"]}]'},  # no url
        {"DEFAULT_APP_WEBHOOKS": '[{"url": "https://a.example", "filter": "presence-"}]'},
        {"DEFAULT_APP_WEBHOOKS": '[{"url": "https://a.example", "event_types": "member_added"}]'},
    ],
)
def test_bad_default_app_environment(default_app_env, env: dict[str, str]) -> None:
    with pytest.raises(ImproperlyConfigured):
        default_app_env(DEFAULT_APP_ID="1", **env)


@pytest.mark.django_db
def test_sync_creates_then_updates_the_default_app(default_app_env) -> None:
    hooks = [{"url": "https://hooks.example/a", "event_types": ["member_added"]}]
    config = default_app_env(
        DEFAULT_APP_ID="9", DEFAULT_APP_KEY="nine", DEFAULT_APP_WEBHOOKS=json.dumps(hooks)
    )
    app = sync_app(config)  # type: ignore[arg-type]
    assert (app.id, app.key) == ("9", "nine")
    generated_secret = app.secret
    assert len(generated_secret) == 32
    assert list(app.webhooks.values_list("url", "event_types")) == [
        ("https://hooks.example/a", ["member_added"])
    ]

    hooks = [
        {
            "url": "https://hooks.example/b",
            "event_types": ["channel_vacated"],
            "filter": {"channel_name_ends_with": "x"},
        }
    ]
    config = default_app_env(
        DEFAULT_APP_ID="9", DEFAULT_APP_MAX_CONNECTIONS="3", DEFAULT_APP_WEBHOOKS=json.dumps(hooks)
    )
    app = sync_app(config)  # type: ignore[arg-type]
    app.refresh_from_db()
    # No key or secret given: the existing ones are kept, not regenerated.
    assert (app.key, app.secret, app.max_connections) == ("nine", generated_secret, 3)
    assert [(w.url, w.filter_suffix) for w in Webhook.objects.filter(app=app)] == [
        ("https://hooks.example/b", "x")
    ]
    assert App.objects.count() == 1

    config = default_app_env(DEFAULT_APP_ID="9", DEFAULT_APP_SECRET="explicit")
    assert sync_app(config).secret == "explicit"  # type: ignore[arg-type]


@pytest.mark.django_db
def test_sync_rejects_unknown_webhook_event_types(default_app_env) -> None:
    hooks = [{"url": "https://hooks.example/a", "event_types": ["channel_exploded"]}]
    with pytest.raises(ValidationError):
        sync_app(default_app_env(DEFAULT_APP_ID="9", DEFAULT_APP_WEBHOOKS=json.dumps(hooks)))  # type: ignore[arg-type]
    assert not App.objects.exists()  # atomic: no half-made app


def _app_row(server: Any, app_id: str) -> dict[str, Any]:
    code = (
        "import json; from realtime.models import App; "
        f"app = App.objects.get(id={app_id!r}); "
        "print(json.dumps({'key': app.key, 'name': app.name, 'max_connections': app.max_connections, "
        "'max_event_payload_kb': app.max_event_payload_kb, "
        "'webhooks': [[w.url, w.event_types, w.filter_prefix] for w in app.webhooks.all()]}))"
    )
    return json.loads(server.manage("shell", "-c", code).strip().splitlines()[-1])


def test_default_app_is_created_and_updated_on_each_start(start_server, tmp_path) -> None:
    data_dir = tmp_path / "server"
    hooks = [
        {
            "url": "https://hooks.example/first",
            "event_types": ["channel_occupied", "channel_vacated"],
            "filter": {"channel_name_starts_with": "presence-"},
        }
    ]
    env = {
        "DEFAULT_APP_ID": "31337",
        "DEFAULT_APP_KEY": "env-key",
        "DEFAULT_APP_SECRET": "env-secret-0123456789",
        "DEFAULT_APP_NAME": "from-env",
        "DEFAULT_APP_MAX_EVENT_PAYLOAD_KB": "1",
        "DEFAULT_APP_WEBHOOKS": json.dumps(hooks),
    }
    server = start_server(env=env, data_dir=data_dir)
    assert "Default app 31337 ready (key env-key)" in server.output()
    assert "env-secret-0123456789" not in server.output()
    api = Api(server)
    assert api.trigger({"name": "e", "channel": "c", "data": "x" * 1024}).status_code == 200
    assert api.trigger({"name": "e", "channel": "c", "data": "x" * 1025}).status_code == 413
    row = _app_row(server, "31337")
    assert row["name"] == "from-env" and row["max_event_payload_kb"] == 1
    assert row["webhooks"] == [
        ["https://hooks.example/first", ["channel_occupied", "channel_vacated"], "presence-"]
    ]
    server.stop()

    env.update(
        {
            "DEFAULT_APP_MAX_EVENT_PAYLOAD_KB": "2",
            "DEFAULT_APP_MAX_CONNECTIONS": "7",
            "DEFAULT_APP_WEBHOOKS": json.dumps(
                [{"url": "https://hooks.example/second", "event_types": ["cache_miss"]}]
            ),
        }
    )
    server = start_server(env=env, data_dir=data_dir)
    assert Api(server).trigger({"name": "e", "channel": "c", "data": "x" * 2048}).status_code == 200
    row = _app_row(server, "31337")
    assert (row["max_connections"], row["max_event_payload_kb"]) == (7, 2)
    assert row["webhooks"] == [["https://hooks.example/second", ["cache_miss"], ""]]


def test_bad_default_app_environment_stops_the_server_with_a_message(tmp_path, migrated_db) -> None:
    shutil.copy(migrated_db, tmp_path / "db.sqlite3")
    env = _base_env(tmp_path)
    env.update({"DEFAULT_APP_ID": "1", "DEFAULT_APP_WEBHOOKS": '{"url": "https://a.example"}'})
    result = subprocess.run(
        [PYTHON, "manage.py", "realtime_serve", "--port", "0", "--no-metrics"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DEFAULT_APP_WEBHOOKS must be a JSON list" in result.stderr


# --- migrations ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_migrations_match_the_models() -> None:
    out = io.StringIO()
    call_command("makemigrations", "realtime", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_realtime_webhooks_prune_deletes_old_finished_deliveries_only() -> None:
    app = App.objects.create(id="31", key="k31")
    hook = Webhook.objects.create(app=app, url="https://hooks.example/x", event_types=["cache_miss"])
    now = timezone.now()

    def row(status: str, age_days: float) -> uuid.UUID:
        created = now - dt.timedelta(days=age_days)
        delivery = WebhookDelivery.objects.create(
            id=uuid.uuid4(),
            app=app,
            webhook=hook,
            url=hook.url,
            event_names="cache_miss",
            event_count=1,
            body="{}",
            status=status,
            created=created,
            next_attempt=created,
            retry_until=created,
        )
        return delivery.id

    old_done, old_failed = row("delivered", 8), row("failed", 8)
    old_pending, recent = row("pending", 8), row("delivered", 1)
    out = io.StringIO()
    call_command("realtime_webhooks", "--prune", stdout=out)
    assert "Deleted 2 webhook deliveries older than 7 days" in out.getvalue()
    left = set(WebhookDelivery.objects.values_list("id", flat=True))
    assert left == {old_pending, recent} and not left & {old_done, old_failed}
    call_command("realtime_webhooks", "--prune", "--days", "0.5", stdout=out)
    assert set(WebhookDelivery.objects.values_list("id", flat=True)) == {old_pending}
