"""The README's "Add to an existing Django project" recipe, applied as written to a brand-new project.

In a fresh virtual environment: the wheel built from this checkout, ``django-admin startproject
mysite``, the README's marked blocks (``<!-- recipe:NAME -->`` before a fence) applied to it, one
ordinary view of the host's own, then ``daphne`` serving it. A Pusher round trip, the host's view,
the admin, the private metrics site and ``/ready`` must all work, so the README cannot drift from
what a user following it gets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pusher
import pytest
import requests
import websockets

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Add to an existing Django project"
RECIPE_BLOCKS = ("settings", "asgi", "setup", "serve", "logging")
HOST_VIEW = """

from django.http import HttpResponse


def hello(request):
    return HttpResponse("hello from the host")


urlpatterns += [path("hello/", hello)]
"""
ADMIN_PASSWORD = "host-admin-password-0123"  # a throwaway user of the throwaway project


def recipe() -> dict[str, str]:
    """The README section's marked code blocks by name; every expected block must be there once."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    found = re.findall(r"^<!-- recipe:([\w-]+) -->\n```[\w-]*\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    names = [name for name, _ in found]
    assert sorted(names) == sorted(RECIPE_BLOCKS), f"README recipe blocks: {names}"
    return dict(found)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{shlex.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with the new venv active: nothing of this test's Django."""
    dropped = ("DJANGO_", "PYTHON", "VIRTUAL_ENV", "REDIS_", "METRICS_", "DEFAULT_APP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_health(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            health = requests.get(f"{base}/health", timeout=2)
        except requests.ConnectionError:
            time.sleep(0.2)
            continue
        assert health.status_code == 200, f"/health: {health.status_code} {health.text[:500]}"
        assert health.json() == {"status": "ok"}
        return
    pytest.fail(f"daphne did not answer /health within {timeout}s:\n{log.read_text()}")


async def round_trip(port: int, metrics_port: int, app_id: str, key: str, secret: str) -> str:
    """Subscribe over WebSocket, publish with the official SDK, receive; scrape metrics meanwhile."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/app/{key}?protocol=7", open_timeout=10) as ws:
        established = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert established["event"] == "pusher:connection_established", established
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "host-news"}}))
        subscribed = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert subscribed["event"] == "pusher_internal:subscription_succeeded", subscribed
        assert subscribed["channel"] == "host-news"
        client = pusher.Pusher(
            app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=port, ssl=False, timeout=10
        )
        await asyncio.to_thread(client.trigger, "host-news", "headline", {"text": "hello from pusher"})
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["event"] == "headline", message
        assert message["channel"] == "host-news"
        assert json.loads(message["data"]) == {"text": "hello from pusher"}
        scrape = await asyncio.to_thread(requests.get, f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scrape.status_code == 200
        return scrape.text


@pytest.mark.timeout(600)
def test_readme_recipe_in_a_new_django_project(tmp_path: Path) -> None:
    blocks = recipe()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = clean_env(venv)

    # A brand-new environment with the wheel built from this checkout and its dependencies.
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    build = tmp_path / "build"
    build.mkdir()
    # setuptools' build and egg-info directories go here, not into the checkout (stale files in a
    # reused build/lib would end up in the wheel).
    (build / "setup.cfg").write_text(f"[build]\nbuild_base = {build / 'b'}\n[egg_info]\negg_base = {build}\n")
    wheel_env = dict(env, DIST_EXTRA_CONFIG=str(build / "setup.cfg"))
    wheels = tmp_path / "wheels"
    run([str(python), "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(wheels)], tmp_path, wheel_env)
    (wheel,) = wheels.glob("django_realtime_pusher-*-py3-none-any.whl")
    run([str(python), "-m", "pip", "install", str(wheel)], tmp_path, env)

    # A new host project with the README's recipe, plus a view of the host's own.
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite"], tmp_path, env)
    project = tmp_path / "mysite"
    package = project / "mysite"
    metrics_port = free_port()
    with (package / "settings.py").open("a") as settings:
        settings.write("\n# The README's recipe\n" + blocks["settings"])
        settings.write("\n" + blocks["logging"])
        settings.write(f'\n# This test\'s own metrics port\nREALTIME_METRICS["PORT"] = {metrics_port}\n')
    (package / "asgi.py").write_text(blocks["asgi"])
    with (package / "urls.py").open("a") as urls:
        urls.write(HOST_VIEW)
    run([str(python), "manage.py", "check", "--fail-level", "WARNING"], project, env)

    # The README's setup commands as written: migrate, then realtime_createapp.
    created = ""
    for line in blocks["setup"].splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[:2] == ["python", "manage.py"], line
        created += run([str(python), *words[1:]], project, env)
    credentials = dict(re.findall(r"^(app id|key|secret):\s+(\S+)$", created, re.MULTILINE))
    assert set(credentials) == {"app id", "key", "secret"}, created
    app_id, key, secret = credentials["app id"], credentials["key"], credentials["secret"]
    admin_env = dict(env, DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD)
    superuser = ["createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"]
    run([str(python), "manage.py", *superuser], project, admin_env)

    # Served as the README says, on a free loopback port.
    serve = shlex.split(blocks["serve"], comments=True)
    assert serve[0] == "daphne", blocks["serve"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "daphne.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(venv / "bin" / "daphne"), *serve[1:], "-b", "127.0.0.1", "-p", str(port)],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_health(base, process, log)

        hello = requests.get(f"{base}/hello/", timeout=10)
        assert hello.status_code == 200
        assert hello.text == "hello from the host"

        scrape = asyncio.run(round_trip(port, metrics_port, app_id, key, secret))
        assert f'realtime_active_connections{{app_id="{app_id}"}} 1.0' in scrape, scrape

        assert requests.get(f"{base}/metrics", timeout=10).status_code == 404
        assert "realtime_active_connections" not in requests.get(f"{base}/metrics", timeout=10).text
        assert requests.get(f"http://127.0.0.1:{metrics_port}/", timeout=10).status_code == 404

        ready = requests.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}

        session = requests.Session()
        login_page = session.get(f"{base}/admin/login/", timeout=10)
        assert login_page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
        assert token is not None, login_page.text
        logged_in = session.post(
            f"{base}/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "next": "/admin/",
            },
            timeout=10,
        )
        assert logged_in.status_code == 200
        assert logged_in.url == f"{base}/admin/", logged_in.url
        apps = session.get(f"{base}/admin/realtime/app/", timeout=10)
        assert apps.status_code == 200
        assert apps.url == f"{base}/admin/realtime/app/"
        assert f">{app_id}<" in apps.text
        assert key in apps.text
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    # The signed publish was logged with its signature redacted, and the secret never.
    output = log.read_text()
    assert f"POST /apps/{app_id}/events" in output, output
    assert "auth_signature=[redacted]" in output, output
    assert not re.search(r"auth_signature=(?!\[redacted\])", output), output
    assert secret not in output
