"""Protocol limits as named constants: Pusher's documented defaults.

- event size, channels per event, batch size, timestamp window:
  https://pusher.com/docs/channels/library_auth_reference/rest-api/
- presence members, member size, user id length:
  https://pusher.com/docs/channels/using_channels/presence-channels/
- channel names: https://pusher.com/docs/channels/using_channels/channels/#channel-naming-conventions
- client events per second: https://pusher.com/docs/channels/using_channels/events/#triggering-client-events
- cache TTL: https://pusher.com/docs/channels/using_channels/cache-channels/
- activity and pong timeouts, watchlist size:
  https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/
"""

from __future__ import annotations

MAX_EVENT_PAYLOAD_KB = 10
MAX_CHANNELS_PER_EVENT = 100
MAX_BATCH_SIZE = 10
MAX_EVENT_NAME_LENGTH = 200
# The docs say 164, the official SDKs validate 200; 200 is what no SDK trips over.
MAX_CHANNEL_NAME_LENGTH = 200
MAX_PRESENCE_MEMBERS = 100
MAX_PRESENCE_MEMBER_SIZE_KB = 2
MAX_USER_ID_LENGTH = 128
# Sign-in ids follow the server SDKs' validate_user_id (200), not the presence limit.
MAX_SIGNIN_USER_ID_LENGTH = 200
MAX_WATCHLIST_SIZE = 100
MAX_CLIENT_EVENTS_PER_SECOND = 10
API_TIMESTAMP_WINDOW_SECONDS = 600
CACHE_TTL_SECONDS = 1800
ACTIVITY_TIMEOUT_SECONDS = 120
PONG_TIMEOUT_SECONDS = 30
# With user authentication required, how long a connection may stay without signing in (4009).
USER_AUTHENTICATION_TIMEOUT_SECONDS = 30
# Deepest nesting of arrays and objects accepted in any JSON a client sends (frames, channel_data,
# user_data, HTTP API bodies): deeper values could not be encoded again when relayed.
MAX_JSON_DEPTH = 64
# Largest client frame we parse at all; Pusher's event limit is enforced separately.
MAX_CLIENT_FRAME_BYTES = 64 * 1024
