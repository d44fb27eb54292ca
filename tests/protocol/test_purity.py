"""``realtime.protocol`` is pure: importing all of it pulls in no Django, Channels, Twisted or asyncio."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import realtime.protocol

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "channels", "daphne", "twisted", "autobahn", "asgiref", "asyncio", "redis")


def test_protocol_modules_import_nothing_heavy() -> None:
    modules = sorted(info.name for info in pkgutil.iter_modules(realtime.protocol.__path__))
    assert {"errors", "frames", "limits", "names", "presence", "signatures", "socket_ids"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('realtime.protocol.' + name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
