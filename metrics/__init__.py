"""Prometheus metrics for Realtime, served on a private site of their own."""
