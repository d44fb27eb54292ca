"""Realtime and daphne. What ``realtime_serve`` adds: the frame writer, a trimmed WebSocket
protocol, graceful drain, the workers supervisor, and the start-up check of every daphne, Twisted,
autobahn and Channels internal these rely on (``internals``). Under the stock ``daphne`` command
and ``runserver``: the drain at the reactor's shutdown (``stock``) and a daphne access log without
signatures (``access_log``). Nothing else in Realtime touches daphne, Twisted or autobahn.
"""
