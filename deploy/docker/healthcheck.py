"""The image's HEALTHCHECK: exit 0 when ``/health`` on the public port answers 200, else 1.

The slim base image has no curl. ``/health`` (not ``/ready``) because a node that is draining or has
lost Redis is alive and recovers by itself; restarting it would not help.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_SECONDS = 3


def health_url() -> str:
    # The server listens on every interface in the container (HOST=0.0.0.0), loopback included.
    port = os.environ.get("PORT") or "6001"
    prefix = os.environ.get("PATH_PREFIX", "").strip().rstrip("/")
    return f"http://127.0.0.1:{port}{prefix}/health"


def main() -> int:
    try:
        with urllib.request.urlopen(health_url(), timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
