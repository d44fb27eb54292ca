"""``/usage`` on the private metrics site: the process' memory and sockets as JSON.

What soketi's and sockudo's ``/usage`` give (memory used, free and total, in bytes, and the share
used), plus this process' open sockets and channels with subscribers here. Read from ``/proc`` on
Linux (RSS as the memory gate reads it, ``runtime.memorygate.rss_bytes``); elsewhere the peak RSS.
"""

from __future__ import annotations

import os
from typing import Any

from realtime.runtime import Runtime
from realtime.runtime.memorygate import rss_bytes


def _proc_kib(path: str, field: str) -> int | None:
    try:
        with open(path, "rb") as lines:
            for line in lines:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def usage(runtime: Runtime) -> dict[str, Any]:
    """``{"memory": {"rss", "used", "free", "total": bytes, "percent": rss of total}, "connections":
    open sockets of this process, "channels": channels with a subscriber here, "pid"}``."""
    rss = rss_bytes()
    total_kib = _proc_kib("/proc/meminfo", "MemTotal")
    free_kib = _proc_kib("/proc/meminfo", "MemAvailable")
    total = total_kib * 1024 if total_kib is not None else None
    registry = runtime.registry
    return {
        "memory": {
            "rss": rss,
            "used": rss,
            "free": free_kib * 1024 if free_kib is not None else None,
            "total": total,
            "percent": round(100 * rss / total, 3) if total else None,
        },
        "connections": len(registry.sockets),
        "channels": len(registry.channels),
        "pid": os.getpid(),
    }
