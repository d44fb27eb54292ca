"""Test settings: the project's settings with an in-memory database and fast timeouts."""

from project.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REALTIME = {k: v for k, v in REALTIME.items() if k != "DEFAULT_APP"}  # noqa: F405
# In-process tests build runtimes without a server: no metrics listener on a fixed port.
REALTIME_METRICS = {**REALTIME_METRICS, "ENABLED": False}  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}
