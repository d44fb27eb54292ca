"""One process per core: the parent binds the public port once and runs workers that share it.

Each worker is a full ``realtime_serve`` node adopting the inherited listening socket (daphne's
``fd:`` endpoint), so the kernel spreads new connections over the workers. Workers share their
state through Redis like any other nodes; worker ``i`` serves its metrics on the metrics port
plus ``i``. The parent forwards SIGTERM/SIGINT (each worker drains its sockets with 4200) and
restarts a worker that dies on its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TextIO

from ..runtime import get_runtime
from .startup import ServeError, ServeOptions, prepare_apps

RESTART_DELAY_SECONDS = 1.0


def bind_public_socket(host: str, port: int) -> socket.socket:
    """The shared listening socket, inheritable by the workers (IPv4 only: Twisted's ``fd:``)."""
    if ":" in host:
        raise ServeError("--workers needs an IPv4 host")
    try:
        sock = socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        raise ServeError(f"Could not listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def worker_command(options: ServeOptions, fd: int, index: int) -> list[str]:
    """The command line of worker ``index``: this interpreter and manage.py, adopting ``fd``."""
    host, _ = options.public_address()
    command = [sys.executable, sys.argv[0], "realtime_serve", "--worker-fd", str(fd)]
    command += ["--supervisor-pid", str(os.getpid()), "--host", host]
    if not options.metrics:
        command.append("--no-metrics")
    else:
        if options.metrics_host is not None:
            command += ["--metrics-host", options.metrics_host]
        if options.metrics_port is not None:
            command += ["--metrics-port", str(options.metrics_port)]
        command += ["--metrics-port-offset", str(index)]
    return command


def _start(command: list[str], fd: int) -> subprocess.Popen[bytes]:
    # Our own interpreter and manage.py, with arguments built above: no outside input. A session
    # of its own: a Ctrl-C or a systemd stop signals the whole group, and a worker that got the
    # signal twice (the supervisor forwards it) would stop at once instead of draining.
    return subprocess.Popen(command, pass_fds=(fd,), start_new_session=True)  # noqa: S603


def supervise(options: ServeOptions, workers: int, out: TextIO) -> None:
    """Bind, start ``workers`` workers, restart any that dies, forward SIGTERM/SIGINT, wait."""
    try:
        prepare_apps(options, get_runtime(), out)
    except ValueError as exc:
        raise ServeError(str(exc)) from exc
    sock = bind_public_socket(*options.public_address())
    host, port = sock.getsockname()[:2]
    out.write(f"Listening (public) on {host}:{port} with {workers} workers\n")
    out.flush()
    fd = sock.fileno()
    commands = [worker_command(options, fd, i) for i in range(workers)]
    running = [_start(c, fd) for c in commands]
    stopping = {"signal": 0}

    def forward(signum: int, frame: object) -> None:
        stopping["signal"] = signum
        for worker in running:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        time.sleep(0.2)
        if stopping["signal"]:
            for worker in running:
                worker.wait()
            sock.close()
            return
        for i, worker in enumerate(running):
            if worker.poll() is not None and not stopping["signal"]:
                out.write(f"Worker {i} exited with {worker.returncode}; restarting\n")
                out.flush()
                time.sleep(RESTART_DELAY_SECONDS)
                running[i] = _start(commands[i], fd)
