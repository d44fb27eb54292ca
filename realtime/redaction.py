"""Keeping signatures and secrets out of request logs, whatever server writes them.

A signed HTTP API request carries ``auth_signature`` in its query string, and servers log the
full path: daphne's ``runserver`` (logger ``django.channels.server``), Django's own
``runserver`` (``django.server``), uvicorn (``uvicorn.access``) and the daphne command's access
log (``realtime.daphne.access_log``). ``RedactSecrets`` rewrites such values to ``[redacted]``;
``AppConfig.ready()`` puts it on those loggers, and a project can add it to its handlers too
(``{"()": "realtime.redaction.RedactSecrets"}`` in ``LOGGING["filters"]``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

# Query parameters and form fields whose values are never logged.
SENSITIVE_PARAMETERS = ("auth_signature", "signature", "secret", "auth", "token", "password")
_PARAMETER = re.compile(r"(?i)(?<![A-Za-z0-9_])((?:" + "|".join(SENSITIVE_PARAMETERS) + r")=)[^&;\s\"']*")
REDACTED = "[redacted]"
# Loggers that servers write request lines to; each gets the filter at start.
REQUEST_LOGGERS = ("django.server", "django.channels.server", "uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """``text`` with the value of every sensitive ``name=value`` replaced by ``[redacted]``."""
    if "=" not in text:
        return text
    return _PARAMETER.sub(r"\1" + REDACTED, text)


def _redact_value(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """A logging filter that redacts sensitive query parameters in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``'s message and its str arguments (a tuple or a mapping) in place; always True,
        so the record is still logged.
        """
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, Mapping):
            record.args = {key: _redact_value(value) for key, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_redact_value(value) for value in args)
        return True


def install_on_request_loggers() -> None:
    """Put ``RedactSecrets`` on every logger in ``REQUEST_LOGGERS`` (once per logger)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
            logger.addFilter(RedactSecrets())
