"""Parsing and formatting of tus 1.0.0 headers; knows nothing of storage or Starlette.

Spec: https://tus.io/protocols/resumable-upload (version 1.0.0).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from ingest.errors import InvalidRequest
from ingest.wire import TUS_VERSION as TUS_VERSION  # declared once, shared with the client

EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination",
              "checksum", "expiration", "concatenation")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

# The checksum extension names algorithms as in the IANA "Hash Function Textual Names"
# registry (https://www.iana.org/assignments/hash-function-text-names/).
CHECKSUM_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512, "md5": hashlib.md5,
}

# A metadata key: not empty, no spaces or commas (the spec), and visible ASCII (its SHOULD;
# a control character in a key would reach the catalog and every hook).
_METADATA_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_OWS = " \t"  # optional whitespace, RFC 9110 §5.6.3; str.strip() would take more than that
# Lengths and offsets with more digits are refused instead of converted: Python converts at
# most 4300 digits (CVE-2020-10735), and 64 digits are already far past any size limit.
MAX_DIGITS = 64
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def parse_length(raw: str | None, header: str) -> int | None:
    if raw is None:
        return None
    # isdigit() alone would pass "²" (and int() would then fail): ASCII digits only.
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest(f"{header} must be a non-negative whole number")
    if len(raw.lstrip("0")) > MAX_DIGITS:
        raise InvalidRequest(f"{header} has more than {MAX_DIGITS} digits")
    return int(raw)


def _base64(encoded: str) -> bytes | None:
    """Base64 (RFC 4648 §4, padded) decoded; None when it is not that. Checked against the
    grammar first: b64decode raises a bare ValueError for non-ASCII text and, even with
    validate=True, accepts padding after a complete quantum ("QUJD=")."""
    return base64.b64decode(encoded) if _BASE64.fullmatch(encoded) else None


def parse_metadata(raw: str | None) -> dict[str, str]:
    """`key base64value,key2,...` (a key may come without a value) -> decoded UTF-8 values."""
    metadata: dict[str, str] = {}
    if not raw or not raw.strip(_OWS):
        return metadata
    for pair in raw.split(","):
        key, _, encoded = pair.strip(_OWS).partition(" ")
        if not _METADATA_KEY.fullmatch(key) or key in metadata:
            raise InvalidRequest(f"Upload-Metadata has a bad or repeated key: {key!r}")
        value = _base64(encoded.strip(_OWS))
        if value is None:
            raise InvalidRequest(f"Upload-Metadata value of {key!r} is not base64")
        try:
            metadata[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"Upload-Metadata value of {key!r} is not UTF-8 text") from None
    return metadata


def format_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
                    for key, value in metadata.items())


def parse_checksum(raw: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; an unknown algorithm is a 400."""
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip(_OWS).partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidRequest(f"unsupported checksum algorithm {algorithm!r}; "
                             f"supported: {','.join(CHECKSUM_ALGORITHMS)}")
    digest = _base64(encoded.strip(_OWS))
    if digest is None:
        raise InvalidRequest("Upload-Checksum digest is not base64")
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise InvalidRequest(f"Upload-Checksum digest has the wrong length for {algorithm}")
    return algorithm, digest


def parse_concat(raw: str | None) -> tuple[str, list[str]] | None:
    """`partial`, or `final;<url> <url> ...` -> ("partial", []) / ("final", [upload ids])."""
    if raw is None:
        return None
    kind, separator, urls = raw.strip(_OWS).partition(";")
    if kind == "partial" and not separator:
        return "partial", []
    if kind == "final":
        ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls.split()]
        if ids:
            return "final", ids
    raise InvalidRequest("Upload-Concat must be 'partial' or 'final;<url> <url> ...'")


def http_date(timestamp: float) -> str:
    """RFC 9110 §5.6.7 IMF-fixdate, as Upload-Expires wants."""
    return formatdate(timestamp, usegmt=True)
