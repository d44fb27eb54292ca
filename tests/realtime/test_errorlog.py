"""ErrorLog: an error a client can repeat is written once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from realtime.errorlog import ErrorLog

logger = logging.getLogger("tests.errorlog")


def fail(log: ErrorLog, where: str, error: Exception) -> bool:
    try:
        raise error
    except Exception:
        return log.exception(logger, where, "it failed", app_id="1")


def test_repeats_are_counted_into_the_next_line(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("realtime.errorlog.time.monotonic", lambda: clock[0])
    log = ErrorLog(interval=60)
    with caplog.at_level(logging.ERROR, logger="tests.errorlog"):
        written = [fail(log, "frame", TypeError("x")) for _ in range(500)]
        assert written.count(True) == 1
        assert fail(log, "frame", KeyError("other kind")) is True
        assert fail(log, "api", TypeError("other place")) is True
        clock[0] += 61
        assert fail(log, "frame", TypeError("x")) is True
    lines = [record for record in caplog.records if record.name == "tests.errorlog"]
    assert len(lines) == 4
    assert lines[0].exc_info is not None and lines[0].repeated == 0
    assert lines[-1].repeated == 499
    assert "499 more like it" in lines[-1].getMessage()
