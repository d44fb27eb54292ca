"""``/usage`` on the private metrics site: the process' memory and sockets as JSON.

What soketi's and sockudo's ``/usage`` give (memory used, free and total, in bytes, and the share
used), plus this process' open sockets and channels with subscribers here. Read from ``/proc`` on
Linux; elsewhere the memory figures are the peak RSS ``resource`` reports.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

from realtime.runtime import Runtime


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
    rss_kib = _proc_kib("/proc/self/status", "VmRSS")
    if rss_kib is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_kib = peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere
    total_kib = _proc_kib("/proc/meminfo", "MemTotal")
    free_kib = _proc_kib("/proc/meminfo", "MemAvailable")
    rss = rss_kib * 1024
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
