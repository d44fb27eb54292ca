"""The Pusher protocol as pure functions: no Django, no asyncio, no I/O.

Everything here can be tested in milliseconds against the official worked examples.
"""
