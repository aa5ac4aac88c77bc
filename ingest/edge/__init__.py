"""The HTTP edge every upload path shares: the request body, upload guards, auth, digests."""
