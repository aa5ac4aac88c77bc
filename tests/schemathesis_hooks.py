"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/test_openapi_fuzz.py: tus bodies
(application/offset+octet-stream) are bytes, serialized like application/octet-stream."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
