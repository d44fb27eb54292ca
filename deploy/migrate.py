"""Apply the database migrations before a node serves, one node at a time.

Nodes that start together (the compose file's two nodes, a Kubernetes rollout, several systemd
instances on one host) would otherwise run ``manage.py migrate`` at the same moment and race to
create the same tables, and the loser would fail to start. Here they take turns: on PostgreSQL
through a session advisory lock, on SQLite through a lock file beside the database (processes that
share one SQLite file share a host). The node that comes second finds nothing left to apply.

Run as ``python deploy/migrate.py`` from anywhere; the image's entrypoint and the systemd units do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Names "Realtime's migrations" among the advisory locks of a database that may be shared with others.
ADVISORY_LOCK_KEY = 0x5245_414C_5449_4D45  # "REALTIME"


@contextlib.contextmanager
def one_at_a_time(connection: Any) -> Iterator[None]:
    """Hold the database's migration lock (released when the block ends or the process dies)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
    elif connection.vendor == "sqlite":
        lock_path = Path(f"{connection.settings_dict['NAME']}.migrate-lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    with one_at_a_time(connection):
        call_command("migrate", interactive=False)


if __name__ == "__main__":
    main()
