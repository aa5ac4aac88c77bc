"""Observability: access log, request context, upload events and hooks, metrics, live progress."""
