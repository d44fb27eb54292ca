"""TLS on realtime_serve's public port: wss:// and https:// with a certificate made here.

A root CA, an intermediate and a server certificate for 127.0.0.1 are made with ``cryptography``;
clients trust the root only, so the handshake also proves the intermediate is sent (SSL_CHAIN).
The official Python SDK publishes over https://, a real WebSocket client receives over wss://,
and the metrics site stays plain HTTP.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import urllib.request
from pathlib import Path

import pusher
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pusher.requests import RequestsBackend

from tests.conftest import ServerProcess, start_server_process
from tests.e2e.test_slow_consumer import SLOW, RawWebSocket
from tests.metrics.conftest import scrape
from tests.pusher_client import PusherSocket

pytestmark = pytest.mark.timeout(120)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        alt = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(alt, critical=False)
    builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """root.pem (what clients trust), server.pem, server.key, chain.pem (the intermediate),
    encrypted.key (the server key with a passphrase)."""
    # ":" and "=" separate a Twisted endpoint string's fields: the paths must be quoted in it.
    directory = tmp_path_factory.mktemp("pki") / "tls:files=here"
    directory.mkdir()
    root_key, middle_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("Test Root", root_key, None, root_key, ca=True)
    middle = _certificate("Test Intermediate", middle_key, root, root_key, ca=True)
    server = _certificate("127.0.0.1", server_key, middle, middle_key, ca=False)
    files = {
        "root": _pem(root),
        "server": _pem(server),
        "chain": _pem(middle),
        "key": server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "encrypted": server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(content)
    return paths


def client_context(pki: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki["root"]))


def tls_sdk(node: ServerProcess, pki: dict[str, Path]) -> pusher.Pusher:
    """The official SDK over https:// to ``node``, trusting the test root."""
    root = str(pki["root"])

    class TrustingBackend(RequestsBackend):
        def __init__(self, client: object, **options: object) -> None:
            super().__init__(client, **options)
            self.options["verify"] = root  # the SDK pins its own CA bundle; ours is a test root

    return pusher.Pusher(
        app_id=node.app_id,
        key=node.key,
        secret=node.secret,
        host="127.0.0.1",
        port=node.port,
        ssl=True,
        backend=TrustingBackend,
        timeout=10,
    )


def tls_env(pki: dict[str, Path], **extra: str) -> dict[str, str]:
    return {
        "SSL_CERT": str(pki["server"]),
        "SSL_KEY": str(pki["key"]),
        "SSL_CHAIN": str(pki["chain"]),
        **extra,
    }


async def test_wss_and_https_with_the_official_sdk(start_server, pki: dict[str, Path]) -> None:
    node: ServerProcess = start_server(env=tls_env(pki))
    assert "(TLS: wss://, https://)" in node.output()
    context = client_context(pki)
    with urllib.request.urlopen(
        f"https://127.0.0.1:{node.port}/ready", context=context, timeout=10
    ) as response:
        assert json.loads(response.read()) == {"status": "ready"}
    url = f"wss://127.0.0.1:{node.port}/app/{node.key}?protocol=7&client=js&version=8.4.0"
    sdk = tls_sdk(node, pki)
    async with await PusherSocket.connect(url, ssl=context) as client:
        await client.subscribe("private-tls", sdk)
        sdk.trigger("private-tls", "secure", {"over": "tls"})
        event = await client.recv_event("secure")
        assert json.loads(event["data"]) == {"over": "tls"}
        assert sdk.channel_info("private-tls")["occupied"] is True
    # The metrics site stays plain HTTP on its private interface.
    with urllib.request.urlopen(node.metrics_url(), timeout=10) as response:
        assert b"realtime_connection_established_total" in response.read()
    # A plain ws:// client on the TLS port gets no WebSocket.
    with pytest.raises((websockets.InvalidMessage, websockets.InvalidHandshake, OSError, EOFError)):
        async with websockets.connect(node.ws_url(), open_timeout=5):
            pass


def test_a_stalled_wss_client_is_dropped_as_a_slow_consumer(start_server, pki: dict[str, Path]) -> None:
    node = start_server(env=tls_env(pki, MAX_SOCKET_BUFFER_BYTES="65536"))
    stalled = RawWebSocket(
        "127.0.0.1", node.port, f"/app/{node.key}?protocol=7&client=js&version=8.4.0", tls=client_context(pki)
    )
    assert stalled.recv()["event"] == "pusher:connection_established"
    stalled.send({"event": "pusher:subscribe", "data": {"channel": "tls-slow"}})
    while stalled.recv()["event"] != "pusher_internal:subscription_succeeded":
        pass
    # From here on it reads nothing; the encrypted bytes pile up in the server's TCP buffer.
    sdk = tls_sdk(node, pki)
    pad = "x" * 6 * 1024
    for n in range(3000):
        sdk.trigger("tls-slow", "tick", json.dumps({"n": n, "pad": pad}))
        if n % 10 == 9 and scrape(node).value(SLOW["name"], type=SLOW["type"]):
            break
    else:
        raise AssertionError("the stalled wss:// socket was never dropped")
    assert stalled.closed_by_server(60)
    stalled.close()


async def test_without_the_chain_a_client_trusting_the_root_refuses(
    start_server, pki: dict[str, Path]
) -> None:
    node = start_server(env={"SSL_CERT": str(pki["server"]), "SSL_KEY": str(pki["key"])})
    url = f"wss://127.0.0.1:{node.port}/app/{node.key}?protocol=7"
    with pytest.raises(ssl.SSLCertVerificationError):
        async with websockets.connect(url, ssl=client_context(pki), open_timeout=5):
            pass


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SSL_KEY": "encrypted"}, "is encrypted: give a key without a passphrase"),
        ({"SSL_KEY": None}, "TLS needs both SSL_CERT and SSL_KEY"),
        ({"SSL_CERT": "chain"}, "do not make a certificate and its key"),
        ({"SSL_CERT": "missing"}, "cannot be read"),
        # Workers share one plain socket; nothing is connected, so no Redis needs to answer.
        ({"WORKERS": "2", "REDIS_URL": "redis://127.0.0.1:9/0"}, "not supported: terminate TLS in front"),
    ],
)
def test_a_wrong_tls_setting_stops_the_start_with_a_clear_message(
    migrated_db: Path, tmp_path: Path, pki: dict[str, Path], env: dict[str, str | None], message: str
) -> None:
    settings = {"SSL_CERT": str(pki["server"]), "SSL_KEY": str(pki["key"])}
    for name, which in env.items():
        if which is None:
            del settings[name]
        elif not name.startswith("SSL_"):
            settings[name] = which
        else:
            settings[name] = str(pki.get(which, tmp_path / "missing.pem"))
    with pytest.raises(RuntimeError) as failed:
        start_server_process(migrated_db, tmp_path, settings)
    assert message in str(failed.value)
    assert "Traceback" not in str(failed.value)
