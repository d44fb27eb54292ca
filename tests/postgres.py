"""A private, throwaway PostgreSQL server for tests, started from Debian's binaries.

``start_postgres(base_dir)`` runs ``initdb`` in a fresh directory, starts the server on a free port
on 127.0.0.1 (trust authentication, durability off) and creates one database; ``.stop()`` shuts it
down and removes the directory. It never touches a machine-wide server (say, one on 5432).

PostgreSQL refuses to run as root, so under root the server binaries run as the ``postgres``
system user (``nobody`` when there is none) through ``runuser``, and the directory belongs to it.

``bin/test.d/postgres.sh`` installs the binaries (Debian's ``postgresql`` package).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"  # the database role initdb creates; it can create databases (pytest-django's)
DBNAME = "realtime"
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it: try another
TIMEOUT = 60  # seconds, for each initdb / pg_ctl / createdb run

# Speed over durability: the cluster lives only as long as the test run.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}
# A unix socket path longer than this (the limit is 107 bytes on Linux) cannot be bound.
MAX_SOCKET_PATH = 100


@dataclass
class PostgresServer:
    """A running private server: connect to ``url`` (dj-database-url and psycopg 3 both take it).

    ``directory`` holds the cluster (``data/``), the unix socket (``run/``) and the server log;
    ``stop()`` removes it.
    """

    url: str
    port: int
    dbname: str
    directory: Path
    bin_dir: Path
    user: str | None  # the user the server runs as when started by root; None: the current user
    _stopped: bool = field(default=False, repr=False)

    @property
    def log_file(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def run_as(self) -> list[str]:
        return _as_user(self.user)

    def stop(self) -> None:
        """Shut the server down at once (``pg_ctl stop -m immediate``) and remove its directory.

        Idempotent, never raises: safe from ``atexit`` and fixture finalizers. When ``pg_ctl`` fails,
        the postmaster gets SIGQUIT (the same immediate shutdown) from the pid in its pid file.
        """
        if self._stopped:
            return
        self._stopped = True
        data = self.directory / "data"
        pg_ctl = [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(data)]
        try:
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "-w", "stop"],
                cwd=self.directory,
                env=_clean_env(),
                capture_output=True,
                timeout=TIMEOUT,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(self.directory, ignore_errors=True)


def find_bin_dir() -> Path:
    """The ``bin`` directory of the highest installed PostgreSQL (``/usr/lib/postgresql/N/bin``).

    Raises FileNotFoundError when none has ``initdb``, ``pg_ctl`` and ``postgres``
    (install Debian's ``postgresql`` package: ``bin/test`` does).
    """
    candidates = [
        path
        for path in Path("/").glob(BIN_GLOB.lstrip("/"))
        if all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))
    ]
    if not candidates:
        raise FileNotFoundError(f"no PostgreSQL server binaries in {BIN_GLOB}: apt-get install postgresql")
    return max(candidates, key=lambda path: _version_key(path.parent.name))


def start_postgres(base_dir: Path, dbname: str = DBNAME) -> PostgresServer:
    """Initialise and start a private server in a fresh directory under ``base_dir``; create ``dbname``.

    The server listens on a free TCP port on 127.0.0.1 only (its unix socket is in its own
    directory), trusts every local connection and runs with fsync off. It accepts connections
    when this returns; ``url`` is ``postgres://postgres@127.0.0.1:PORT/DBNAME``. Under root, if the
    unprivileged user cannot reach ``base_dir`` (pytest's temporary directories are private to
    their owner), the directory is made in the system temporary directory instead.

    Raises FileNotFoundError (no binaries, see ``find_bin_dir``), subprocess.CalledProcessError
    (initdb or createdb failed) or RuntimeError (the server did not start; the message has the
    end of its log). Nothing is left running or on disk when it raises.
    """
    bin_dir = find_bin_dir()
    user = _unprivileged_user() if os.geteuid() == 0 else None
    directory = _make_directory(Path(base_dir), user)
    server = PostgresServer(url="", port=0, dbname=dbname, directory=directory, bin_dir=bin_dir, user=user)
    try:
        _initdb(server)
        _start(server)
        _run(server, [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port)], dbname)
    except BaseException:
        server.stop()
        raise
    server.url = f"postgres://{SUPERUSER}@127.0.0.1:{server.port}/{dbname}"
    return server


def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """Generator for a fixture: a private server for the fixture's scope, stopped afterwards.

    Use as ``yield from postgres_server(tmp_path_factory)`` in a ``scope="session"`` fixture.
    """
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


def _version_key(name: str) -> tuple[int, ...]:
    """``"16"`` -> ``(16,)``, ``"9.6"`` -> ``(9, 6)``; names that are not versions sort first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


def _as_user(user: str | None) -> list[str]:
    """The prefix that runs a command as ``user`` from root (runuser, else setpriv); [] for None."""
    if user is None:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    return ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups", "--"]


def _make_directory(base_dir: Path, user: str | None) -> Path:
    """A fresh directory for the cluster with its socket directory ``run/``, owned by ``user`` if given.

    Made in the system temporary directory instead of ``base_dir`` when the socket path would be
    too long or ``user`` cannot reach ``base_dir``.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="postgres-", dir=base_dir))
    if len(str(directory / "run" / ".s.PGSQL.65535")) > MAX_SOCKET_PATH or not _usable_by(directory, user):
        shutil.rmtree(directory)
        directory = Path(tempfile.mkdtemp(prefix="realtime-postgres-"))
        _usable_by(directory, user)
    (directory / "run").mkdir()
    if user:
        shutil.chown(directory / "run", user, pwd.getpwnam(user).pw_gid)
    return directory


def _usable_by(directory: Path, user: str | None) -> bool:
    """Give ``directory`` to ``user``; whether the user can then get to it (every parent searchable)."""
    if user is None:
        return True
    shutil.chown(directory, user, pwd.getpwnam(user).pw_gid)
    probe = [*_as_user(user), "test", "-w", str(directory), "-a", "-x", str(directory)]
    return subprocess.run(probe, check=False).returncode == 0


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables (PGHOST, PGPORT, ...), which would point elsewhere."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _run(server: PostgresServer, command: list[str], *args: str) -> None:
    """Run a PostgreSQL program as the server's user; CalledProcessError (with its output as a note)."""
    try:
        subprocess.run(
            [*server.run_as, *command, "-U", SUPERUSER, *args],
            cwd=server.directory,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        exc.add_note(f"{exc.stdout}{exc.stderr}".strip())
        raise


def _initdb(server: PostgresServer) -> None:
    data = server.directory / "data"
    _run(
        server,
        [str(server.bin_dir / "initdb"), "-D", str(data)],
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
        "--no-instructions",
    )
    settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{server.directory / 'run'}'"}
    lines = [f"{key} = {value}\n" for key, value in settings.items()]
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(["\n# tests/postgres.py\n", *lines])


def _start(server: PostgresServer) -> None:
    """Start on a free port (another one if it was taken meanwhile); return once it accepts connections."""
    pg_ctl = [*server.run_as, str(server.bin_dir / "pg_ctl"), "-D", str(server.directory / "data")]
    for _ in range(START_ATTEMPTS):
        server.port = _free_port()
        server.log_file.unlink(missing_ok=True)
        options = ["-l", str(server.log_file), "-o", f"-p {server.port}", "-w", "-t", str(TIMEOUT)]
        started = subprocess.run(
            [*pg_ctl, *options, "start"],
            cwd=server.directory,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=2 * TIMEOUT,
            check=False,
        )
        if started.returncode == 0:
            return
        log = server.log_file.read_text(errors="replace") if server.log_file.exists() else ""
        if "could not bind" not in log and "already in use" not in log:
            break
    tail = "\n".join(log.splitlines()[-20:])
    raise RuntimeError(f"PostgreSQL did not start ({started.stdout}{started.stderr}):\n{tail}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
