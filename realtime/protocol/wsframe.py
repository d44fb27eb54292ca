"""WebSocket framing of server-to-client text frames (RFC 6455 §5.2).

A server frame is unmasked, so without compression the framed bytes of one event are the same
for every subscriber: frame it once, write the same bytes to each socket.
"""

from __future__ import annotations

import struct


def text_frame(payload: bytes) -> bytes:
    """``payload`` (UTF-8 text) as one final, unmasked text frame: 0x81, then a 7-, 16- or 64-bit
    length, then the payload (RFC 6455 §5.2).
    """
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload
