"""The admin for apps and webhooks: add, edit, regenerate the secret, webhooks inline; secrets stay masked.
The webhook delivery log: read-only, filtered, searched, failed deliveries redelivered, linked from apps.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from realtime.conf import get_settings
from realtime.models import App, AppKey, Webhook, WebhookDelivery
from realtime.protocol.signatures import webhook_signature

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
        # The additional keys inline: none posted (added by an action, revoked by deletion).
        "extra_keys-TOTAL_FORMS": "0",
        "extra_keys-INITIAL_FORMS": "0",
        "extra_keys-MIN_NUM_FORMS": "0",
        "extra_keys-MAX_NUM_FORMS": "1000",
    }


def form_data(**overrides: Any) -> dict[str, Any]:
    """What the add/change form posts for an app with the model's defaults."""
    data: dict[str, Any] = {
        "name": "shop",
        "enabled": "on",
        "user_authentication_timeout": "0",
        "allowed_origins": "",
        "max_connections": "",
        "max_connections_per_user": "",
        "user_connections_policy": "refuse_newest",
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
        "max_connections_per_user",
        "user_connections_policy",
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


def test_key_pairs_are_added_shown_once_masked_after_and_revoked(admin_client: Client) -> None:
    app = App.objects.create(id="21", key="main-21")
    response = admin_client.post(LIST_URL, {"action": "add_key", "_selected_action": ["21"]}, follow=True)
    pair = AppKey.objects.get(app=app)
    assert response.content.decode().count(pair.secret) == 1
    assert [m for m in messages_of(response) if pair.key in m and "not shown again" in m]
    page = admin_client.get(change_url(app)).content.decode()
    assert pair.key in page and pair.secret not in page and pair.secret[-4:] in page
    response = admin_client.post(
        LIST_URL, {"action": "retire_main_key", "_selected_action": ["21"]}, follow=True
    )
    app.refresh_from_db()
    assert app.key == pair.key and app.secret == pair.secret
    assert not AppKey.objects.filter(app=app).exists()
    assert [m for m in messages_of(response) if "main-21 of app 21 revoked" in m]
    # Its only pair now: revoking it is refused, with the reason.
    response = admin_client.post(
        LIST_URL, {"action": "retire_main_key", "_selected_action": ["21"]}, follow=True
    )
    assert [m for m in messages_of(response) if "only key" in m]
    app.refresh_from_db()
    assert app.key == pair.key


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


DELIVERIES_URL = "/admin/realtime/webhookdelivery/"
HEADER_SECRET = "Bearer s3cret-header-value"


def delivery_url(delivery: WebhookDelivery, view: str = "change") -> str:
    return f"{DELIVERIES_URL}{delivery.pk}/{view}/"


def hooked_app(app_id: str, name: str = "") -> tuple[App, Webhook]:
    """An app with one webhook whose extra header carries a credential."""
    app = App.objects.create(id=app_id, key=f"key-{app_id}", name=name or f"app {app_id}")
    hook = Webhook.objects.create(
        app=app,
        url=f"https://hooks.example/{app_id}",
        event_types=["channel_occupied", "member_added"],
        headers={"Authorization": HEADER_SECRET},
    )
    return app, hook


def make_delivery(hook: Webhook, status: str = WebhookDelivery.DELIVERED, **fields: Any) -> WebhookDelivery:
    """A delivery row of ``hook``'s app as the outbox writes it (an occupied and a member_added event)."""
    now = timezone.now()
    events = [
        {"name": "channel_occupied", "channel": "presence-orders"},
        {"name": "member_added", "channel": "presence-orders", "user_id": "u-77"},
    ]
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "app": hook.app,
        "webhook": hook,
        "url": hook.url,
        "event_names": "channel_occupied, member_added",
        "event_count": len(events),
        "body": json.dumps({"time_ms": int(now.timestamp() * 1000), "events": events}, separators=(",", ":")),
        "status": status,
        "attempts": 1,
        "last_status": 200 if status == WebhookDelivery.DELIVERED else None,
        "created": now,
        "next_attempt": now,
        "retry_until": now + dt.timedelta(seconds=300),
        "delivered": now if status == WebhookDelivery.DELIVERED else None,
    }
    values.update(fields)
    return WebhookDelivery.objects.create(**values)


def failed(hook: Webhook, **fields: Any) -> WebhookDelivery:
    """A delivery given up on: five attempts answered 500, its retry window over."""
    past = timezone.now() - dt.timedelta(hours=1)
    values = {"attempts": 5, "last_status": 500, "last_error": "HTTP 500", "retry_until": past, **fields}
    return make_delivery(hook, WebhookDelivery.FAILED, **values)


