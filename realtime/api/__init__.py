"""The Pusher HTTP API: signed requests to publish events and query channels (pusher-protocol.md §7)."""
