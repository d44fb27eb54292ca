"""The start-up check of daphne/Twisted/autobahn/Channels internals, and the access log's redaction."""

from __future__ import annotations

import inspect
import io
import re
from typing import Any

import pytest
from daphne.access import AccessLogGenerator
from daphne.server import Server
from django.core.management import call_command
from django.core.management.base import CommandError
from twisted.internet import abstract

from realtime.daphne import access_log, internals
from realtime.daphne.internals import (
    TESTED,
    UnsupportedInternals,
    installed_versions,
    problems,
    verify_internals,
)

from ..conftest import ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _init_without_temp_data_len(original: Any) -> Any:
    """``FileDescriptor.__init__`` as a Twisted release that renamed ``_tempDataLen`` might have it."""

    def __init__(self: Any, reactor: Any = None) -> None:
        original(self, reactor)
        self._pendingLength = self.__dict__.pop("_tempDataLen", 0)

    return __init__


def test_nothing_is_missing_on_the_pinned_versions() -> None:
    assert problems() == []
    verify_internals()  # does not raise
    assert installed_versions() == TESTED


def test_tested_versions_are_the_ones_requirements_pins() -> None:
    pins = _pins()
    for name, tested in TESTED.items():
        assert pins.get(name.lower()) == tested, name


def test_a_missing_twisted_internal_is_named_with_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        abstract.FileDescriptor, "__init__", _init_without_temp_data_len(abstract.FileDescriptor.__init__)
    )
    assert problems() == ["Twisted FileDescriptor._tempDataLen"]

    with pytest.raises(UnsupportedInternals) as raised:
        verify_internals()
    message = str(raised.value)
    assert "missing Twisted FileDescriptor._tempDataLen." in message
    installed = installed_versions()
    for name, found in installed.items():
        assert f"{name} {found}" in message
    assert "Twisted 26.10.0" in message and "daphne 4.2.3" in message
    assert "requirements.txt" in message


def test_a_changed_daphne_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Server.handle_reply

    async def handle_reply(self: Any, protocol: Any, message: dict[str, Any], reply_to: Any = None) -> None:
        await original(self, protocol, message)

    monkeypatch.setattr(Server, "handle_reply", handle_reply)
    assert problems() == ["daphne Server.handle_reply(protocol, message)"]
    with pytest.raises(
        UnsupportedInternals, match=re.escape("daphne Server.handle_reply(protocol, message)")
    ):
        verify_internals()


def test_every_missing_internal_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        abstract.FileDescriptor, "__init__", _init_without_temp_data_len(abstract.FileDescriptor.__init__)
    )
    monkeypatch.delattr(abstract.FileDescriptor, "offset")
    assert problems() == ["Twisted FileDescriptor._tempDataLen", "Twisted FileDescriptor.offset"]
    with pytest.raises(UnsupportedInternals, match=re.escape("_tempDataLen; Twisted FileDescriptor.offset")):
        verify_internals()


def test_a_check_that_raises_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> bool:
        raise AttributeError("renamed")

    checks = internals._checks

    monkeypatch.setattr(internals, "_checks", lambda: [*checks(), ("something renamed", explode)])
    assert problems() == ["something renamed"]


def test_an_uninstalled_package_reads_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    real = internals.version

    def version(name: str) -> str:
        if name == "autobahn":
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(internals, "version", version)
    assert installed_versions()["autobahn"] == "missing"


def test_realtime_serve_refuses_to_start_on_missing_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        abstract.FileDescriptor, "__init__", _init_without_temp_data_len(abstract.FileDescriptor.__init__)
    )
    started: list[object] = []
    monkeypatch.setattr("realtime.daphne.serve._run_daphne", lambda *args: started.append(args))
    out = io.StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("realtime_serve", "--port", "0", "--no-metrics", stdout=out)
    message = str(raised.value)
    assert "Twisted FileDescriptor._tempDataLen" in message
    assert "requirements.txt" in message
    assert started == []
    assert "Listening" not in out.getvalue()


# --- the daphne command's access log ------------------------------------------------------------


@pytest.fixture
def unwrapped(monkeypatch: pytest.MonkeyPatch) -> Any:
    """daphne's own ``AccessLogGenerator.__call__`` in place for one test (the app's ``ready()``
    already installed the wrapper in this process); the wrapped one comes back afterwards."""
    original = inspect.unwrap(AccessLogGenerator.__call__)
    monkeypatch.setattr(AccessLogGenerator, "__call__", original)
    return original


def test_access_log_redacts_signatures(unwrapped: Any) -> None:
    access_log.install()
    stream = io.StringIO()
    log = AccessLogGenerator(stream)
    path = "/apps/1/events?auth_key=k&auth_timestamp=1&auth_version=1.0&auth_signature=abc123"

    log(
        "http",
        "complete",
        {"client": "127.0.0.1:5000", "method": "POST", "path": path, "status": 200, "size": 2},
    )
    log("websocket", "connecting", {"client": "127.0.0.1:5001", "path": "/app/k?auth_signature=abc123"})

    text = stream.getvalue()
    assert text.count("auth_signature=[redacted]") == 2
    assert "abc123" not in text
    assert (
        "POST /apps/1/events?auth_key=k&auth_timestamp=1&auth_version=1.0&auth_signature=[redacted]" in text
    )
    assert " 200 2\n" in text


def test_access_log_before_install_is_daphne_s(unwrapped: Any) -> None:
    # What the wrapper protects against: daphne writes the path as it came.
    stream = io.StringIO()
    AccessLogGenerator(stream)(
        "websocket", "connected", {"client": "c", "path": "/app/k?auth_signature=abc123"}
    )
    assert "abc123" in stream.getvalue()


def test_access_log_install_twice_wraps_once(unwrapped: Any) -> None:
    access_log.install()
    wrapper = AccessLogGenerator.__call__
    access_log.install()
    assert AccessLogGenerator.__call__ is wrapper
    assert wrapper.__wrapped__ is unwrapped

    stream = io.StringIO()
    AccessLogGenerator(stream)(
        "websocket", "disconnected", {"client": "c", "path": "/app/k?auth_signature=abc123"}
    )
    assert stream.getvalue().count("WSDISCONNECT /app/k?auth_signature=[redacted]") == 1
    assert len(stream.getvalue().splitlines()) == 1
