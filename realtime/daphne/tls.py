"""TLS on ``realtime_serve``'s public port: ``SSL_CERT``, ``SSL_KEY`` and optionally ``SSL_CHAIN``.

daphne listens through Twisted endpoint strings; an ``ssl:`` endpoint wraps every connection in
Twisted's TLS protocol (pyOpenSSL, Twisted's ``tls`` extra). Such connections take daphne's own
paths, not the plain-TCP fast paths (``front``, ``writer``), so wss:// and https:// serve the
same protocol and API. The metrics site is never on this listener: it stays plain HTTP on its
private interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.endpoints import quoteStringArgument

# As Twisted's ssl endpoint finds the chain's certificates (LF line endings only).
_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----", re.DOTALL)


class TLSError(ValueError):
    """What is wrong with the TLS files, in words an operator can act on."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the server certificate, its private key (no passphrase), the intermediates."""

    cert: str
    key: str
    chain: str = ""

    @classmethod
    def from_settings(cls, cert: str, key: str, chain: str = "") -> TLSFiles | None:
        """None when neither SSL_CERT nor SSL_KEY is set; ``TLSError`` when only one is, or when
        SSL_CHAIN is set without them."""
        if not cert and not key:
            if chain:
                raise TLSError("SSL_CHAIN is set without SSL_CERT and SSL_KEY")
            return None
        if not cert or not key:
            raise TLSError("TLS needs both SSL_CERT and SSL_KEY")
        return cls(cert, key, chain)

    def verify(self) -> None:
        """Load the files as the listener will, so that a wrong file stops the start with a clear
        message instead of a failed listen. Raises ``TLSError``."""
        try:
            from OpenSSL import crypto
            from twisted.internet import ssl
        except ImportError as exc:
            raise TLSError(
                "TLS needs pyOpenSSL and service-identity (Twisted's tls extra): "
                "pip install 'django-realtime-pusher[tls]'"
            ) from exc
        cert, key = self._read("SSL_CERT", self.cert), self._read("SSL_KEY", self.key)
        if not _CERTIFICATE.search(cert):
            raise TLSError(f"SSL_CERT {self.cert} holds no PEM certificate")
        if b"ENCRYPTED" in key:
            raise TLSError(f"SSL_KEY {self.key} is encrypted: give a key without a passphrase")
        try:
            ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
        except Exception as exc:  # pyOpenSSL raises its own Error and ValueError alike
            raise TLSError(f"SSL_CERT and SSL_KEY do not make a certificate and its key: {exc}") from exc
        if self.chain:
            chain = self._read("SSL_CHAIN", self.chain)
            found = _CERTIFICATE.findall(chain)
            if not found:
                raise TLSError(f"SSL_CHAIN {self.chain} holds no PEM certificate with LF line endings")
            for pem in found:
                crypto.load_certificate(crypto.FILETYPE_PEM, pem)

    @staticmethod
    def _read(name: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise TLSError(f"{name} {path} cannot be read: {exc.strerror}") from exc

    def endpoint(self, host: str, port: int) -> str:
        """The Twisted endpoint string that serves TLS on ``host:port``."""
        parts = [
            "ssl",
            f"port={port}",
            f"interface={quoteStringArgument(host)}",
            f"privateKey={quoteStringArgument(self.key)}",
            f"certKey={quoteStringArgument(self.cert)}",
        ]
        if self.chain:
            parts.append(f"extraCertChain={quoteStringArgument(self.chain)}")
        return ":".join(parts)
