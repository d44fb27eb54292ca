"""Overlapping key pairs: a new pair works alongside the old until the old one is revoked."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command

from realtime.asgi import realtime_application
from realtime.credentials import CredentialsCache
from realtime.models import App, AppKey, revoke_key
from realtime.protocol.signatures import channel_auth, channel_string_to_sign
from realtime.runtime import get_runtime

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_runtime")]

application = realtime_application()
QUERY = "protocol=7&client=js&version=8.4.0"


async def _connect(key: str) -> tuple[WebsocketCommunicator, str]:
    comm = WebsocketCommunicator(application, f"/app/{key}?{QUERY}")
    assert (await comm.connect())[0]
    message = json.loads(await comm.receive_from(timeout=2))
    assert message["event"] == "pusher:connection_established", message
    return comm, json.loads(message["data"])["socket_id"]


async def test_every_pair_is_found_and_verifies() -> None:
    app = await App.objects.acreate(key="old-key", secret="old-secret")
    pair = await AppKey.objects.acreate(app=app, key="new-key", secret="new-secret")
    cache = CredentialsCache()
    by_old, by_new = await cache.by_key("old-key"), await cache.by_key("new-key")
    assert by_old is by_new and by_old.keys == ("old-key", "new-key")
    assert by_old.secret_for("new-key") == "new-secret" and by_old.secret_for("nope") is None
    signed = channel_string_to_sign("1.2", "private-a", None)
    for key, secret in (("old-key", "old-secret"), (pair.key, pair.secret)):
        assert by_old.verify_token(channel_auth(key, secret, "1.2", "private-a"), signed)
    # A token must use the secret of the key it names.
    assert not by_old.verify_token(channel_auth("new-key", "old-secret", "1.2", "private-a"), signed)
    assert by_old.signing_pair == ("new-key", "new-secret")  # webhooks: the newest


async def test_revoking_the_main_key_promotes_the_newest_pair() -> None:
    app = await App.objects.acreate(key="k1", secret="s1")
    await AppKey.objects.acreate(app=app, key="k2", secret="s2")
    await AppKey.objects.acreate(app=app, key="k3", secret="s3")
    await _sync(revoke_key, app, "k1")
    await app.arefresh_from_db()
    assert (app.key, app.secret) == ("k3", "s3")
    assert [pair.key async for pair in app.extra_keys.all()] == ["k2"]
    await _sync(revoke_key, app, "k2")
    with pytest.raises(ValueError, match="only key"):
        await _sync(revoke_key, app, "k3")
    with pytest.raises(ValueError, match="not a key"):
        await _sync(revoke_key, app, "k9")


async def _sync(function, *args):
    from asgiref.sync import sync_to_async

    return await sync_to_async(function)(*args)


async def test_sockets_of_a_revoked_key_reconnect_and_the_new_keys_stay() -> None:
    app = await App.objects.acreate(key="rot-old", secret="s-old")
    pair = await _sync(app.add_key)
    old_socket, _ = await _connect("rot-old")
    new_socket, socket_id = await _connect(pair.key)
    # The new pair signs a private subscription on the socket that connected with it.
    auth = channel_auth(pair.key, pair.secret, socket_id, "private-r")
    subscribe = {"event": "pusher:subscribe", "data": {"channel": "private-r", "auth": auth}}
    await new_socket.send_to(text_data=json.dumps(subscribe))
    reply = json.loads(await new_socket.receive_from(timeout=2))
    assert reply["event"] == "pusher_internal:subscription_succeeded"

    await _sync(revoke_key, app, "rot-old")  # as the admin or the command does

    error = json.loads(await old_socket.receive_from(timeout=2))
    assert json.loads(error["data"])["code"] == 4200
    assert (await old_socket.receive_output(timeout=2))["code"] == 4200
    assert await get_runtime().credentials.by_key("rot-old") is None
    await new_socket.send_to(text_data=json.dumps({"event": "pusher:ping", "data": {}}))
    assert json.loads(await new_socket.receive_from(timeout=2))["event"] == "pusher:pong"
    await new_socket.disconnect()


def _rotate(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("realtime_rotatesecret", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_rotate_command_adds_lists_and_revokes() -> None:
    app = App.objects.create(key="cmd-old", secret="s")
    printed = _rotate(app.id)
    new_key = printed.split("key:")[1].split()[0]
    new_secret = printed.split("secret:")[1].split()[0]
    assert AppKey.objects.get(app=app, key=new_key).secret == new_secret
    listed = _rotate(app.id, "--list")
    assert "cmd-old" in listed and new_key in listed and new_secret not in listed
    _rotate(app.id, "--revoke", "cmd-old")
    app.refresh_from_db()
    assert app.key == new_key and not app.extra_keys.exists()
    with pytest.raises(CommandError, match="only key"):
        _rotate(app.id, "--revoke", new_key)
    with pytest.raises(CommandError, match="No app"):
        _rotate("nope")
