"""The daphne command's access log without signatures.

``daphne project.asgi:application`` writes an NCSA-style access log to stdout (verbosity 1, the
default) through ``daphne.access.AccessLogGenerator``, with each request's full path and query
string, and not through ``logging``, so no logging filter reaches it. This wraps the generator's
``__call__`` to redact the path first (``realtime.redaction``).
"""

from __future__ import annotations

import functools
from typing import Any

from ..redaction import redact

_MARK = "_realtime_redacts"


def install() -> None:
    """Wrap ``AccessLogGenerator.__call__`` once per process (when daphne is installed)."""
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:
        return
    original = AccessLogGenerator.__call__
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def call(self: Any, protocol: str, action: str, details: Any, *args: Any, **kwargs: Any) -> None:
        path = details.get("path") if isinstance(details, dict) else None
        if isinstance(path, str):
            details = {**details, "path": redact(path)}
        original(self, protocol, action, details, *args, **kwargs)

    setattr(call, _MARK, True)
    AccessLogGenerator.__call__ = call  # type: ignore[method-assign]
