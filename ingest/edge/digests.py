"""Client-supplied SHA-256 digests: RFC 9530 `Content-Digest` and our form-field convention."""

from __future__ import annotations

import base64
import binascii
import re

from ingest.errors import InvalidDigest

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# RFC 9530 §2 uses an RFC 8941 dictionary: `sha-256=:<base64>:, sha-512=:<base64>:`.
_DICT_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?")


def sha256_from_content_digest(header_value: str) -> str | None:
    """The hex SHA-256 in a Content-Digest value; None when it names only other algorithms."""
    found: str | None = None
    for member in header_value.split(","):
        if not member.strip():
            continue
        match = _DICT_MEMBER.fullmatch(member)
        if not match:
            raise InvalidDigest(f"Content-Digest is not an RFC 9530 dictionary: {header_value[:100]!r}")
        if match.group(1) == "sha-256":
            found = _decode_base64_sha256(match.group(2))
    return found


def sha256_from_field(value: str) -> str:
    """A `<field>.sha256` form value: 64 hex digits, or the 44-character base64 form."""
    value = value.strip()
    if _HEX_SHA256.fullmatch(value):
        return value.lower()
    return _decode_base64_sha256(value)


def _decode_base64_sha256(encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigest("sha-256 digest is not valid base64") from None
    if len(raw) != 32:
        raise InvalidDigest("sha-256 digest must be 32 bytes")
    return raw.hex()
