"""Storage backends: where the bytes of uploads live."""
