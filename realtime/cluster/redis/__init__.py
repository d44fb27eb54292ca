"""The Redis backend: shared state in hashes, one pub/sub bus, heartbeats and reaping of dead nodes."""
