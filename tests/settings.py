"""Test settings: the project's settings with an in-memory database and fast timeouts."""

from project.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REALTIME = {**REALTIME, "DEFAULT_APP": None}  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}
