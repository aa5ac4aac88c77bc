"""The HTTP edge every upload path shares: the request body, upload guards, auth, digests,
the upload rules of the URL layout, the /uploads API and the JSON answer of every error."""
