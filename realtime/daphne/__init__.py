"""What ``realtime_serve`` adds to daphne: the frame writer, a trimmed WebSocket protocol, graceful
drain, the workers supervisor, and the start-up check of every daphne, Twisted, autobahn and
Channels internal these rely on (``internals``). Nothing else in Realtime touches them.
"""
