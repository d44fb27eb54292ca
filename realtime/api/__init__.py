"""The Pusher HTTP API: signed requests to publish events and query channels.

https://pusher.com/docs/channels/library_auth_reference/rest-api/
"""
