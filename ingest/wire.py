"""What both ends of the wire agree on, importable by the client without the server."""

from __future__ import annotations

# The tus protocol version spoken by the server (ingest.tus) and the client (ingest.client).
# https://tus.io/protocols/resumable-upload
TUS_VERSION = "1.0.0"
