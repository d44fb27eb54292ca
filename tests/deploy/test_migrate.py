"""deploy/migrate.py: nodes that start together apply the migrations one at a time.

Each test holds the lock a starting node would take and shows that the node waits for it, then
migrates once it is released, on SQLite (a lock file beside the database) and on PostgreSQL (an
advisory lock; a private server from tests/postgres.py, so end to end).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT
from tests.postgres import start_postgres

MIGRATE = ROOT / "deploy" / "migrate.py"
WAIT = 2.0  # seconds a blocked node is watched for before the lock is released


def load_migrate_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_migrate", MIGRATE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start(data_dir: Path, database_url: str | None = None) -> subprocess.Popen[str]:
    env = {"PATH": os.environ["PATH"], "REALTIME_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    if database_url:
        env["DATABASE_URL"] = database_url
    # Run from elsewhere: the script finds the project beside itself.
    return subprocess.Popen(
        [sys.executable, str(MIGRATE)],
        cwd=data_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_sqlite_node_waits_for_the_lock_then_migrates(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    lock_path = tmp_path / "db.sqlite3.migrate-lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        node = start(tmp_path)
        time.sleep(WAIT)
        assert node.poll() is None, "the node migrated without the lock"
        assert "realtime_app" not in (sqlite_tables(database) if database.exists() else set())
    output = finish(node)
    assert "Applying realtime.0001_initial... OK" in output
    assert "realtime_app" in sqlite_tables(database)
    # The second node finds nothing to do.
    assert "No migrations to apply" in finish(start(tmp_path))


@pytest.mark.e2e
def test_postgresql_node_waits_for_the_advisory_lock_then_migrates(tmp_path: Path) -> None:
    key = load_migrate_module().ADVISORY_LOCK_KEY
    server = start_postgres(tmp_path)
    try:
        with psycopg.connect(server.url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [key])
            node = start(tmp_path, server.url)
            time.sleep(WAIT)
            assert node.poll() is None, "the node migrated without the lock"
            assert holder.execute("SELECT to_regclass('realtime_app')").fetchone() == (None,)
            holder.execute("SELECT pg_advisory_unlock(%s)", [key])
            output = finish(node)
            assert "Applying realtime.0001_initial... OK" in output
            assert holder.execute("SELECT to_regclass('realtime_app')").fetchone() == ("realtime_app",)
            holder.execute("CREATE DATABASE fresh")
        # Two nodes at once on a fresh database: both start, one migrates, the other finds nothing left.
        fresh = server.url.rsplit("/", 1)[0] + "/fresh"
        outputs = [finish(node) for node in (start(tmp_path, fresh), start(tmp_path, fresh))]
        assert sum("Applying realtime.0001_initial... OK" in output for output in outputs) == 1
        assert sum("No migrations to apply" in output for output in outputs) == 1
    finally:
        server.stop()
