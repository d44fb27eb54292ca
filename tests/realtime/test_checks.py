"""System checks for REALTIME settings: each id fires on its misconfiguration, with a hint, and is bound."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from realtime.checks import check_settings


def ids(problems: list[Any]) -> list[str]:
    return [problem.id for problem in problems]


def realtime(**values: Any) -> dict[str, Any]:
    return {**settings.REALTIME, **values}


def test_the_project_settings_pass() -> None:
    assert check_settings() == []


def test_e001_realtime_must_be_a_dict() -> None:
    with override_settings(REALTIME=[("PORT", 1)]):
        problems = check_settings()
    assert ids(problems) == ["realtime.E001"]
    assert isinstance(problems[0], Error) and problems[0].hint


def test_e002_unknown_keys() -> None:
    with override_settings(REALTIME=realtime(ACTIVTY_TIMEOUT=5, BOGUS=1)):
        problems = check_settings()
    assert ids(problems) == ["realtime.E002", "realtime.E002"]
    assert "'ACTIVTY_TIMEOUT'" in problems[0].msg and "'BOGUS'" in problems[1].msg
    assert "ACTIVITY_TIMEOUT" in problems[0].hint


def test_e003_unknown_state_backend() -> None:
    with override_settings(REALTIME=realtime(STATE_BACKEND="memcached")):
        problems = check_settings()
    assert ids(problems) == ["realtime.E003"]
    assert "memcached" in problems[0].msg and "redis" in problems[0].hint


def test_e004_redis_backend_without_url() -> None:
    with override_settings(REALTIME=realtime(STATE_BACKEND="redis", REDIS_URL="", REDIS_MAX_CONNECTIONS=200)):
        problems = check_settings()
    assert ids(problems) == ["realtime.E004"]
    assert "REDIS_URL" in problems[0].hint


def test_no_redis_warnings_for_the_memory_backend() -> None:
    with override_settings(REALTIME=realtime(STATE_BACKEND="memory", REDIS_MAX_CONNECTIONS=None)):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("ACTIVITY_TIMEOUT", 0), ("ACTIVITY_TIMEOUT", None), ("PONG_TIMEOUT", -1), ("PONG_TIMEOUT", "30")],
)
def test_e005_timeouts_must_be_positive(name: str, value: Any) -> None:
    with override_settings(REALTIME=realtime(**{name: value})):
        problems = check_settings()
    assert ids(problems) == ["realtime.E005"]
    assert name in problems[0].msg


def test_e008_several_workers_need_redis() -> None:
    with override_settings(REALTIME=realtime(WORKERS=2, STATE_BACKEND="memory")):
        problems = check_settings()
    assert ids(problems) == ["realtime.E008"]
    assert "REDIS_URL" in problems[0].hint
    with override_settings(REALTIME=realtime(WORKERS=1, STATE_BACKEND="memory")):
        assert check_settings() == []


def test_w002_daphne_not_installed() -> None:
    apps = [app for app in settings.INSTALLED_APPS if app != "daphne"]
    with override_settings(INSTALLED_APPS=apps):
        problems = check_settings()
    assert ids(problems) == ["realtime.W002"]
    assert "daphne" in problems[0].hint


def test_checks_are_bound_to_manage_py_check() -> None:
    call_command("check")  # clean settings: no SystemCheckError
    with override_settings(REALTIME=realtime(STATE_BACKEND="bogus")), pytest.raises(SystemCheckError) as info:
        call_command("check")
    assert "realtime.E003" in str(info.value)
    with override_settings(REALTIME=realtime(STATE_BACKEND="bogus")), pytest.raises(SystemCheckError):
        call_command("check", tags=["compatibility"])


def test_e009_trusted_proxies_must_be_networks() -> None:
    with override_settings(REALTIME=realtime(TRUSTED_PROXIES=("10.0.0.0/8", "::1", "127.0.0.1"))):
        assert ids(check_settings()) == []
    with override_settings(REALTIME=realtime(TRUSTED_PROXIES=("10.0.0.0/8", "proxy.example", "300.1.1.1"))):
        problems = check_settings()
    assert ids(problems) == ["realtime.E009"]
    assert "proxy.example" in problems[0].msg and "300.1.1.1" in problems[0].msg


def test_e010_webhook_worker_is_server_or_external() -> None:
    for worker in ("server", "external"):
        with override_settings(REALTIME=realtime(WEBHOOK_WORKER=worker)):
            assert ids(check_settings()) == []
    with override_settings(REALTIME=realtime(WEBHOOK_WORKER="celery")):
        problems = check_settings()
    assert ids(problems) == ["realtime.E010"]
    assert "celery" in problems[0].msg


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({"MEMORY_LIMIT_MB": 512}, []),
        ({"MEMORY_LIMIT_MB": 512, "MEMORY_RESUME_MB": 400.5}, []),
        ({"MEMORY_LIMIT_MB": 0}, ["realtime.E011"]),
        ({"MEMORY_LIMIT_MB": "512"}, ["realtime.E011"]),
        ({"MEMORY_LIMIT_MB": 512, "MEMORY_RESUME_MB": 600}, ["realtime.E011"]),
        ({"MEMORY_RESUME_MB": 400}, ["realtime.E011"]),
    ],
)
def test_e011_memory_gate_levels(options: dict, problems: list[str]) -> None:
    with override_settings(REALTIME=realtime(**options)):
        assert ids(check_settings()) == problems
