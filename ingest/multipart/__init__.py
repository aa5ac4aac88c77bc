"""multipart/form-data, streamed: a framing guard in front of streaming-form-data, and its driver."""