def listed(response: Any) -> set[uuid.UUID]:
    return {row.pk for row in response.context["cl"].result_list}


def staff_client(*codenames: str) -> Client:
    """A client logged in as a staff user (not a superuser) with just the permissions ``codenames``."""
    user = User.objects.create_user("staff", password="staff-password-0123", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="realtime", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_delivery_log_lists_deliveries_and_shows_one(admin_client: Client) -> None:
    _, hook = hooked_app("31", name="log-shop")
    ok = make_delivery(hook)
    bad = failed(hook, event_names="member_removed", url="https://other.example/hook")
    response = admin_client.get(DELIVERIES_URL)
    assert response.status_code == 200
    assert listed(response) == {ok.pk, bad.pk}
    html = response.content.decode()
    for text in (
        "log-shop",
        "channel_occupied, member_added",
        "member_removed",
        "https://other.example/hook",
    ):
        assert text in html, text
    assert "HTTP 500" in html and "failed" in html and "delivered" in html

    page = admin_client.get(delivery_url(bad))
    assert page.status_code == 200
    detail = page.content.decode()
    assert str(bad.pk) in detail and "HTTP 500" in detail
    # The body, indented: one key per line.
    assert "<pre>{\n  &quot;time_ms&quot;: " in detail
    assert "&quot;user_id&quot;: &quot;u-77&quot;" in detail


def test_no_secret_on_the_delivery_pages(admin_client: Client) -> None:
    app, hook = hooked_app("32")
    delivery = failed(hook)
    signature = webhook_signature(app.secret, delivery.body.encode())
    for url in (
        DELIVERIES_URL,
        DELIVERIES_URL + "?q=channel_occupied",
        delivery_url(delivery),
        delivery_url(delivery, "history"),
        delivery_url(delivery, "delete"),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in (app.secret, HEADER_SECRET, "s3cret", signature):
            assert secret not in html, (url, secret)


def test_filter_the_log_by_status_and_app(admin_client: Client) -> None:
    _, first = hooked_app("33")
    _, second = hooked_app("34")
    ok = make_delivery(first)
    bad = failed(first)
    pending = make_delivery(first, WebhookDelivery.PENDING, event_names="member_added")
    other = failed(second)
    assert listed(admin_client.get(DELIVERIES_URL + "?status__exact=failed")) == {bad.pk, other.pk}
    assert listed(admin_client.get(DELIVERIES_URL + "?status__exact=pending")) == {pending.pk}
    assert listed(admin_client.get(DELIVERIES_URL + "?app__id__exact=34")) == {other.pk}
    both = admin_client.get(DELIVERIES_URL + "?app__id__exact=33&status__exact=failed")
    assert listed(both) == {bad.pk}
    # The date filter and hierarchy (today's rows).
    today = timezone.localdate()
    by_day = f"?created__year={today.year}&created__month={today.month}&created__day={today.day}"
    assert listed(admin_client.get(DELIVERIES_URL + by_day)) == {ok.pk, bad.pk, pending.pk, other.pk}
    # Search: by event name, by URL, by the delivery id (as sent in X-Realtime-Delivery-Id).
    assert listed(admin_client.get(DELIVERIES_URL + "?q=member_added")) == {
        ok.pk,
        bad.pk,
        pending.pk,
        other.pk,
    }
    assert listed(admin_client.get(DELIVERIES_URL + "?q=hooks.example/34")) == {other.pk}
    assert listed(admin_client.get(DELIVERIES_URL + f"?q={bad.pk}")) == {bad.pk}


def test_deliveries_cannot_be_added_or_changed_but_can_be_deleted(admin_client: Client) -> None:
    _, hook = hooked_app("35")
    delivery = failed(hook)
    listing = admin_client.get(DELIVERIES_URL).content.decode()
    assert f'href="{DELIVERIES_URL}add/"' not in listing
    assert admin_client.get(DELIVERIES_URL + "add/").status_code == 403
    page = admin_client.get(delivery_url(delivery)).content.decode()
    assert 'name="status"' not in page and 'name="_save"' not in page
    assert admin_client.post(delivery_url(delivery), {"status": "delivered"}).status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.FAILED
    response = admin_client.post(delivery_url(delivery, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not WebhookDelivery.objects.filter(pk=delivery.pk).exists()


def test_redeliver_failed_deliveries(admin_client: Client) -> None:
    _, hook = hooked_app("36")
    bad = failed(hook)
    ok = make_delivery(hook)
    pending = make_delivery(
        hook, WebhookDelivery.PENDING, next_attempt=timezone.now() + dt.timedelta(minutes=1)
    )
    untouched = {row.pk: WebhookDelivery.objects.values().get(pk=row.pk) for row in (ok, pending)}
    listing = admin_client.get(DELIVERIES_URL).content.decode()
    assert '<option value="redeliver">Redeliver the selected failed deliveries</option>' in listing

    before = timezone.now()
    response = admin_client.post(
        DELIVERIES_URL,
        {"action": "redeliver", "_selected_action": [str(bad.pk), str(ok.pk), str(pending.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "1 failed delivery queued for redelivery "
        "(only failed deliveries are redelivered; 2 selected not failed, left as they are)."
    ]
    bad.refresh_from_db()
    retry = dt.timedelta(seconds=get_settings().WEBHOOK_RETRY_SECONDS)
    assert bad.status == WebhookDelivery.PENDING
    assert before <= bad.next_attempt <= timezone.now()
    assert before + retry <= bad.retry_until <= timezone.now() + retry
    assert (bad.last_error, bad.lease_owner, bad.lease_until) == ("", "", None)
    for pk, values in untouched.items():
        assert WebhookDelivery.objects.values().get(pk=pk) == values


def test_redelivering_nothing_failed_says_so(admin_client: Client) -> None:
    _, hook = hooked_app("37")
    ok = make_delivery(hook)
    response = admin_client.post(
        DELIVERIES_URL, {"action": "redeliver", "_selected_action": [str(ok.pk)]}, follow=True
    )
    assert messages_of(response) == [
        "0 failed deliveries queued for redelivery "
        "(only failed deliveries are redelivered; 1 selected not failed, left as they are)."
    ]
    ok.refresh_from_db()
    assert ok.status == WebhookDelivery.DELIVERED


def test_viewers_see_the_log_but_cannot_redeliver() -> None:
    _, hook = hooked_app("38")
    bad = failed(hook)
    client = staff_client("view_webhookdelivery")
    response = client.get(DELIVERIES_URL)
    assert response.status_code == 200 and listed(response) == {bad.pk}
    assert 'value="redeliver"' not in response.content.decode()
    assert client.get(delivery_url(bad)).status_code == 200
    client.post(DELIVERIES_URL, {"action": "redeliver", "_selected_action": [str(bad.pk)]})
    bad.refresh_from_db()
    assert bad.status == WebhookDelivery.FAILED
    assert client.post(delivery_url(bad, "delete"), {"post": "yes"}).status_code == 403


def test_the_change_permission_allows_redelivery_not_editing() -> None:
    _, hook = hooked_app("39")
    bad = failed(hook)
    client = staff_client("change_webhookdelivery")
    assert 'value="redeliver"' in client.get(DELIVERIES_URL).content.decode()
    assert client.post(delivery_url(bad), {"status": "delivered"}).status_code == 403
    client.post(DELIVERIES_URL, {"action": "redeliver", "_selected_action": [str(bad.pk)]})
    bad.refresh_from_db()
    assert bad.status == WebhookDelivery.PENDING


def test_the_app_pages_link_to_the_apps_deliveries(admin_client: Client) -> None:
    app, hook = hooked_app("41", name="linked")
    for _ in range(3):
        make_delivery(hook)
    pending = [make_delivery(hook, WebhookDelivery.PENDING) for _ in range(2)]
    bad = failed(hook)
    _, other_hook = hooked_app("42", name="other")
    failed(other_hook)
    App.objects.create(id="43", key="k43", name="quiet")

    page = admin_client.get(change_url(app)).content.decode()
    log = f"{DELIVERIES_URL}?app__id__exact=41"
    assert f'2 pending, <a href="{log}&amp;status__exact=failed">1 failed</a>' in page
    assert f'<a href="{log}">the delivery log</a>' in page
    assert app.secret not in page

    listing = admin_client.get(LIST_URL).content.decode()
    assert f'<a href="{log}">1 failed, 2 pending</a>' in listing
    assert f'<a href="{DELIVERIES_URL}?app__id__exact=42">1 failed</a>' in listing
    assert f'<a href="{DELIVERIES_URL}?app__id__exact=43">log</a>' in listing

    followed = admin_client.get(log)
    assert len(listed(followed)) == 6 and {p.pk for p in pending} | {bad.pk} <= listed(followed)
    assert listed(admin_client.get(f"{log}&status__exact=failed")) == {bad.pk}
    assert "none yet" in admin_client.get(ADD_URL).content.decode()


def test_deleting_an_app_deletes_its_deliveries(admin_client: Client) -> None:
    app, hook = hooked_app("44")
    failed(hook)
    response = admin_client.post(
        LIST_URL, {"action": "delete_selected", "_selected_action": ["44"], "post": "yes"}
    )
    assert response.status_code == 302
    assert not App.objects.filter(pk=app.pk).exists()
    assert not WebhookDelivery.objects.exists()
