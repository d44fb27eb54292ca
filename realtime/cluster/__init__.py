"""Fan-out and shared state: this process' sockets (``registry``), and the cluster view of them.

Two backends side by side behind the protocols of ``base``: ``memory`` for one node with nothing
shared, ``redis`` for several nodes sharing a Redis server.
"""
