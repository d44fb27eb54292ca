"""Install and run soketi 1.6.1, the reference server the benchmarks compare against.

soketi is installed with npm into the git-ignored `benchmarks/.soketi/`. Its
`uWebSockets.js` dependency is a GitHub URL, which this workplace cannot reach, so the
package.json written here overrides it with the npm package
`@trufflesuite/uws-js-unofficial`, which ships the same native uWS addon prebuilt for
Node ABIs 93/108/115 (Node 16/18/20). That package silently falls back to a pure-JS
implementation when no addon matches the running Node; `check()` refuses that case,
because a fallback soketi would be a far weaker baseline than the real one.

    python benchmarks/soketi.py install
    python benchmarks/soketi.py serve --port 6001 --app-id app-id --key app-key --secret app-secret
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent / ".soketi"
SERVER_JS = ROOT / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
SOKETI_VERSION = "1.6.1"
UWS_PACKAGE = "@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0"

PACKAGE_JSON = {
    "name": "realtime-bench-soketi",
    "private": True,
    "description": "soketi for benchmarks/compare.py; installed by benchmarks/soketi.py",
    "dependencies": {"@soketi/soketi": SOKETI_VERSION},
    # npm `overrides` rewrites the spec of a transitive dependency wherever it appears,
    # before anything is fetched, so the unreachable git URL is never resolved.
    "overrides": {"uWebSockets.js": f"npm:{UWS_PACKAGE}"},
}

# Loading the addon the way uws.js does, but without its silent fallback.
_CHECK_JS = (
    "const p=require.resolve('uWebSockets.js/package.json');"
    "const d=require('path').dirname(p);"
    "require(d+'/binaries/uws_'+process.platform+'_'+process.arch+'_'"
    "+process.versions.modules+'.node');"
    "console.log(require(p).name+'@'+require(p).version)"
)


def installed() -> bool:
    return SERVER_JS.exists()


def check() -> str:
    """Return the resolved uWS package; raise if its native addon cannot load here."""
    result = subprocess.run(
        ["node", "-e", _CHECK_JS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            "soketi's uWebSockets.js native addon does not load with this Node "
            f"({result.stderr.strip().splitlines()[-1:]}); soketi would run on the slow "
            "JS fallback, so it is not a fair baseline"
        )
    return result.stdout.strip()


def install(force: bool = False) -> str:
    """Install soketi into benchmarks/.soketi when missing; return the uWS package used."""
    if installed() and not force:
        return check()
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is required to install soketi (apt-get install nodejs npm)")
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2) + "\n")
    # No install scripts: the only ones are optional native speed-ups of the `ws`
    # fallback and of dependencies soketi loads only for drivers we do not use.
    subprocess.run(
        ["npm", "install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    return check()


def server_env(
    port: int,
    app_id: str,
    key: str,
    secret: str,
    metrics: bool = False,
    metrics_port: int | None = None,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """Environment for a one-app soketi whose per-app limits do not cap the benchmarks.

    Raised from soketi's defaults: presence members per channel (100 → 100000) so the
    presence scenario is never refused, and payload size (100 KB → 1 MB). Connections,
    backend events/s, client events/s and read requests/s are already unlimited (-1) by
    default; they are set explicitly so a changed default cannot cap a run silently.
    Client messages are off by default and turned on for the client-events scenario.
    Both listeners are bound to loopback: soketi's default host is 0.0.0.0, and its
    metrics/usage listener always starts, metrics enabled or not.
    """
    env = {
        "SOKETI_HOST": host,
        "SOKETI_PORT": str(port),
        "SOKETI_DEFAULT_APP_ID": app_id,
        "SOKETI_DEFAULT_APP_KEY": key,
        "SOKETI_DEFAULT_APP_SECRET": secret,
        "SOKETI_DEFAULT_APP_MAX_CONNS": "-1",
        "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC": "-1",
        "SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "-1",
        "SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC": "-1",
        "SOKETI_PRESENCE_MAX_MEMBERS": "100000",
        "SOKETI_EVENT_MAX_SIZE_IN_KB": "1024",
        "SOKETI_METRICS_ENABLED": "true" if metrics else "false",
        "SOKETI_METRICS_HOST": "127.0.0.1",
        "SOKETI_METRICS_SERVER_PORT": str(metrics_port if metrics_port else port + 1),
        "SOKETI_DEBUG": "false",
        # Default 3 s: only slows down stopping between benchmark runs.
        "SOKETI_SHUTDOWN_GRACE_PERIOD": "200",
    }
    return env


def server_command() -> list[str]:
    return ["node", str(SERVER_JS), "start"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install soketi into benchmarks/.soketi if missing")
    inst.add_argument("--force", action="store_true", help="reinstall even when present")
    serve = sub.add_parser("serve", help="run soketi in the foreground (exec)")
    serve.add_argument("--port", type=int, default=6001)
    serve.add_argument("--metrics-port", type=int, default=None)
    serve.add_argument("--app-id", default="app-id")
    serve.add_argument("--key", default="app-key")
    serve.add_argument("--secret", default="app-secret")
    serve.add_argument("--metrics", action="store_true", help="enable Prometheus metrics")
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"soketi {SOKETI_VERSION} at {ROOT}, uWS from {install(args.force)}")
        return 0
    install()
    env = dict(os.environ)
    env.update(server_env(args.port, args.app_id, args.key, args.secret, args.metrics, args.metrics_port))
    command = server_command()
    os.execvpe(command[0], command, env)
    return 0  # pragma: no cover - execvpe does not return


if __name__ == "__main__":
    sys.exit(main())
