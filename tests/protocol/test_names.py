"""Channel kinds by prefix and the channel name grammar.

Kinds by prefix: https://pusher.com/docs/channels/using_channels/channels/#channel-types
Grammar and length: https://pusher.com/docs/channels/using_channels/channels/#channel-naming-conventions
"""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from realtime.protocol import names
from realtime.protocol.limits import MAX_CHANNEL_NAME_LENGTH, MAX_USER_ID_LENGTH

# CHAN "Channel Naming Conventions"; the server SDK regex is \A[-a-zA-Z0-9_=@,.;]+\Z.
ALLOWED = string.ascii_letters + string.digits + "_-=@,.;"
BARE_PREFIXES = {
    "private-",
    "private-encrypted-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-",
    "presence-cache-",
    "cache-",
}

valid_names = st.text(alphabet=ALLOWED, min_size=1, max_size=MAX_CHANNEL_NAME_LENGTH)
outside = st.characters(codec="utf-8").filter(lambda c: c not in ALLOWED)


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        ("my-channel", names.PUBLIC),
        ("private-a", names.PRIVATE),
        ("private-encrypted-a", names.ENCRYPTED),
        ("private-encrypted-cache-a", names.ENCRYPTED_CACHE),
        ("private-cache-a", names.PRIVATE_CACHE),
        ("presence-a", names.PRESENCE),
        ("presence-cache-a", names.PRESENCE_CACHE),
        ("cache-a", names.CACHE),
        ("#server-to-user-42", names.SERVER_TO_USER),
        # Without the dash the prefix does not count (Reverb's ChannelBroker gets this wrong).
        ("privatechat", names.PUBLIC),
        ("presences", names.PUBLIC),
        ("cached-a", names.PUBLIC),
        ("private-encrypteda", names.PRIVATE),
        ("private-cachea", names.PRIVATE),
        ("presence-cachea", names.PRESENCE),
        ("public-private-a", names.PUBLIC),
        ("a-cache-b", names.PUBLIC),
    ],
)
def test_channel_kind(channel: str, kind: names.ChannelKind) -> None:
    assert names.channel_kind(channel) is kind


def test_kind_flags() -> None:
    assert not names.PUBLIC.requires_auth and not names.PUBLIC.client_events
    assert names.PRIVATE.requires_auth and names.PRIVATE.client_events
    assert names.ENCRYPTED.requires_auth and names.ENCRYPTED.encrypted and not names.ENCRYPTED.client_events
    assert names.PRESENCE.presence and names.PRESENCE.client_events
    assert names.CACHE.cache and not names.CACHE.requires_auth
    assert names.PRIVATE_CACHE.cache and names.PRIVATE_CACHE.requires_auth
    assert names.PRIVATE_CACHE.client_events
    assert names.ENCRYPTED_CACHE.cache and names.ENCRYPTED_CACHE.encrypted
    assert not names.ENCRYPTED_CACHE.client_events
    assert names.PRESENCE_CACHE.cache and names.PRESENCE_CACHE.presence
    assert names.SERVER_TO_USER.user and not names.SERVER_TO_USER.requires_auth
    labels = {
        kind.label
        for kind in (
            names.PUBLIC,
            names.PRIVATE,
            names.ENCRYPTED,
            names.PRESENCE,
            names.CACHE,
            names.PRIVATE_CACHE,
            names.ENCRYPTED_CACHE,
            names.PRESENCE_CACHE,
            names.SERVER_TO_USER,
        )
    }
    assert labels == set(names.CHANNEL_TYPE_LABELS)


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(sorted(BARE_PREFIXES)), rest=valid_names)
def test_kind_is_the_longest_matching_prefix(prefix: str, rest: str) -> None:
    channel = prefix + rest
    matching = [p for p in BARE_PREFIXES if channel.startswith(p)]
    longest = max(matching, key=len)
    assert names.channel_kind(channel).name == longest.rstrip("-")


@settings(max_examples=500, deadline=None)
@given(valid_names)
def test_every_name_from_the_allowed_set_is_accepted(channel: str) -> None:
    assume(channel not in BARE_PREFIXES)
    assert names.channel_name_error(channel) is None


