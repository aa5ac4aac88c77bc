"""Upload links: a URL that lets whoever holds it upload within limits (service, HTTP API, CLI)."""
