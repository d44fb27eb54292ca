"""Realtime: a Pusher protocol 7 server as a reusable Django Channels app."""

__version__ = "0.1.0"
