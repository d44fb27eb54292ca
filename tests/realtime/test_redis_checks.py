"""System checks of the Redis (several nodes) settings: each id fires on its misconfiguration, with a hint."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from realtime.checks import check_redis

REDIS = {"STATE_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_MAX_CONNECTIONS": 200}


def ids(problems: list[Any]) -> list[str]:
    return [problem.id for problem in problems]


def realtime(**values: Any) -> dict[str, Any]:
    return {**settings.REALTIME, **values}


def test_a_redis_configuration_passes() -> None:
    with override_settings(REALTIME=realtime(**REDIS)):
        assert check_redis() == []


def test_memory_backend_passes() -> None:
    with override_settings(REALTIME=realtime(STATE_BACKEND="memory", REDIS_URL="")):
        assert check_redis() == []


def test_w003_redis_url_with_memory_state() -> None:
    with override_settings(REALTIME=realtime(STATE_BACKEND="memory", REDIS_URL="redis://r:6379/0")):
        problems = check_redis()
    assert ids(problems) == ["realtime.W003"]
    assert isinstance(problems[0], Warning)
    assert "'redis'" in problems[0].hint


def test_w004_redis_channel_layer_with_memory_state() -> None:
    layers = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}
    with override_settings(REALTIME=realtime(STATE_BACKEND="memory", REDIS_URL=""), CHANNEL_LAYERS=layers):
        problems = check_redis()
    assert ids(problems) == ["realtime.W004"]
    assert "STATE_BACKEND" in problems[0].hint


def test_e006_not_a_redis_url() -> None:
    with override_settings(REALTIME=realtime(**{**REDIS, "REDIS_URL": "http://127.0.0.1:6379"})):
        problems = check_redis()
    assert ids(problems) == ["realtime.E006"]
    assert isinstance(problems[0], Error)
    assert "rediss://" in problems[0].hint


@pytest.mark.parametrize("value", [0, 2, "200", True, 12.5])
def test_e007_max_connections_must_be_a_usable_number(value: Any) -> None:
    with override_settings(REALTIME=realtime(**{**REDIS, "REDIS_MAX_CONNECTIONS": value})):
        problems = check_redis()
    assert ids(problems) == ["realtime.E007"]
    assert "200" in problems[0].hint


def test_w005_dead_node_timeout_shorter_than_a_redis_call() -> None:
    with override_settings(REALTIME=realtime(**REDIS, DEAD_NODE_TIMEOUT=3, REDIS_SOCKET_TIMEOUT=5)):
        problems = check_redis()
    assert ids(problems) == ["realtime.W005"]
    assert "several times" in problems[0].hint


def test_redis_checks_are_bound_to_manage_py_check() -> None:
    with (
        override_settings(REALTIME=realtime(**{**REDIS, "REDIS_MAX_CONNECTIONS": 0})),
        pytest.raises(SystemCheckError) as info,
    ):
        call_command("check")
    assert "realtime.E007" in str(info.value)
