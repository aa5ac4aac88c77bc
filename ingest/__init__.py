"""ingest: a streaming large-file ingestion server."""

__version__ = "0.1.0"
