"""Test settings: the project's settings with a throwaway SQLite database and fast timeouts.

With ``REALTIME_TEST_DATABASE=postgresql`` the database is instead a private PostgreSQL server that
``tests/postgres.py`` starts for this process (on a free port, in a temporary directory) and stops at
exit; pytest-django creates its ``test_realtime`` database there.
"""

import atexit
import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.settings import *  # noqa: F403
from tests.postgres import start_postgres

match os.environ.get("REALTIME_TEST_DATABASE", ""):
    case "" | "sqlite":
        # A file, not ":memory:": the webhook outbox writes from a thread of its own, and SQLite's
        # shared in-memory cache locks whole tables instead of waiting as a file database does.
        _sqlite = Path(tempfile.gettempdir()) / f"realtime-tests-{os.getpid()}.sqlite3"
        DATABASES = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _sqlite, "TEST": {"NAME": _sqlite}}
        }
    case "postgresql":
        _postgres = start_postgres(Path(tempfile.gettempdir()))
        atexit.register(_postgres.stop)
        DATABASES = {"default": dj_database_url.parse(_postgres.url)}
    case other:
        raise ImproperlyConfigured(f"REALTIME_TEST_DATABASE={other!r}: expected 'sqlite' or 'postgresql'")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REALTIME = {k: v for k, v in REALTIME.items() if k != "DEFAULT_APP"}  # noqa: F405
# In-process tests build runtimes without a server: no metrics listener on a fixed port.
REALTIME_METRICS = {**REALTIME_METRICS, "ENABLED": False}  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}
