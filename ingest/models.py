"""What ingest knows about a stored file, and how client-supplied names and types are cleaned."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.errors import InvalidFilename

MAX_FILENAME_BYTES = 255
DEFAULT_MEDIA_TYPE = "application/octet-stream"

# RFC 9110 §8.3.1: type "/" subtype, both tokens; parameters are kept only when well formed.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^({_TOKEN})/({_TOKEN})\s*((?:;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\r\n]*\")\s*)*)$")


def new_file_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class StoredFile:
    """One committed file: the row of the catalog and the body of most JSON answers."""

    id: str
    filename: str
    size: int
    sha256: str
    content_type: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the first bytes are (ingest/content_rules.py); None when they say nothing.
    detected_type: str | None = None
    # Who sent it: the upload link's id, or the name of the bearer token (None without auth).
    link: str | None = None
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def clean_filename(raw: str | None) -> str:
    """A client's filename reduced to a safe display name; it never becomes a path.

    Paths are stripped (both `/` and `\\`, since Windows clients send `C:\\dir\\x.txt`),
    the name is NFC-normalised, and names with control characters, no usable text or
    more than 255 UTF-8 bytes are refused rather than silently rewritten.
    """
    if raw is None or raw == "":
        raise InvalidFilename("a filename is required")
    name = unicodedata.normalize("NFC", raw)
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in name):
        raise InvalidFilename("filename contains control characters")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in {"", ".", ".."}:
        raise InvalidFilename(f"filename {raw!r} has no name after its path is removed")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise InvalidFilename(f"filename is longer than {MAX_FILENAME_BYTES} UTF-8 bytes")
    return name


def clean_media_type(raw: str | None, filename: str) -> str:
    """The client's media type when it is well formed and says something; else a guess."""
    if raw:
        match = _MEDIA_TYPE.match(raw.strip())
        if match:
            media_type = f"{match.group(1)}/{match.group(2)}".lower()
            if media_type != DEFAULT_MEDIA_TYPE:
                params = match.group(3).strip()
                return f"{media_type}; {params.lstrip(';').strip()}" if params else media_type
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or DEFAULT_MEDIA_TYPE
