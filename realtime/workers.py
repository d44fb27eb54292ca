"""One process per core: the parent binds the public port once and runs workers that share it.

Each worker is a full ``realtime_serve`` node adopting the inherited listening socket (daphne's
``fd:`` endpoint), so the kernel spreads new connections over the workers. Workers share their
state through Redis like any other nodes; each serves its own metrics on ``metrics_port + i``.
The parent forwards SIGTERM/SIGINT (each worker drains its sockets with 4200) and restarts a
worker that dies on its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TextIO

from .serving import ServeOptions, prepare_apps

RESTART_DELAY_SECONDS = 1.0


def bind_public_socket(host: str, port: int) -> socket.socket:
    if ":" in host:
        # Twisted's fd: endpoint string adopts AF_INET sockets only.
        raise ValueError("--workers needs an IPv4 host")
    sock = socket.create_server((host, port), backlog=2048)
    sock.set_inheritable(True)
    return sock


def worker_command(options: ServeOptions, fd: int, index: int) -> list[str]:
    command = [sys.executable, sys.argv[0], "realtime_serve", "--worker-fd", str(fd)]
    command += ["--supervisor-pid", str(os.getpid())]
    command += ["--host", options.host]
    if options.metrics:
        port = options.metrics_port + index if options.metrics_port else 0
        command += ["--metrics-host", options.metrics_host, "--metrics-port", str(port)]
    else:
        command.append("--no-metrics")
    return command


def _start(command: list[str], fd: int) -> subprocess.Popen[bytes]:
    # Our own interpreter and manage.py, with arguments built above: no outside input.
    return subprocess.Popen(command, pass_fds=(fd,))  # noqa: S603


def supervise(options: ServeOptions, out: TextIO) -> int:
    prepare_apps(options, out)
    sock = bind_public_socket(options.host, options.port)
    host, port = sock.getsockname()[:2]
    out.write(f"Listening (public) on {host}:{port} with {options.workers} workers\n")
    out.flush()
    fd = sock.fileno()
    commands = [worker_command(options, fd, i) for i in range(options.workers)]
    workers = [_start(c, fd) for c in commands]
    stopping = {"signal": 0}

    def forward(signum: int, frame: object) -> None:
        stopping["signal"] = signum
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        time.sleep(0.2)
        if stopping["signal"]:
            for worker in workers:
                worker.wait()
            sock.close()
            return 0
        for i, worker in enumerate(workers):
            if worker.poll() is not None and not stopping["signal"]:
                out.write(f"Worker {i} exited with {worker.returncode}; restarting\n")
                out.flush()
                time.sleep(RESTART_DELAY_SECONDS)
                workers[i] = _start(commands[i], fd)
