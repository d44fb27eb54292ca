"""The HTTP side of ``realtime_serve``: bounded requests, and proxy headers only from proxies.

daphne reads a whole request (headers and body, into memory or a temporary file) before the
application sees it, waits up to 12 hours for one to finish, and takes its ``Daphne-Root-Path``
header from any client. On a server that anyone on the internet can reach:

- a request must arrive whole within ``REQUEST_TIMEOUT`` seconds of its first byte, or the
  connection is closed (a client sending one byte a second holds nothing for long);
- at most ``MAX_PENDING_CONNECTIONS`` connections may be in the middle of a request at once;
  more are closed as they arrive, before anything is read;
- a body under the HTTP API's paths larger than the API's limit is answered 413 from its
  ``Content-Length`` (or as soon as a chunked one passes the limit), before it is stored;
- ``Daphne-Root-Path`` counts only from a peer in ``TRUSTED_PROXIES``.

WebSocket upgrades are bounded the same way until the upgrade; autobahn's opening-handshake timeout
bounds the rest.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from daphne.http_protocol import WebRequest
from twisted.internet import reactor
from twisted.web import http

from ..addresses import is_trusted, trusted_networks
from ..api.asgi import MAX_BODY_BYTES, PREFIXES
from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)

ROOT_PATH_HEADER = b"daphne-root-path"


class Limits:
    """What the HTTP side of one server allows, and the connections now in a request."""

    def __init__(self, request_timeout: float, max_pending: int, api_prefix: str, trusted: tuple[Any, ...]):
        self.request_timeout = request_timeout
        self.max_pending = max_pending
        self.api_paths = tuple((api_prefix + p).encode() for p in PREFIXES)
        self.trusted = trusted
        self.pending: set[RealtimeHTTPChannel] = set()

    @classmethod
    def from_settings(cls, conf: RealtimeSettings) -> Limits:
        """The limits ``REALTIME`` sets; ValueError when ``TRUSTED_PROXIES`` has a bad entry."""
        trusted = trusted_networks(conf.TRUSTED_PROXIES)
        return cls(conf.REQUEST_TIMEOUT, conf.MAX_PENDING_CONNECTIONS, conf.PATH_PREFIX, trusted)


def _refusal(status: int, reason: bytes, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, reason, len(body))
    )
    return head + body


class RealtimeHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP channel with a deadline per request, a bound on pending ones, and early 413s."""

    _deadline: Any = None
    _refused = False

    @property
    def limits(self) -> Limits:
        return self.factory.server.http_limits

    def connectionMade(self) -> None:
        super().connectionMade()
        limits = self.limits
        if len(limits.pending) >= limits.max_pending:
            # Refused before anything is read: a flood of idle connections ends here.
            self._refused = True
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is None:
            # The first byte of a request: it must arrive whole in time.
            self._deadline = reactor.callLater(self.limits.request_timeout, self._expired)
            self.limits.pending.add(self)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        length = self.length
        if length is not None and length > MAX_BODY_BYTES and self._path.startswith(self.limits.api_paths):
            self.refuse(413, b"Payload Too Large", "Request body too large")
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._settled()
        super().allContentReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's answer to a request it cannot parse (a request line that is not ASCII, too many
        # or too long headers) is an empty 400: give it a body like every other error.
        self.refuse(400, b"Bad Request", "Malformed HTTP request")

    def refuse(self, status: int, reason: bytes, message: str) -> None:
        """Answer ``status`` with a JSON error now, read nothing more, and close."""
        self._refused = True
        self._settled()
        self.transport.write(_refusal(status, reason, message))
        self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self._settled()
        super().connectionLost(reason)

    def _settled(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        self.limits.pending.discard(self)

    def _expired(self) -> None:
        self._deadline = None
        self.limits.pending.discard(self)
        if self.transport is not None:
            self.transport.abortConnection()


class RealtimeWebRequest(WebRequest):
    """daphne's request, with ``Daphne-Root-Path`` only from a trusted proxy and chunked bodies
    under the API's paths cut off at the API's limit."""

    _received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # daphne hands the raw body to the application, which parses its own forms; Twisted's
        # parsing of POST bodies into request.args, which runs the stdlib email parser on every
        # POST's Content-Type (14 % of an API request's CPU), is never read by anyone.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(*args, **kwargs)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        channel = self.channel
        if self._received > MAX_BODY_BYTES and channel._path.startswith(channel.limits.api_paths):
            channel.refuse(413, b"Payload Too Large", "Request body too large")
            return
        super().handleContentChunk(data)

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        # daphne's own refusals (a header name or value it rejects, a path or query string that
        # is not ASCII) are HTML pages; under the API's paths every answer is the API's JSON.
        if not self.uri.startswith(self.channel.limits.api_paths):
            return super().basic_error(status, status_text, body)
        content = json.dumps({"error": body}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
        self.handle_reply({"type": "http.response.start", "status": status, "headers": headers})
        self.handle_reply({"type": "http.response.body", "body": content})
        return None

    def process(self) -> Any:
        headers = self.requestHeaders
        if headers.hasHeader(ROOT_PATH_HEADER):
            peer = getattr(self.channel.transport.getPeer(), "host", None)
            value = headers.getRawHeaders(ROOT_PATH_HEADER)[0]
            if not is_trusted(peer, self.channel.limits.trusted) or not value.isascii():
                headers.removeHeader(ROOT_PATH_HEADER)
        result = super().process()
        channel = self.channel
        if self.transport is None and channel is not None and channel.requests == [self]:
            # daphne handed the connection to a WebSocket protocol; the upgrade request never
            # finishes, so it and its channel would point at each other until the cycle collector
            # found them (24 objects per connection, and most of the full collections' work
            # while sockets connect). Cut the cycle so they go now.
            channel.requests = []
        return result
