"""What a browser gets: the upload page, the API page and the OpenAPI description."""
