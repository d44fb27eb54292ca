"""Webhooks: signed POSTs of channel and member events to the URLs of an app."""
