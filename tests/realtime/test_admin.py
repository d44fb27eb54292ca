"""The admin for apps and webhooks: add, edit, regenerate the secret, webhooks inline; secrets stay masked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from realtime.models import App, Webhook

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/realtime/app/add/"
LIST_URL = "/admin/realtime/app/"


def change_url(app: App) -> str:
    return f"/admin/realtime/app/{app.pk}/change/"


def inline_management(total: int = 0, initial: int = 0) -> dict[str, str]:
    return {
        "webhooks-TOTAL_FORMS": str(total),
        "webhooks-INITIAL_FORMS": str(initial),
        "webhooks-MIN_NUM_FORMS": "0",
        "webhooks-MAX_NUM_FORMS": "1000",
    }


def form_data(**overrides: Any) -> dict[str, Any]:
    """What the add/change form posts for an app with the model's defaults."""
    data: dict[str, Any] = {
        "name": "shop",
        "enabled": "on",
        "user_authentication_timeout": "0",
        "allowed_origins": "",
        "max_connections": "",
        "max_backend_events_per_second": "",
        "max_client_events_per_second": "10",
        "max_read_requests_per_second": "",
        "max_presence_members_per_channel": "100",
        "max_presence_member_size_kb": "2",
        "max_event_payload_kb": "10",
        "max_event_channels_at_once": "100",
        "max_event_batch_size": "10",
        "max_channel_name_length": "200",
        **inline_management(),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def change_data(app: App, **overrides: Any) -> dict[str, Any]:
    data = form_data(name=app.name, key=app.key)
    for flag in (
        "enabled",
        "enable_client_messages",
        "enable_user_authentication",
        "enable_subscription_count",
        "enable_watchlist_events",
        "enable_cache_channels",
    ):
        data[flag] = "on" if getattr(app, flag) else None
    for field in (
        "user_authentication_timeout",
        "max_connections",
        "max_backend_events_per_second",
        "max_client_events_per_second",
        "max_read_requests_per_second",
        "max_presence_members_per_channel",
        "max_presence_member_size_kb",
        "max_event_payload_kb",
        "max_event_channels_at_once",
        "max_event_batch_size",
        "max_channel_name_length",
    ):
        value = getattr(app, field)
        data[field] = "" if value is None else str(value)
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_add_form_renders_without_a_secret_field(admin_client: Client) -> None:
    response = admin_client.get(ADD_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="secret"' not in html
    assert "generated when saved, shown once" in html


def test_create_an_app_through_the_add_form(admin_client: Client) -> None:
    response = admin_client.post(
        ADD_URL,
        form_data(id="4242", key="shop-key", enable_client_messages="on", max_connections="5000"),
        follow=True,
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    app = App.objects.get(id="4242")
    assert (app.key, app.name, app.enable_client_messages, app.max_connections) == (
        "shop-key",
        "shop",
        True,
        5000,
    )
    assert len(app.secret) >= 32
    shown = [m for m in messages_of(response) if app.secret in m]
    assert len(shown) == 1, messages_of(response)
    assert response.content.decode().count(app.secret) == 1
    # Shown once: the next page does not repeat it.
    assert app.secret not in admin_client.get(LIST_URL).content.decode()


def test_add_form_validates_ids_keys_and_limits(admin_client: Client) -> None:
    App.objects.create(id="1", key="taken")
    for overrides in (
        {"id": "has space", "key": "k1"},
        {"id": "2", "key": "taken"},
        {"id": "1", "key": "k2"},
        {"id": "3", "key": "k3", "max_event_payload_kb": "0"},
        {"id": "4", "key": "k4", "max_connections": "-1"},
        {"id": "5", "key": "k5", "max_event_batch_size": ""},
    ):
        response = admin_client.post(ADD_URL, form_data(**overrides))
        assert response.status_code == 200, overrides  # the form again, with errors
        assert response.context["adminform"].form.errors, overrides
    assert list(App.objects.values_list("id", flat=True)) == ["1"]


def test_edit_limits(admin_client: Client) -> None:
    app = App.objects.create(id="77", key="k77", name="before")
    response = admin_client.post(
        change_url(app),
        change_data(
            app,
            name="after",
            max_connections="250",
            max_event_payload_kb="64",
            max_client_events_per_second="",
        ),
        follow=True,
    )
    assert response.status_code == 200
    app.refresh_from_db()
    assert (app.name, app.max_connections, app.max_event_payload_kb, app.max_client_events_per_second) == (
        "after",
        250,
        64,
        None,
    )


def test_the_id_is_read_only_once_created(admin_client: Client) -> None:
    app = App.objects.create(id="88", key="k88")
    html = admin_client.get(change_url(app)).content.decode()
    assert 'name="id"' not in html
    admin_client.post(change_url(app), change_data(app, id="99"), follow=True)
    assert App.objects.filter(id="88").exists() and not App.objects.filter(id="99").exists()


def test_secret_is_masked_in_the_changelist_and_change_form(admin_client: Client) -> None:
    app = App.objects.create(id="55", key="k55", name="masked")
    listing = admin_client.get(LIST_URL).content.decode()
    assert "masked" in listing and "k55" in listing
    assert app.secret not in listing
    form = admin_client.get(change_url(app)).content.decode()
    assert app.secret not in form
    assert app.secret[-4:] in form and "••••" in form
    # Nor via search, history or the delete confirmation.
    for url in (
        LIST_URL + "?q=masked",
        f"/admin/realtime/app/{app.pk}/history/",
        f"/admin/realtime/app/{app.pk}/delete/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert app.secret not in response.content.decode(), url
    assert "0 apps" in admin_client.get(LIST_URL + f"?q={app.secret}").content.decode()


def test_regenerate_secret_action(admin_client: Client) -> None:
    first = App.objects.create(id="11", key="k11")
    second = App.objects.create(id="12", key="k12")
    untouched = App.objects.create(id="13", key="k13")
    old = {app.id: app.secret for app in (first, second, untouched)}
    response = admin_client.post(
        LIST_URL, {"action": "regenerate_secret", "_selected_action": ["11", "12"]}, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    for app in (first, second):
        app.refresh_from_db()
        assert app.secret != old[app.id]
        assert html.count(app.secret) == 1
        assert old[app.id] not in html
    untouched.refresh_from_db()
    assert untouched.secret == old["13"]
    assert len([m for m in messages_of(response) if "New secret" in m]) == 2
    # Once: the next page load does not show it again.
    again = admin_client.get(LIST_URL).content.decode()
    assert first.secret not in again and second.secret not in again


def webhook_form(index: int, **fields: str) -> dict[str, str]:
    values = {"url": "https://hooks.example/x", "event_types": '["channel_occupied"]', "headers": "{}"}
    values.update(fields)
    values.setdefault("filter_prefix", "")
    values.setdefault("filter_suffix", "")
    return {f"webhooks-{index}-{name}": value for name, value in values.items()}


def test_add_a_webhook_inline(admin_client: Client) -> None:
    app = App.objects.create(id="21", key="k21")
    data = change_data(
        app,
        **inline_management(total=1),
        **webhook_form(
            0,
            event_types='["channel_occupied", "member_added"]',
            headers='{"X-Team": "a"}',
            filter_prefix="presence-",
        ),
    )
    response = admin_client.post(change_url(app), data, follow=True)
    assert response.status_code == 200
    hook = Webhook.objects.get(app=app)
    assert hook.url == "https://hooks.example/x"
    assert hook.event_types == ["channel_occupied", "member_added"]
    assert hook.headers == {"X-Team": "a"}
    assert hook.filter_prefix == "presence-"


def test_a_webhook_with_empty_headers_is_fine(admin_client: Client) -> None:
    app = App.objects.create(id="24", key="k24")
    data = change_data(app, **inline_management(total=1), **webhook_form(0, headers=""))
    response = admin_client.post(change_url(app), data, follow=True)
    assert response.status_code == 200
    assert Webhook.objects.get(app=app).headers == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_types": '["bogus"]'}, "Unknown event types: bogus"),
        ({"event_types": '["channel_occupied", "channel_exploded"]'}, "channel_exploded"),
        ({"event_types": "[]"}, "non-empty list"),
        ({"event_types": '"channel_occupied"'}, "non-empty list"),
        ({"headers": '{"X-N": 1}'}, "string headers"),
        ({"headers": "[]"}, "string headers"),
        ({"url": "not a url"}, "valid URL"),
    ],
)
def test_webhook_validation(admin_client: Client, fields: dict[str, str], message: str) -> None:
    app = App.objects.create(id="22", key="k22")
    data = change_data(app, **inline_management(total=1), **webhook_form(0, **fields))
    response = admin_client.post(change_url(app), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Webhook.objects.filter(app=app).exists()


def test_webhook_event_types_render_as_json(admin_client: Client) -> None:
    app = App.objects.create(id="23", key="k23")
    Webhook.objects.create(app=app, url="https://hooks.example/y", event_types=["cache_miss"])
    html = admin_client.get(change_url(app)).content.decode()
    assert "https://hooks.example/y" in html
    assert json.dumps(["cache_miss"]).replace('"', "&quot;") in html


def test_anonymous_users_are_sent_to_login(client: Client) -> None:
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