@settings(max_examples=500, deadline=None)
@given(left=st.text(alphabet=ALLOWED, max_size=80), bad=outside, right=st.text(alphabet=ALLOWED, max_size=80))
def test_any_character_outside_the_set_is_rejected(left: str, bad: str, right: str) -> None:
    channel = left + bad + right
    # "#" followed by "server-to-user-<id>" is the one legal use of "#".
    assume(not channel.startswith(names.SERVER_TO_USER_PREFIX))
    assert names.channel_name_error(channel) is not None


@pytest.mark.parametrize(
    "bad", ["a\n", "a\r\n", "\na", "private-a\n", "#server-to-user-1\n", "a b", "a#b", "ä"]
)
def test_newlines_spaces_hash_and_non_ascii_are_rejected(bad: str) -> None:
    assert names.channel_name_error(bad) is not None


@pytest.mark.parametrize("bad", [None, "", 1, ["a"], b"abc"])
def test_non_strings_and_empty_are_rejected(bad: object) -> None:
    assert names.channel_name_error(bad) is not None


@pytest.mark.parametrize("prefix", sorted(BARE_PREFIXES))
def test_a_bare_prefix_is_not_a_channel(prefix: str) -> None:
    assert names.channel_name_error(prefix) is not None
    assert names.channel_name_error(prefix + "x") is None


def test_default_length_boundary_is_200() -> None:
    assert MAX_CHANNEL_NAME_LENGTH == 200
    assert names.channel_name_error("a" * 200) is None
    assert names.channel_name_error("a" * 201) is not None
    assert names.channel_name_error("presence-" + "a" * 191) is None
    assert names.channel_name_error("presence-" + "a" * 192) is not None


def test_length_boundary_is_per_app() -> None:
    """The docs say 164 (CHAN); an app may configure that instead of the SDKs' 200."""
    assert names.channel_name_error("a" * 164, max_length=164) is None
    assert names.channel_name_error("a" * 165, max_length=164) is not None
    assert names.channel_name_error("a" * 300, max_length=300) is None


def test_server_to_user_channels() -> None:
    assert names.channel_name_error("#server-to-user-42") is None
    assert names.channel_name_error("#server-to-user-user@example.com") is None
    # Sign-in ids may be longer than presence ids (the SDKs allow 200); the channel limit still holds.
    assert names.channel_name_error("#server-to-user-" + "u" * (MAX_USER_ID_LENGTH + 1)) is None
    assert names.channel_name_error("#server-to-user-" + "u" * 184) is None
    for bad in (
        "#server-to-user-",  # no user id
        "#server-to-user-a#b",
        "#server-to-user-a b",
        "#server-to-user-" + "u" * 185,
        "#server-to-users-1",
        "#server-to-user",
        "#other-1",
        "#",
        "private-#server-to-user-1",
        "server-to-user-1#",
    ):
        assert names.channel_name_error(bad) is not None, bad
    assert names.channel_name_error("#server-to-user-" + "u" * 100, max_length=110) is not None
    assert names.server_to_user_channel("42") == "#server-to-user-42"
    assert names.server_to_user_id("#server-to-user-42") == "42"
    assert names.server_to_user_id("private-42") is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALLOWED, min_size=1, max_size=MAX_USER_ID_LENGTH))
def test_every_valid_user_id_makes_a_valid_server_to_user_channel(user_id: str) -> None:
    assert names.user_id_error(user_id) is None
    channel = names.server_to_user_channel(user_id)
    assert names.channel_name_error(channel) is None
    assert names.channel_kind(channel) is names.SERVER_TO_USER
    assert names.server_to_user_id(channel) == user_id


@pytest.mark.parametrize("bad", [None, "", 10, "a b", "a\n", "a#b", "u" * (MAX_USER_ID_LENGTH + 1)])
def test_invalid_user_ids(bad: object) -> None:
    assert names.user_id_error(bad) is not None


def test_event_names() -> None:
    assert names.event_name_error("my-event") is None
    assert names.event_name_error("e" * 200) is None
    assert names.event_name_error("e" * 201) is not None
    assert names.event_name_error("") is not None
    assert names.event_name_error(None) is not None
    assert names.event_name_error(5) is not None
    assert names.is_client_event("client-typing")
    assert not names.is_client_event("clienttyping")
    assert not names.is_client_event("pusher:ping")
